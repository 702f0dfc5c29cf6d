"""lmdesk: look inside a small language model running on your own CPU."""

import os

__version__ = "0.1.0"

# lmdesk makes no network call at all. onnxruntime's Python package sends usage
# telemetry (DNS look-ups of a Microsoft events host from about 9 s after it is
# imported, every few seconds after) unless this is set before it is imported;
# every way into lmdesk (python -m lmdesk, the lmdesk script, the frozen app,
# the tests) imports this package first. tests/test_no_network.py watches it.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"


def _return_big_buffers_to_the_system() -> None:
    """glibc's malloc raises its mmap threshold each time a large block is
    freed, so the buffers of a long prefill (25 MB of logits a chunk, the
    statistics' scratch) end up in the heap and stay there after use: with
    3,000 tokens read, 642 MB resident instead of 478 MB. A fixed threshold
    of 1 MB keeps such buffers mapped on their own, given back when freed."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl, say): its own policy stays
        pass


_return_big_buffers_to_the_system()

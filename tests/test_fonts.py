"""Fallback fonts: CJK and emoji drawn, digits left alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtGui import QFontDatabase, QFontMetrics
from PySide6.QtWidgets import QLabel

from lmdesk.packaging import bundled_font
from lmdesk.ui.fonts import SYSTEM_FALLBACKS, install_fallback_fonts

present = [f for f in SYSTEM_FALLBACKS if f.is_file()]


@pytest.mark.skipif(len(present) < 2, reason="the fallback fonts are installed by .ci/run (Debian packages)")
def test_fallback_fonts_register_and_leave_digits_alone(qtbot, tmp_path: Path) -> None:
    for f in present:  # as the bundle carries them: the emoji and Hangul subsets
        shipped = bundled_font(f, tmp_path / "made")
        shutil.copy(shipped, tmp_path / shipped.name)
    label = QLabel("0123456789")
    qtbot.addWidget(label)
    before = QFontMetrics(label.font()).horizontalAdvance("0123456789")
    families = install_fallback_fonts(tmp_path)
    assert "Droid Sans Fallback" in families and "Noto Color Emoji" in families
    if any(f.name == "wqy-microhei.ttc" for f in present):
        assert "WenQuanYi Micro Hei" in families
    assert set(families) <= set(QFontDatabase.families())
    assert QFontMetrics(label.font()).horizontalAdvance("0123456789") == before


def test_no_fonts_folder_is_fine(tmp_path: Path) -> None:
    assert install_fallback_fonts(tmp_path / "missing") == []

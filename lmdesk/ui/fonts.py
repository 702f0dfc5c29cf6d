"""Fallback fonts, so token chips show CJK and emoji on a bare system."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtGui import QFont, QFontDatabase

from ..core.paths import resources_dir

log = logging.getLogger(__name__)

# where the build finds the fallback fonts on a Debian/Ubuntu build machine
SYSTEM_FALLBACKS = (
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),
)


def install_fallback_fonts(folder: Path | None = None) -> list[str]:
    """Register the fonts shipped in ``resources/fonts`` and put their
    families after the default family, for glyphs it lacks. Returns the
    families added."""
    folder = folder or resources_dir() / "fonts"
    families: list[str] = []
    for path in sorted(folder.glob("*.[ot]tf")) if folder.is_dir() else []:
        font_id = QFontDatabase.addApplicationFont(str(path))
        if font_id < 0:
            log.warning("could not load the font %s", path)
            continue
        families += QFontDatabase.applicationFontFamilies(font_id)
    if families:
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance()
        if app is not None:
            font = app.font()
            font.setFamilies([font.family(), *families])
            app.setFont(font)
        for family in {QFont().defaultFamily(), "DejaVu Sans", "Sans Serif"}:
            QFont.insertSubstitutions(family, families)
    return families

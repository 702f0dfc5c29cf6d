"""Fallback fonts, so token chips show CJK and emoji on a bare system."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtGui import QFontDatabase

from ..engine.paths import resources_dir

log = logging.getLogger(__name__)

# where the build finds the fallback fonts on a Debian/Ubuntu build machine
SYSTEM_FALLBACKS = (
    Path("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf"),
    Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"),
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),  # its Hangul (lmdesk.packaging)
)


def install_fallback_fonts(folder: Path | None = None) -> list[str]:
    """Register the fonts shipped in ``resources/fonts``; returns their families.

    Registering is all it takes: Qt's font fallback then finds CJK and emoji
    glyphs in them when the system fonts lack those. (Naming them in the
    application font's family list would be worse: the emoji font also has
    digits, for keycaps, and would draw every digit.)
    """
    folder = folder or resources_dir() / "fonts"
    families: list[str] = []
    for path in sorted(folder.glob("*.[ot]tf")) if folder.is_dir() else []:
        font_id = QFontDatabase.addApplicationFont(str(path))
        if font_id < 0:
            log.warning("could not load the font %s", path)
            continue
        families += QFontDatabase.applicationFontFamilies(font_id)
    return families

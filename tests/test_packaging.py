"""The bundle's slim copies (lmdesk/packaging.py): ICU data and fallback fonts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmdesk.engine.paths import resources_dir
from lmdesk.packaging import HANGUL, SlimmingUnavailable, bundled_font, keep_icu_item, render_icon, slim_icu_data
from lmdesk.ui.fonts import SYSTEM_FALLBACKS

EMOJI = next(f for f in SYSTEM_FALLBACKS if f.name == "NotoColorEmoji.ttf")
WQY = next(f for f in SYSTEM_FALLBACKS if f.name == "wqy-microhei.ttc")


def _pyside_icu_data() -> Path | None:
    import PySide6

    found = sorted((Path(PySide6.__file__).parent / "Qt" / "lib").glob("libicudata.so.*"))
    return found[0] if found else None


def test_icu_items_kept_are_root_collation_and_locale_independent_tables():
    for name in ("coll/root.res", "coll/ucadata.icu", "root.res", "en.res", "pool.res", "res_index.res",
                 "supplementalData.res", "likelySubtags.res", "zoneinfo64.res", "nfkc.nrm", "cnvalias.icu"):
        assert keep_icu_item(name), name
    for name in ("de.res", "zh_Hant_TW.res", "en_US_POSIX.res", "coll/de.res", "coll/zh.res", "brkitr/cjdict.dict",
                 "zone/fr.res", "curr/ja.res", "ibm-943_P15A-2003.cnv", "rfc3491.spp", "confusables.cfu", "unames.icu"):
        assert not keep_icu_item(name), name


_QT_ICU_PROBE = r"""
import json, sys
from PySide6.QtCore import QCollator, QCoreApplication, QLocale
app = QCoreApplication([])
maps = open("/proc/self/maps").read()
loaded = sorted({line.split()[-1] for line in maps.splitlines() if "libicudata" in line})
german = QCollator(QLocale(QLocale.Language.German, QLocale.Country.Germany))
swedish = QCollator(QLocale(QLocale.Language.Swedish, QLocale.Country.Sweden))
words = ["zebra", "Äpfel", "apple", "Zürich", "öl", "Ol"]
print(json.dumps({
    "loaded": loaded,
    "german": sorted(words, key=german.sortKey),
    "swedish": sorted(words, key=swedish.sortKey),
    "upper": QLocale(QLocale.Language.German, QLocale.Country.Germany).toUpper("straße"),
    "turkish_upper": QLocale(QLocale.Language.Turkish, QLocale.Country.Turkey).toUpper("istanbul"),
}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or _pyside_icu_data() is None,
                    reason="PySide6 carries its own ICU on Linux only")
def test_slim_icu_data_serves_what_qt_asks_of_it(tmp_path):
    full = _pyside_icu_data()
    try:
        slim = slim_icu_data(full, tmp_path)
    except SlimmingUnavailable as exc:
        pytest.skip(f"this machine cannot make the slim ICU data: {exc}")
    assert slim.name == full.name
    assert slim.stat().st_size < 4_000_000 < 25_000_000 < full.stat().st_size
    env = {"LD_LIBRARY_PATH": str(slim.parent), "QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", _QT_ICU_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["loaded"] == [str(slim)]  # the probe really ran on the slim copy
    assert "Could not create collator" not in out.stderr
    # the root collation: accents and case are secondary differences, for every locale
    assert got["german"] == ["Äpfel", "apple", "Ol", "öl", "zebra", "Zürich"]
    assert got["swedish"] == got["german"]  # Swedish's own order (ä, ö after z) is gone: documented
    assert got["upper"] == "STRASSE"
    assert got["turkish_upper"] == "İSTANBUL"  # locale case mapping needs no locale data


def test_slim_icu_data_refuses_what_is_not_icu_data(tmp_path):
    with pytest.raises(SlimmingUnavailable):
        slim_icu_data(tmp_path / "libfoo.so.1", tmp_path)


@pytest.mark.skipif(not EMOJI.is_file(), reason="Debian's fonts-noto-color-emoji is not installed")
def test_emoji_font_keeps_every_single_code_point_emoji_in_color(tmp_path):
    from fontTools.ttLib import TTFont
    from PySide6.QtGui import QColor, QImage

    out = bundled_font(EMOJI, tmp_path)
    assert out != EMOJI
    full, slim = TTFont(EMOJI), TTFont(out)
    assert slim.getBestCmap() == full.getBestCmap()
    assert 0x1F600 in slim.getBestCmap()
    assert "GSUB" not in slim  # the ligatures (skin tones, flags, ZWJ sequences) went
    assert len(slim.getGlyphOrder()) < len(full.getGlyphOrder()) / 2
    assert out.stat().st_size < 4_500_000 < 9_000_000 < EMOJI.stat().st_size
    glyph = slim.getBestCmap()[0x1F600]
    strike = slim["CBDT"].strikeData[0]
    assert slim["CBLC"].strikes[0].bitmapSizeTable.ppemX == full["CBLC"].strikes[0].bitmapSizeTable.ppemX
    image = QImage.fromData(strike[glyph].imageData)
    assert not image.isNull() and image.width() > 64
    colored = sum(QColor(image.pixel(x, y)).hsvSaturation() > 100
                  for y in range(0, image.height(), 4) for x in range(0, image.width(), 4))
    assert colored > 100  # a yellow face, not a blank or gray bitmap


@pytest.mark.skipif(not WQY.is_file(), reason="Debian's fonts-wqy-microhei is not installed")
def test_korean_fallback_is_the_hangul_of_wenquanyi(tmp_path):
    from fontTools.ttLib import TTFont

    out = bundled_font(WQY, tmp_path)
    cmap = TTFont(out).getBestCmap()
    syllables = [cp for cp in range(0xAC00, 0xD7A4)]
    assert all(cp in cmap for cp in syllables)
    assert all(cp in cmap for cp in map(ord, "한국어ㄱㄴㄷ"))
    assert set(cmap) <= {cp for r in HANGUL for cp in r}  # nothing else: Droid Sans Fallback draws the rest
    assert 200_000 < out.stat().st_size < 1_000_000
    assert TTFont(out)["name"].getDebugName(1) == "WenQuanYi Micro Hei"


def test_other_fonts_travel_as_they_are(tmp_path):
    droid = next(f for f in SYSTEM_FALLBACKS if "Droid" in f.name)
    assert bundled_font(droid, tmp_path) == droid


def test_the_icon_is_drawn_for_the_installers(tmp_path):
    from PySide6.QtGui import QColor, QImage

    png = render_icon(resources_dir() / "icons" / "lmdesk.svg", tmp_path / "icon.png")
    image = QImage(str(png))
    assert (image.width(), image.height()) == (256, 256)
    assert QColor.fromRgba(image.pixel(2, 2)).alpha() == 0  # rounded corners stay transparent
    assert QColor.fromRgba(image.pixel(128, 230)).name() == "#1f2329"  # the dark tile
    assert QColor.fromRgba(image.pixel(200, 72)).name() == "#2f5597"  # the long, unsurprising chip
    assert QColor.fromRgba(image.pixel(76, 184)).name() == "#f0c93a"  # the short, surprising one
    assert QColor.fromRgba(image.pixel(200, 184)).name() == "#1f2329"  # it is short


def test_a_broken_icon_stops_the_build(tmp_path):
    bad = tmp_path / "bad.svg"
    bad.write_text("<svg")
    with pytest.raises(RuntimeError):
        render_icon(bad, tmp_path / "icon.png")

"""What build.spec makes for the standalone bundle; never used at run time.

Two files of the Linux bundle are far larger than what lmdesk uses of them.

* ICU's data library (``libicudata.so.NN``, 32 MB), which Qt Core links. Qt
  calls ICU for collation (file dialogs sort names with it), locale case
  mapping, time-zone display names and legacy text codecs. The copy made here
  keeps the root collation (Unicode's default order), the normalization
  tables, the locale-independent tables and English: 2.5 MB. Every locale
  then sorts with the root collation, time zones have no localized display
  names, and Shift-JIS and the other legacy codecs are gone; lmdesk reads and
  writes UTF-8 only and shows no time zones.
* Noto Color Emoji (11 MB), the emoji fallback for token chips. About two
  thirds of it are ligatures: skin tones, families and other ZWJ sequences,
  flags and keycaps, which a token chip almost never holds whole (a byte-level
  tokenizer splits them). The copy made here keeps every emoji that is one
  code point (3 MB); a sequence is drawn as its parts.

The Korean fallback is cut out of a font too: WenQuanYi Micro Hei's Hangul
(0.6 MB of its 5 MB) joins Droid Sans Fallback, which lacks Hangul. And the
application icon is drawn as the PNG that PyInstaller turns into the Windows
and macOS icons.

The tools are ICU's ``icupkg`` (Debian: icu-devtools) and binutils
(``objcopy``, ``as``, ``ld``) for ICU, and fontTools for the fonts. A build
machine without them raises :class:`SlimmingUnavailable`; build.spec then
ships the originals and the bundle is only larger.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path


class SlimmingUnavailable(RuntimeError):
    """This build machine lacks what a slimmer copy needs."""


# locale-independent tables at the top of ICU's data tree (not a locale's .res)
_LOCALE_RES = re.compile(r"[a-z]{2,3}(_[A-Za-z0-9]+)*\.res")
_KEEP_LOCALES = {"root.res", "en.res", "res_index.res"}
_KEEP_COLLATION = {"coll/root.res", "coll/ucadata.icu", "coll/res_index.res"}


def keep_icu_item(name: str) -> bool:
    """Whether the slim ICU data keeps the item ``name`` (as ``icupkg -l`` lists it)."""
    if "/" in name:  # trees: collation, break iterators, zones, currencies, units ...
        return name in _KEEP_COLLATION
    if name.endswith(".res"):
        return name in _KEEP_LOCALES or not _LOCALE_RES.fullmatch(name)
    # codec tables, stringprep profiles, the spoof checker and character names
    # go; normalization, layout and emoji properties and the codec aliases stay
    return not name.endswith((".cnv", ".spp", ".cfu")) and name != "unames.icu"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SlimmingUnavailable(f"{name} is not installed")
    return path


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SlimmingUnavailable(f"{Path(args[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def slim_icu_data(library: Path, workdir: Path) -> Path:
    """A copy of ICU's data library ``library`` with only the items
    :func:`keep_icu_item` keeps, written under ``workdir``; returns its path."""
    match = re.fullmatch(r"libicudata\.so\.(\d+)", library.name)
    if match is None:
        raise SlimmingUnavailable(f"{library.name} is not ICU's data library")
    version = match.group(1)
    objcopy, icupkg, as_, ld = (_tool(t) for t in ("objcopy", "icupkg", "as", "ld"))
    package = f"icudt{version}l"  # little-endian ASCII: the item names carry it
    full, slim = workdir / "full", workdir / "slim"
    for folder in (full, slim):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    # the library holds one symbol, icudtNN_dat, that fills its .rodata
    data = full / f"{package}.dat"
    _run(objcopy, "-O", "binary", "--only-section=.rodata", str(library), str(data))
    head = data.read_bytes()[:16]
    if len(head) < 16 or head[2:4] != b"\xda\x27" or head[12:16] != b"CmnD":
        raise SlimmingUnavailable(f"{library.name} does not hold ICU common data where expected")
    items = _run(icupkg, "-l", str(data)).split()
    drop = [item for item in items if not keep_icu_item(item)]
    (workdir / "drop.txt").write_text("\n".join(drop) + "\n")
    # icupkg names the items after the output file: it must be icudtNNl.dat too
    _run(icupkg, "-r", str(workdir / "drop.txt"), str(data), str(slim / data.name))
    source = workdir / "icudata.s"
    incbin = str(slim / data.name).replace("\\", "\\\\").replace('"', '\\"')
    source.write_text(
        "\t.section .rodata\n"
        f"\t.globl icudt{version}_dat\n"
        f"\t.type icudt{version}_dat, @object\n"
        "\t.balign 16\n"
        f"icudt{version}_dat:\n"
        f'\t.incbin "{incbin}"\n'
        f"\t.size icudt{version}_dat, . - icudt{version}_dat\n"
        '\t.section .note.GNU-stack,"",@progbits\n'
    )
    obj = workdir / "icudata.o"
    out = slim / library.name
    _run(as_, "-o", str(obj), str(source))
    _run(ld, "-shared", "-soname", library.name, "-o", str(out), str(obj))
    return out


# Hangul: syllables, jamo and their extensions and compatibility forms
HANGUL = (range(0x1100, 0x1200), range(0x3130, 0x3190), range(0xA960, 0xA980), range(0xAC00, 0xD7A4),
          range(0xD7B0, 0xD800))


def subset_font(font: Path, out: Path, unicodes: Iterable[int] | None = None) -> Path:
    """A copy of ``font`` (of a collection: its first face) with only the
    glyphs that the code points ``unicodes`` (default: every code point the
    font maps) reach one by one: ligatures and their glyphs go. Written to
    ``out``, which is returned."""
    try:
        from fontTools import subset
        from fontTools.ttLib import TTCollection, TTFont
    except ImportError as exc:
        raise SlimmingUnavailable("fontTools is not installed") from exc
    logging.getLogger("fontTools").setLevel(logging.WARNING)  # one line per table otherwise
    tt = TTCollection(font).fonts[0] if font.suffix.lower() == ".ttc" else TTFont(font)
    options = subset.Options()
    options.layout_features = []  # no layout tables: the ligatures go
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "FFTM"]  # FFTM: FontForge's time stamps
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=tt.getBestCmap().keys() if unicodes is None else unicodes)
    subsetter.subset(tt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tt.save(out)
    return out


def bundled_font(font: Path, workdir: Path) -> Path:
    """The file that goes into the bundle for the system font ``font``:
    Noto Color Emoji as its single-code-point emoji, WenQuanYi Micro Hei as
    its Hangul only (Droid Sans Fallback, which draws the Chinese and
    Japanese, has three Hangul syllables), any other font as it is."""
    if font.name == "NotoColorEmoji.ttf":
        return subset_font(font, workdir / font.name)
    if font.name == "wqy-microhei.ttc":
        return subset_font(font, workdir / "WenQuanYiMicroHei-Hangul.ttf", (cp for r in HANGUL for cp in r))
    return font


def render_icon(svg: Path, out: Path, size: int = 256) -> Path:
    """The SVG icon ``svg`` drawn as a ``size`` × ``size`` PNG at ``out``:
    PyInstaller makes the Windows .ico and the macOS .icns from it."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise RuntimeError(f"{svg.name} is not a valid SVG image")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), "PNG"):
        raise RuntimeError(f"could not write {out}")
    return out

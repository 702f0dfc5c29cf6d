"""Getting things out of the window: copy tokens, export the table, save a picture.

The main window calls these; they hold no state of their own beyond the
folder last exported to. Nothing here raises for a person's mistake or a
file system's refusal: each action returns an :class:`Outcome` whose
``message`` is one sentence, for the status bar or (``error``) the window's
error line. The numbers and texts come from :mod:`lmdesk.engine.export`, the
same as ``lmdesk score --csv`` / ``--json``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QMimeData
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QWidget

from ..engine import export
from ..engine.document import DocToken
from ..engine.export import ExportError, Texts

__all__ = [
    "CSV_FILTER",
    "JSON_FILTER",
    "PNG_FILTER",
    "Outcome",
    "text_mime",
    "table_mime",
    "copy_tokens",
    "copy_table",
    "export_table",
    "export_png",
    "export_png_dialog",
]

CSV_FILTER = "CSV table (*.csv)"
JSON_FILTER = "JSON (*.json)"
PNG_FILTER = "PNG picture (*.png)"
NOTHING_SELECTED = "Select tokens first: click a token, or drag over several."
EMPTY_DOCUMENT = "There is nothing to export yet: the document is empty."

_last_folder: Path | None = None  # where the last export went: the next dialog opens there


@dataclass(frozen=True)
class Outcome:
    """What an action did, in one sentence."""

    message: str
    error: bool = False
    path: Path | None = None  # the file written, if any


def _tokens(n: int) -> str:
    return f"{n:,} token{'s' if n != 1 else ''}"


# --------------------------------------------------------------------------------------------------
# the clipboard
# --------------------------------------------------------------------------------------------------


def text_mime(tokens: Sequence[DocToken], start: int, stop: int, texts: Texts) -> QMimeData:
    """text/plain: the span's text exactly as the document reads (the ids
    decoded together, so the byte tokens of one character give the character)."""
    mime = QMimeData()
    mime.setText(export.span_text(tokens, texts, start, stop))
    return mime


def table_mime(tokens: Sequence[DocToken], start: int, stop: int, texts: Texts) -> QMimeData:
    """The span's table (position, token, p, bits, rank, entropy): text/plain
    as tab-separated lines, for spreadsheets and text editors, and text/html
    as a ``<table>``, for word processors (and spreadsheets, which prefer it)."""
    mime = QMimeData()
    mime.setText(export.tsv_table(tokens, texts, start, stop))
    mime.setHtml(export.html_table(tokens, texts, start, stop))
    return mime


def _copy(tokens: Sequence[DocToken], start: int, stop: int, texts: Texts | None, as_table: bool) -> Outcome:
    start, stop = max(0, int(start)), min(len(tokens), int(stop))
    if texts is None or stop <= start:
        return Outcome(NOTHING_SELECTED, error=True)
    mime = (table_mime if as_table else text_mime)(tokens, start, stop, texts)
    QGuiApplication.clipboard().setMimeData(mime)
    what = "as a table" if as_table else "as text"
    return Outcome(f"Copied {_tokens(stop - start)} {what} (positions {start}–{stop - 1}).")


def copy_tokens(tokens: Sequence[DocToken], start: int, stop: int, texts: Texts | None, *,
                as_table: bool = False) -> Outcome:
    """Put tokens ``start`` … ``stop - 1`` on the clipboard: their text
    (:func:`text_mime`), or with ``as_table`` their table (:func:`table_mime`).
    ``texts`` is the model's :class:`~lmdesk.engine.token_text.TokenTextTable`."""
    return _copy(tokens, start, stop, texts, as_table)


def copy_table(tokens: Sequence[DocToken], start: int, stop: int, texts: Texts | None) -> Outcome:
    """:func:`copy_tokens` with ``as_table=True``."""
    return _copy(tokens, start, stop, texts, True)


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------


def _safe_name(name: str | None, fallback: str) -> str:
    cleaned = re.sub(r"[^\w.+-]+", "-", name or "").strip("-.")
    return cleaned or fallback


def _save_dialog(parent: QWidget | None, title: str, filters: list[str], name: str,
                 directory: Path | str | None) -> tuple[Path, str] | None:
    """The chosen file and filter, or None if the dialog was cancelled.

    Qt's own dialog rather than the system's: it looks the same on every lab
    computer, and tests can fill it in (``QApplication.activeModalWidget()``).
    """
    dialog = QFileDialog(parent, title)
    dialog.setObjectName("lmdesk-export-dialog")
    dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
    dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
    dialog.setFileMode(QFileDialog.FileMode.AnyFile)
    dialog.setNameFilters(filters)
    suffixes = {f: f[f.index("*.") + 2 : f.index(")")] for f in filters}
    dialog.setDefaultSuffix(suffixes[filters[0]])
    dialog.filterSelected.connect(lambda f: dialog.setDefaultSuffix(suffixes.get(f, "")))
    folder = Path(directory) if directory is not None else (_last_folder or Path.home())
    dialog.setDirectory(str(folder))
    dialog.selectFile(name)
    try:
        if not dialog.exec():
            return None
        chosen = dialog.selectedFiles()
        return (Path(chosen[0]), dialog.selectedNameFilter()) if chosen else None
    finally:
        dialog.deleteLater()


def _remember(path: Path) -> None:
    global _last_folder
    _last_folder = path.parent


def export_table(parent: QWidget | None, tokens: Sequence[DocToken], texts: Texts | None, *,
                 model: str | None = None, directory: Path | str | None = None,
                 path: Path | str | None = None) -> Outcome | None:
    """File → Export table…: the whole document's per-token table as CSV or JSON.

    Without ``path`` a save dialog asks where (filters CSV and JSON; the
    format follows the file's suffix, else the chosen filter); None if it is
    cancelled. The file is written all or nothing (a temporary file renamed
    over the target). CSV files carry a UTF-8 byte order mark, for Excel.
    """
    if not tokens or texts is None:
        return Outcome(EMPTY_DOCUMENT, error=True)
    fmt: str | None = None
    if path is None:
        chosen = _save_dialog(parent, "Export the table of tokens", [CSV_FILTER, JSON_FILTER],
                              f"{_safe_name(model, 'lmdesk')}-tokens.csv", directory)
        if chosen is None:
            return None
        path, name_filter = chosen
        if path.suffix.lower() not in (".csv", ".json"):
            fmt = "json" if name_filter == JSON_FILTER else "csv"
    path = Path(path)
    try:
        export.write_table(path, tokens, texts, model=model, fmt=fmt)
    except ExportError as exc:
        return Outcome(str(exc), error=True)
    _remember(path)
    kind = "JSON" if (fmt or export.table_format(path)) == "json" else "CSV"
    return Outcome(f"Exported the table of {_tokens(len(tokens))} as {kind} to {path}.", path=path)


def export_png(widget: QWidget, path: Path | str) -> Path:
    """Write what ``widget`` shows to ``path`` as a PNG picture (at the
    screen's pixel density), all or nothing. Raises
    :class:`~lmdesk.engine.export.ExportError` with one sentence."""
    pixmap = widget.grab()
    if pixmap.isNull() or pixmap.width() == 0 or pixmap.height() == 0:
        raise ExportError("There is no picture to save: the view is not shown.")
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    ok = pixmap.save(buffer, "PNG")
    buffer.close()
    if not ok:
        raise ExportError("The picture could not be made into a PNG file.")
    return export.write_file(path, bytes(data.data()), what="The picture")


def export_png_dialog(parent: QWidget | None, widget: QWidget, *, what: str = "chart", name: str | None = None,
                      directory: Path | str | None = None, path: Path | str | None = None) -> Outcome | None:
    """File → Export chart/plot as PNG…: ask where (unless ``path``), then
    :func:`export_png`. ``what`` names the picture in the dialog's title and
    the message ("chart", "plot"). None if the dialog is cancelled."""
    if path is None:
        chosen = _save_dialog(parent, f"Export the {what} as a picture", [PNG_FILTER],
                              f"{_safe_name(name, 'lmdesk')}-{_safe_name(what, 'picture')}.png", directory)
        if chosen is None:
            return None
        path = chosen[0]
    path = Path(path)
    try:
        export_png(widget, path)
    except ExportError as exc:
        return Outcome(str(exc), error=True)
    _remember(path)
    return Outcome(f"Saved the {what} as a picture to {path}.", path=path)

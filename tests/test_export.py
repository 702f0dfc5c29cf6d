"""Getting the per-token table out: rows, CSV, JSON, the clipboard, files and pictures.

The numbers are checked against an independent computation: the numpy
reference forward pass of the GGUF file (tests/reference.py) and the
statistics worked out here with numpy, in float64.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from reference import ReferenceModel
from tiny_gguf import write_tiny_gguf

from lmdesk.convert.gguf_import import import_gguf
from lmdesk.engine import export
from lmdesk.engine.export import COLUMNS, ExportError

# commas, quotes, a new line, a tab, runs of spaces, letters made of two and three bytes, a special token
TEXT = ' the, "cat"\n\tsat  on é—x "a,b" <|im_end|>'
ASCII = ' the, "cat"\r\n\tsat  "on" a,b\n'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    gguf = write_tiny_gguf(tmp / "tiny.gguf", ctx=128, seed=7)
    import_gguf(gguf, tmp / "model")
    from lmdesk.engine.model import LoadedModel

    return gguf, LoadedModel(tmp / "model", threads=1)


def scored(model, text: str, top_k: int = 5):
    from lmdesk.engine.session import Session

    session = Session(model, top_k=top_k)
    session.load_text(text)
    return session


@pytest.fixture(scope="module")
def doc(tiny):
    gguf, model = tiny
    session = scored(model, TEXT)
    return gguf, session, session.doc.tokens, session.token_text


def byte_tokens(tokens, texts) -> list[int]:
    return [i for i, t in enumerate(tokens) if texts(t.id).partial_utf8]


# -------------------------------------------------------------------------------------------------- rows


def test_rows_are_the_models_numbers_worked_out_independently(doc) -> None:
    gguf, session, tokens, texts = doc
    ids = [t.id for t in tokens]
    logits = ReferenceModel(gguf).forward(ids)  # float64, no onnxruntime
    shifted = logits - logits.max(axis=-1, keepdims=True)
    lp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    table = export.rows(tokens, texts)
    assert [r["position"] for r in table] == list(range(len(ids))) and [r["id"] for r in table] == ids
    assert all(table[0][c] is None for c in ("prob", "logprob", "bits", "rank", "entropy"))
    for j in range(1, len(ids)):
        row, dist, actual = table[j], lp[j - 1], lp[j - 1, ids[j]]
        assert row["logprob"] == pytest.approx(actual, abs=2e-3)
        assert row["prob"] == pytest.approx(math.exp(actual), rel=3e-3)
        assert row["bits"] == pytest.approx(-actual / math.log(2), abs=3e-3)
        assert row["entropy"] == pytest.approx(-(np.exp(dist) * dist).sum() / math.log(2), abs=3e-3)
        # rank: 1 + the candidates the model liked better (a near tie may go either way)
        assert (dist > actual + 1e-3).sum() + 1 <= row["rank"] <= (dist > actual - 1e-3).sum() + 1
    assert len({r["rank"] for r in table[1:]}) > 3  # the test model is not trivially flat


def test_the_text_column_is_each_tokens_own_text(doc) -> None:
    _, _, tokens, texts = doc
    table = export.rows(tokens, texts)
    pieces = byte_tokens(tokens, texts)
    assert len(pieces) == 5  # é (2 bytes) and — (3 bytes): the tiny vocabulary has no merge for them
    raws = [texts(tokens[i].id).raw for i in pieces]
    assert b"".join(raws) == "é—".encode()
    assert [table[i]["text"] for i in pieces] == ["".join(f"<0x{b:02X}>" for b in r) for r in raws]
    # everything else is the text itself, so the table reads back as the document
    assert "".join(r["text"] for r in table).replace("<0xC3><0xA9><0xE2><0x80><0x94>", "é—") == TEXT
    assert table[-1]["text"] == "<|im_end|>"


# -------------------------------------------------------------------------------------------------- CSV / JSON


def parse_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_and_json_are_the_same_numbers(doc) -> None:
    _, session, tokens, texts = doc
    text = export.csv_text(export.rows(tokens, texts))
    assert text.splitlines()[0] == "position,id,text,prob,logprob,bits,rank,entropy"
    got = parse_csv(text)
    data = json.loads(export.json_text(tokens, texts, model="tiny"))
    assert data["model"] == "tiny" and len(got) == len(data["tokens"]) == len(tokens)
    for line, entry in zip(got, data["tokens"]):
        assert int(line["position"]) == entry["position"] and int(line["id"]) == entry["id"]
        assert line["text"] == entry["text"]
        for c in ("prob", "logprob", "bits", "entropy"):
            assert (line[c] == "") if entry[c] is None else (float(line[c]) == entry[c]), c  # every digit
        assert (line["rank"] == "") if entry["rank"] is None else int(line["rank"]) == entry["rank"]
    first = data["tokens"][0]
    assert first["prob"] is None and first["bits"] is None and first["top"] == []
    assert all(got[0][c] == "" for c in ("prob", "logprob", "bits", "rank", "entropy"))
    # enough digits to redo the arithmetic by hand
    for line in got[1:]:
        assert float(line["bits"]) == pytest.approx(-float(line["logprob"]) / math.log(2), rel=1e-12)
        assert float(line["prob"]) == pytest.approx(math.exp(float(line["logprob"])), rel=1e-12)
    total = session.doc.total()
    assert (data["total_bits"], data["bits_per_token"], data["perplexity"]) == (
        total.total_bits, total.bits_per_token, total.perplexity)
    top = data["tokens"][1]["top"]
    assert len(top) == 5 and top[0]["prob"] >= top[-1]["prob"] and top[0]["id"] == tokens[1].stats.top_ids[0]


def test_csv_quotes_what_would_break_a_cell(tiny) -> None:
    _, model = tiny
    session = scored(model, ASCII)
    tokens, texts = session.doc.tokens, session.token_text
    text = export.csv_text(export.rows(tokens, texts))
    got = parse_csv(text)
    assert "".join(line["text"] for line in got) == ASCII  # spaces, \r, \n, tabs, quotes, commas exactly
    lines = text.split("\n")
    assert lines[1] == f'0,{tokens[0].id},"{texts(tokens[0].id).text}","","","","",""'
    assert any(t.startswith(" ") for t in (line["text"] for line in got))
    for n, tok in enumerate(tokens):  # each text cell quoted (leading spaces survive any reader), numbers bare
        cell = texts(tok.id).text.replace('"', '""')
        assert f',{tok.id},"{cell}",' in text, n
    with_crlf = export.csv_text(export.rows(tokens, texts), lineterminator="\r\n")
    assert parse_csv(with_crlf) == got


# -------------------------------------------------------------------------------------------------- clipboard text


def test_span_text_decodes_the_ids_together(doc) -> None:
    _, session, tokens, texts = doc
    n = len(tokens)
    assert export.span_text(tokens, texts, 0, n) == TEXT == session.text()
    pieces = byte_tokens(tokens, texts)
    a, b = pieces[0], pieces[-1] + 1
    assert export.span_text(tokens, texts, a, b) == "é—"
    assert export.span_text(tokens, texts, a, a + 2) == "é"
    # chip by chip, the same tokens give no character at all
    assert "".join(texts(tokens[i].id).text for i in range(a, b)) == ""
    # a span that cuts a character says so, once, rather than inventing letters
    assert export.span_text(tokens, texts, a + 1, a + 3) == "\ufffd\ufffd"
    assert export.span_text(tokens, texts, a, a + 1) == "\ufffd"
    assert export.span_text(tokens, texts, 3, 3) == ""


def test_the_copied_table(doc) -> None:
    _, _, tokens, texts = doc
    n = len(tokens)
    tsv = export.tsv_table(tokens, texts, 0, n)
    lines = tsv.split("\n")
    assert lines[0] == "position\ttoken\tp\tbits\trank\tentropy" and lines[-1] == ""
    body = [ln.split("\t") for ln in lines[1:-1]]
    assert len(body) == n and all(len(r) == 6 for r in body)  # no tab or new line inside a token breaks a row
    assert body[0][2:] == ["", "", "", ""]
    table = export.rows(tokens, texts)
    for cells, row in zip(body[1:], table[1:]):
        assert int(cells[0]) == row["position"] and cells[1] == texts(row["id"]).display
        assert float(cells[2]) == pytest.approx(row["prob"], rel=1e-5)
        assert float(cells[3]) == pytest.approx(row["bits"], rel=1e-5)
        assert int(cells[4]) == row["rank"]
        assert float(cells[5]) == pytest.approx(row["entropy"], rel=1e-5)
    assert [r[1] for r in body[:2]] == ["·the", ","]
    part = export.tsv_table(tokens, texts, 2, 5).split("\n")
    assert len(part) == 5 and part[1].startswith("2\t")

    html = export.html_table(tokens, texts, 0, n)
    assert html.startswith("<table") and html.count("<tr>") == n + 1 and "<th>entropy</th>" in html
    assert "&lt;|im_end|&gt;" in html and "<|im_end|>" not in html


# -------------------------------------------------------------------------------------------------- files


def test_files_for_excel_and_for_programs(doc, tmp_path: Path) -> None:
    _, _, tokens, texts = doc
    path = export.write_table(tmp_path / "t.csv", tokens, texts, model="tiny")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\r\n") >= len(tokens) + 1  # Excel's UTF-8 CSV
    with path.open(encoding="utf-8-sig", newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == list(COLUMNS)
    assert got == parse_csv(export.csv_text(export.rows(tokens, texts)))
    assert [g["text"] for g in got][-4:] == [export.rows(tokens, texts)[i]["text"] for i in range(-4, 0)]

    js = export.write_table(tmp_path / "t.json", tokens, texts, model="tiny")
    assert not js.read_bytes().startswith(b"\xef\xbb\xbf")
    assert json.loads(js.read_text(encoding="utf-8")) == export.document_json(tokens, texts, model="tiny")
    if os.name == "posix":
        mask = os.umask(0)
        os.umask(mask)
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # an ordinary file, not a private temporary one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.json"]  # no temporary files left


def one_sentence(message: str, *words: str) -> None:
    assert "\n" not in message and message.endswith(".") and "Traceback" not in message
    assert message.count(". ") == 0, message
    for w in words:
        assert w in message, message


def test_a_file_that_cannot_be_written_is_one_sentence(doc, tmp_path: Path, monkeypatch) -> None:
    _, _, tokens, texts = doc
    blocker = tmp_path / "a-file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(ExportError) as caught:
        export.write_table(blocker / "t.csv", tokens, texts)
    one_sentence(str(caught.value), "The table could not be saved to", str(blocker / "t.csv"), "does not exist")

    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: the refusal as a read-only folder gives it
        def refuse(*a, **k):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(export.tempfile, "mkstemp", refuse)
    else:
        folder.chmod(0o500)
    try:
        with pytest.raises(ExportError) as caught:
            export.write_table(folder / "t.csv", tokens, texts)
    finally:
        folder.chmod(0o700)
        monkeypatch.undo()
    one_sentence(str(caught.value), "cannot be written to")

    # a full disk, half-way through: the earlier file stays as it was, and no temporary file is left
    earlier = tmp_path / "lesson.csv"
    earlier.write_text("the earlier table", encoding="utf-8")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(export.os, "fsync", full)
    with pytest.raises(ExportError) as caught:
        export.write_table(earlier, tokens, texts)
    one_sentence(str(caught.value), "the disk is full")
    assert earlier.read_text(encoding="utf-8") == "the earlier table"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".lmdesk-")]


# -------------------------------------------------------------------------------------------------- Qt


def test_copy_puts_text_and_table_on_the_clipboard(qtbot, doc) -> None:
    from PySide6.QtGui import QGuiApplication

    from lmdesk.ui import export_actions

    _, _, tokens, texts = doc
    pieces = byte_tokens(tokens, texts)
    a, b = pieces[0] - 1, pieces[-1] + 1
    out = export_actions.copy_tokens(tokens, a, b, texts)
    assert not out.error and f"{b - a} tokens" in out.message
    mime = QGuiApplication.clipboard().mimeData()
    assert mime.text() == export.span_text(tokens, texts, a, b) == " é—" and not mime.hasHtml()

    out = export_actions.copy_table(tokens, a, b, texts)
    assert not out.error and "table" in out.message
    mime = QGuiApplication.clipboard().mimeData()
    assert mime.text() == export.tsv_table(tokens, texts, a, b)
    assert mime.text().splitlines()[1].split("\t")[:2] == [str(a), texts(tokens[a].id).display]
    assert mime.hasHtml() and "<table" in mime.html() and mime.html().count("<tr>") == b - a + 1

    QGuiApplication.clipboard().setText("kept")
    for start, stop in ((4, 4), (len(tokens), len(tokens) + 3)):
        nothing = export_actions.copy_tokens(tokens, start, stop, texts)
        assert nothing.error and nothing.message == export_actions.NOTHING_SELECTED
    assert export_actions.copy_table(tokens, 0, 3, None).error
    assert QGuiApplication.clipboard().text() == "kept"


def drive_dialog(qtbot, name: str, *, pick_json: bool = False, cancel: bool = False) -> list:
    """Fill in the export dialog once it is open (it is Qt's own, modal)."""
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtWidgets import QApplication, QComboBox, QFileDialog, QLineEdit

    seen: list = []

    def fill() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, QFileDialog):
            QTimer.singleShot(20, fill)
            return
        try:
            seen.append((dialog.objectName(), dialog.nameFilters(), dialog.testOption(
                QFileDialog.Option.DontUseNativeDialog), dialog.directory().absolutePath()))
            if cancel:
                dialog.reject()
                return
            if pick_json:
                combo = dialog.findChild(QComboBox, "fileTypeCombo")
                combo.setFocus()
                qtbot.keyClick(combo, Qt.Key.Key_Down)  # as a person picks the second filter
                seen.append(dialog.selectedNameFilter())
            edit = dialog.findChild(QLineEdit, "fileNameEdit")
            edit.clear()
            qtbot.keyClicks(edit, name)
            dialog.accept()
        except BaseException as exc:  # never leave the test stuck in the dialog
            seen.append(exc)
            dialog.reject()

    QTimer.singleShot(0, fill)
    return seen


# the offscreen platform says so of every dialog window; nothing to do with lmdesk
OFFSCREEN_DIALOG = pytest.mark.qt_log_ignore("This plugin does not support propagateSizeHints")


@OFFSCREEN_DIALOG
def test_export_table_through_the_dialog(qtbot, doc, tmp_path: Path) -> None:
    from lmdesk.ui import export_actions

    _, _, tokens, texts = doc
    seen = drive_dialog(qtbot, "lesson")
    out = export_actions.export_table(None, tokens, texts, model="tiny/model", directory=tmp_path)
    assert seen[0] == ("lmdesk-export-dialog", [export_actions.CSV_FILTER, export_actions.JSON_FILTER], True,
                       str(tmp_path))
    assert out is not None and not out.error, out
    assert out.path == tmp_path / "lesson.csv" and str(out.path) in out.message and "CSV" in out.message
    assert out.path.read_bytes().startswith(b"\xef\xbb\xbf")
    with out.path.open(encoding="utf-8-sig", newline="") as f:
        assert [int(r["id"]) for r in csv.DictReader(f)] == [t.id for t in tokens]

    seen = drive_dialog(qtbot, "notes", pick_json=True)
    out = export_actions.export_table(None, tokens, texts, model="tiny", directory=tmp_path)
    assert seen[1] == export_actions.JSON_FILTER, seen
    assert out.path == tmp_path / "notes.json" and "JSON" in out.message
    assert json.loads(out.path.read_text(encoding="utf-8"))["tokens"] == export.token_entries(tokens, texts)

    seen = drive_dialog(qtbot, "x", cancel=True)
    assert export_actions.export_table(None, tokens, texts, directory=tmp_path) is None and seen
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lesson.csv", "notes.json"]

    empty = export_actions.export_table(None, [], texts, path=tmp_path / "e.csv")
    assert empty.error and empty.message == export_actions.EMPTY_DOCUMENT
    bad = export_actions.export_table(None, tokens, texts, path=tmp_path / "lesson.csv" / "t.csv")
    assert bad.error and bad.path is None
    one_sentence(bad.message, "could not be saved")


@OFFSCREEN_DIALOG
def test_a_plot_as_a_png_picture(qtbot, tmp_path: Path) -> None:
    from PySide6.QtGui import QImage

    from lmdesk.ui import export_actions
    from lmdesk.ui.surprise_plot import SurprisePlot

    plot = SurprisePlot()
    qtbot.addWidget(plot)
    plot.resize(480, 200)
    plot.set_bits([None, 1.0, 6.0, 2.5, 12.0, 0.5])
    plot.show()
    qtbot.waitExposed(plot)
    path = export_actions.export_png(plot, tmp_path / "plot.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    image = QImage(str(path))
    ratio = plot.devicePixelRatioF()
    assert (image.width(), image.height()) == (round(480 * ratio), round(200 * ratio))
    assert len({image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}) > 3

    seen = drive_dialog(qtbot, "surprise")
    out = export_actions.export_png_dialog(None, plot, what="plot", name="tiny", directory=tmp_path)
    assert seen[0][1] == [export_actions.PNG_FILTER]
    assert out.path == tmp_path / "surprise.png" and not out.error and "plot" in out.message
    assert QImage(str(out.path)).size() == image.size()

    bad = export_actions.export_png_dialog(None, plot, what="plot", path=tmp_path / "plot.png" / "x.png")
    assert bad.error
    one_sentence(bad.message, "The picture could not be saved to")

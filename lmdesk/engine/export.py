"""The per-token table, for reading elsewhere: CSV, JSON and the clipboard.

Everything here is a pure function of a sequence of the document's tokens
(:class:`~lmdesk.engine.document.DocToken`) and the id → text table of the
model (:class:`~lmdesk.engine.token_text.TokenTextTable`, or any callable
giving a :class:`~lmdesk.engine.token_text.TokenText`), except
:func:`write_table` / :func:`write_file`, which put the result in a file.
``lmdesk score --csv`` and ``--json`` and the window's File → Export use the
same :func:`rows`, so the two formats can never disagree.

One row per token, the columns :data:`COLUMNS`::

    position,id,text,prob,logprob,bits,rank,entropy

* ``position``: the token's index in the document (0 = the first token);
* ``text``: what the token contributes to the text (see :func:`token_text`):
  its characters exactly, spaces and new lines included; a special token as
  its string (``<|im_end|>``). A token that is only part of a multi-byte
  character (byte-level vocabularies cut "é" into two tokens) has no text of
  its own: its incomplete bytes are written ``<0xC3>``, the complete
  characters around them as they are. The ``id`` column says which token it is;
* ``prob`` (0…1), ``logprob`` (natural log), ``bits`` (−log2 p), ``rank``
  (1 = the model's first choice) and ``entropy`` (bits) of the distribution
  that predicted the token, at temperature 1 with nothing filtered. The first
  token has none (nothing predicted it): empty cells in CSV, ``null`` in JSON.

Numbers are written in full (Python's shortest repr that reads back as the
same float), so ``bits == -logprob / ln 2`` can be checked by hand and CSV
and JSON parse to equal values.

This module never imports Qt.
"""

from __future__ import annotations

import csv
import errno
import html
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .document import DocToken
from .errors import LmdeskError
from .stats import summarize
from .token_text import TokenText, split_utf8

__all__ = [
    "COLUMNS",
    "TABLE_COLUMNS",
    "ExportError",
    "token_text",
    "rows",
    "csv_text",
    "token_entries",
    "document_json",
    "json_text",
    "span_text",
    "table_cells",
    "tsv_table",
    "html_table",
    "write_file",
    "write_table",
    "table_format",
]

Texts = Callable[[int], TokenText]

#: The CSV header, in order (``lmdesk score --csv`` and File → Export table).
COLUMNS: tuple[str, ...] = ("position", "id", "text", "prob", "logprob", "bits", "rank", "entropy")
#: The columns of a table copied to the clipboard (Copy as table).
TABLE_COLUMNS: tuple[str, ...] = ("position", "token", "p", "bits", "rank", "entropy")
_STATS = ("prob", "logprob", "bits", "rank", "entropy")


class ExportError(LmdeskError):
    """A table or picture could not be written; the message is one sentence."""


# --------------------------------------------------------------------------------------------------
# rows
# --------------------------------------------------------------------------------------------------


def token_text(tt: TokenText) -> str:
    """The ``text`` of a token in the table: its characters exactly; bytes that
    are not complete UTF-8 by themselves (part of a character) as ``<0xC3>``."""
    if not tt.partial_utf8:
        return tt.text
    return "".join(p if isinstance(p, str) else "".join(f"<0x{b:02X}>" for b in p) for p in split_utf8(tt.raw))


def _range(tokens: Sequence[DocToken], start: int, stop: int | None) -> tuple[int, int]:
    n = len(tokens)
    stop = n if stop is None else stop
    return max(0, min(n, int(start))), max(0, min(n, int(stop)))


def rows(tokens: Sequence[DocToken], texts: Texts, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
    """One dict per token of ``tokens[start:stop]``, with the keys :data:`COLUMNS`
    (``position`` is the index in ``tokens``); the statistics are None for a
    token nothing predicted."""
    a, b = _range(tokens, start, stop)
    out: list[dict[str, Any]] = []
    for position in range(a, b):
        tok = tokens[position]
        st = tok.stats
        row: dict[str, Any] = {"position": position, "id": int(tok.id), "text": token_text(texts(tok.id))}
        if st is None:
            row.update(dict.fromkeys(_STATS))
        else:
            row.update(prob=float(st.prob), logprob=float(st.logprob), bits=float(st.bits), rank=int(st.rank),
                       entropy=float(st.entropy))
        out.append(row)
    return out


def csv_text(table: Sequence[dict[str, Any]], *, lineterminator: str = "\n") -> str:
    """``table`` (from :func:`rows`) as CSV with the header :data:`COLUMNS`.

    The text column is always quoted, so leading spaces, commas, quotes, tabs,
    carriage returns and new lines inside a token read back exactly; numbers
    are bare, with all their digits; a missing statistic is an empty cell
    (written ``""``, which every CSV reader takes as empty). No byte order
    mark here: :func:`write_table` adds it for files.
    """
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator).writerow(COLUMNS)
    # QUOTE_NONNUMERIC: every string (the text) quoted, ints and floats bare, via repr
    writer = csv.writer(buf, lineterminator=lineterminator, quoting=csv.QUOTE_NONNUMERIC)
    for row in table:
        writer.writerow([row[c] for c in COLUMNS])
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------


def token_entries(tokens: Sequence[DocToken], texts: Texts, start: int = 0,
                  stop: int | None = None) -> list[dict[str, Any]]:
    """The :func:`rows` with each token's candidates added: ``top``, the
    model's most likely tokens at that position (id, text, prob), empty for
    the first token."""
    out = []
    for row in rows(tokens, texts, start, stop):
        st = tokens[row["position"]].stats
        row["top"] = [] if st is None else [
            {"id": int(i), "text": token_text(texts(i)), "prob": float(p)} for i, p in zip(st.top_ids, st.top_probs)
        ]
        out.append(row)
    return out


def document_json(tokens: Sequence[DocToken], texts: Texts, *, model: str | None = None, start: int = 0,
                  stop: int | None = None) -> dict[str, Any]:
    """What ``lmdesk score --json`` prints: the model's name, every token
    (:func:`token_entries`) and the surprise over the predicted ones."""
    entries = token_entries(tokens, texts, start, stop)
    total = summarize([e["bits"] for e in entries if e["bits"] is not None])
    return {
        "model": model,
        "tokens": entries,
        "total_bits": total.total_bits,
        "bits_per_token": total.bits_per_token,
        "perplexity": total.perplexity,
    }


def json_text(tokens: Sequence[DocToken], texts: Texts, *, model: str | None = None, start: int = 0,
              stop: int | None = None, indent: int | None = None) -> str:
    """:func:`document_json` as JSON text (UTF-8 characters kept as they are)."""
    return json.dumps(document_json(tokens, texts, model=model, start=start, stop=stop), ensure_ascii=False,
                      indent=indent)


# --------------------------------------------------------------------------------------------------
# the clipboard
# --------------------------------------------------------------------------------------------------


def span_text(tokens: Sequence[DocToken], texts: Texts, start: int = 0, stop: int | None = None) -> str:
    """The text of ``tokens[start:stop]``, as the document reads there.

    The tokens' bytes are decoded together, so the pieces of a character
    split over several tokens give the character. Bytes that are no complete
    character within the span (the selection cuts a character, or a byte that
    is never text) become U+FFFD, one per run. Special tokens are their strings.
    """
    a, b = _range(tokens, start, stop)
    return b"".join(texts(tokens[i].id).raw for i in range(a, b)).decode("utf-8", errors="replace")


def _number(value: float | None, digits: int = 6) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def table_cells(tokens: Sequence[DocToken], texts: Texts, start: int = 0,
                stop: int | None = None) -> list[list[str]]:
    """Header and rows of the copied table (:data:`TABLE_COLUMNS`), as strings.

    The token is its chip label (spaces ``·``, new lines ``↵``, tabs ``→``,
    pieces of a character ``<0xC3>``), so that a pasted table shows each token
    as the window does and no tab or new line inside a token breaks a row;
    numbers have 6 significant digits (the CSV export has them all)."""
    cells = [list(TABLE_COLUMNS)]
    for row in rows(tokens, texts, start, stop):
        cells.append([str(row["position"]), texts(row["id"]).display, _number(row["prob"]), _number(row["bits"]),
                      "" if row["rank"] is None else str(row["rank"]), _number(row["entropy"])])
    return cells


def tsv_table(tokens: Sequence[DocToken], texts: Texts, start: int = 0, stop: int | None = None) -> str:
    """The copied table as tab-separated lines (what a spreadsheet reads from plain text)."""
    return "".join("\t".join(r) + "\n" for r in table_cells(tokens, texts, start, stop))


def html_table(tokens: Sequence[DocToken], texts: Texts, start: int = 0, stop: int | None = None) -> str:
    """The copied table as an HTML ``<table>`` (what word processors and spreadsheets paste as a table)."""
    head, *body = table_cells(tokens, texts, start, stop)
    cell = "<td style='white-space:pre'>{}</td>".format
    lines = ["<table border='1' cellspacing='0' cellpadding='3'>",
             "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    lines += ["<tr>" + "".join(cell(html.escape(c)) for c in r) + "</tr>" for r in body]
    lines.append("</table>")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------------


def _why(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "that folder cannot be written to"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return "that folder does not exist"
    if exc.errno == errno.EISDIR:
        return "it is a folder"
    return str(exc.strerror or exc).rstrip(".")


def write_file(path: Path | str, data: bytes, *, what: str = "The file") -> Path:
    """Write ``data`` to ``path``, all or nothing: into a temporary file next
    to it, then renamed over it, so a failure (a full disk, a folder that
    cannot be written to) leaves an earlier file there as it was. Raises
    :class:`ExportError` with one sentence."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lmdesk-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if os.name == "posix":  # mkstemp makes it private; an export is an ordinary file
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise ExportError(f"{what} could not be saved to {path}: {_why(exc)}.") from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
    return path


def table_format(path: Path | str) -> str:
    """"json" for a ``.json`` file name, else "csv"."""
    return "json" if Path(path).suffix.lower() == ".json" else "csv"


def write_table(path: Path | str, tokens: Sequence[DocToken], texts: Texts, *, model: str | None = None,
                fmt: str | None = None) -> Path:
    """Write the per-token table of ``tokens`` to ``path`` as CSV or JSON
    (``fmt``; by default from the file's suffix), atomically (:func:`write_file`).

    A CSV file is UTF-8 *with* a byte order mark and CRLF line ends: Excel, on
    the lab's computers, reads a CSV file without a BOM in the local code page
    and garbles every accented letter; LibreOffice, pandas (``utf-8-sig``) and
    Python's csv module read it fine. (``lmdesk score --csv`` writes to
    standard output, for pipes and scripts: plain UTF-8, no BOM.) A JSON file
    is plain UTF-8 (JSON forbids a BOM), as ``lmdesk score --json`` prints it.
    """
    fmt = fmt or table_format(path)
    if fmt == "json":
        data = (json_text(tokens, texts, model=model, indent=1) + "\n").encode("utf-8")
    elif fmt == "csv":
        data = csv_text(rows(tokens, texts), lineterminator="\r\n").encode("utf-8-sig")
    else:
        raise ValueError(f"unknown table format {fmt!r}")
    return write_file(path, data, what="The table")

"""The whole document as token chips in a wrapping flow.

:class:`DocumentView` is a scroll area whose inner canvas paints every token
of the document as a rounded "chip" with QPainter (one widget for thousands
of tokens, never one label per token):

* a chip shows the token's visible text (``TokenText.display``); the marks of
  that text (``·`` space, ``↵`` new line, ``<0xE2>`` stray byte, ...) are drawn
  in a muted colour, so a real "·" in the text reads differently from a space;
* a predicted token is filled with the surprise colour of its bits; the first
  token (nothing predicted it) with the theme's panel colour;
* template scaffolding recedes: a special token (``<|im_start|>``) is a
  dimmed chip with a dashed border and italic text, other template markup
  (the role name after it, its new line) an outlined "ghost" chip with muted
  text; both keep their surprise as a coloured strip along the bottom;
* each message starts a new line under a small role header ("user", ...) in
  the role's colour, with a thin bar of that colour along its lines;
* a token containing a new line ends its line.

The layout (one rectangle per chip) is cached and recomputed only from the
first changed token; painting touches only the chips in the exposed area.
The widget only shows what it is given: no model, no maths beyond layout.
"""

from __future__ import annotations

import html
import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPen,
)
from PySide6.QtWidgets import QApplication, QFrame, QScrollArea, QToolTip, QWidget

from ..engine.document import MARKUP, TOOL_CALL, DocToken, Segment
from ..engine.token_text import TokenText, characters_made_with
from .theme import Theme, mix, surprise_color, system_theme, text_on

__all__ = ["DocumentView", "PLACEHOLDER"]

BASE_POINT_SIZE = 11.0
PLACEHOLDER = "The conversation appears here as tokens. Type a message and press End Turn."
MIN_ZOOM, MAX_ZOOM = 0.4, 5.0


def format_prob(p: float, bits: float | None = None) -> str:
    """``0.152`` for ordinary probabilities, ``3.41e-06`` for tiny ones: three
    significant digits, and more where ``bits`` is given and −log₂ of the
    number shown would not give those bits to two decimals (a student checks
    the surprise by hand from the probability on the screen)."""
    for digits in range(3, 10):
        if p >= 0.001:
            text = f"{p:.{max(digits - 1 - math.floor(math.log10(p)), 0)}f}"
        else:
            text = f"{p:.{digits - 1}e}"
        shown = float(text)
        if bits is None or (shown > 0 and f"{-math.log2(shown):.2f}" == f"{bits:.2f}"):
            return text
    return text


@dataclass(frozen=True)
class _Metrics:
    """Every size of the layout, in pixels, for one zoom / compact / ids setting."""

    font: QFont
    special_font: QFont
    label_font: QFont
    id_font: QFont
    fm: QFontMetricsF
    special_fm: QFontMetricsF
    label_fm: QFontMetricsF
    id_fm: QFontMetricsF
    chip_h: int
    pad_x: float
    min_w: int
    gap_x: int
    line_gap: int
    seg_gap: int
    label_h: int  # role header above a segment (0 in compact mode)
    id_h: int  # id line under each chip (0 unless ids are shown)
    top: int
    bottom: int
    margin: int  # left edge of the role bar
    right_margin: int
    bar_w: int
    indent: int  # left edge of the chips
    radius: float
    strip_h: int
    line_w: float  # outline width
    highlight_w: float

    @property
    def line_h(self) -> int:
        return self.chip_h + self.id_h


@dataclass
class _Press:
    index: int | None  # chip under the press, None for empty space
    anchor: int | None  # chip the selection grows from
    pos: QPoint
    dragging: bool = False


@dataclass(frozen=True)
class _ChipText:
    """The display text cut into runs of real text and marks, measured."""

    width: float
    pieces: tuple[tuple[str, bool, float], ...]  # (text, is_mark, x offset)


class _Canvas(QWidget):
    """The painted surface; all logic lives in :class:`DocumentView`."""

    def __init__(self, view: "DocumentView") -> None:
        super().__init__()
        self._view = view
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self._hint = QSize(400, 300)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt name)
        return QSize(self._hint)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        painter = QPainter(self)
        try:
            self._view._paint(painter, event.rect())
        finally:
            painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._view._mouse_press(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._view._mouse_move(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._view._mouse_release(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        self._view._mouse_press(event)

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
        self._view._set_hover(None)
        super().leaveEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if not self._view._key_press(event):
            super().keyPressEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            self._view._show_tooltip(event)
            return True
        return super().event(event)


def one_in(p: float) -> str:
    """ "  as surprising as 1 in 81" — the bits' everyday meaning (1/p), for p below one half."""
    if not 0 < p < 0.5:
        return ""
    n = 1 / p
    shown = f"{n:,.0f}" if n < 1e6 else f"{n:.2g}".replace("e+0", " × 10^").replace("e+", " × 10^")
    return f"  — as surprising as 1 chance in {shown}"


class DocumentView(QScrollArea):
    """The document as token chips; see the module documentation."""

    tokenClicked = Signal(int)  # noqa: N815 (Qt naming)
    spanSelected = Signal(int, int)  # noqa: N815
    selectionCleared = Signal()  # noqa: N815

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidgetResizable(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self._canvas = _Canvas(self)
        self.setWidget(self._canvas)
        self.setFocusProxy(self._canvas)

        self._theme: Theme = system_theme()
        self._zoom = 1.0
        self._compact = False
        self._show_ids = False
        self._by_surprise = True
        # a remark on a message's label: the model's reply holds a tool call it wrote (message index → text)
        self._notes: dict[int, str] = {}
        # attention tint: the chips a query token looks at, each tinted by its weight
        self._attention: tuple[int, np.ndarray, str] | None = None  # query index, weights over 0 … query, label

        self._tokens: list[DocToken] = []
        self._segments: list[Segment] = []
        self._texts: Callable[[int], TokenText] | None = None

        # layout cache: one rectangle per chip, valid for the first _valid tokens
        self._rects: list[QRect] = []
        self._bottoms: list[int] = []  # bottom of each chip's line (incl. id line): non-decreasing
        self._valid = 0
        self._runs: list[tuple[int, int, str]] = []  # (start, stop, role) of each segment
        self._run_calls: set[int] = set()  # the runs (their index) holding a tool call
        self._content_h = 0
        self._width = 0
        self._chip_texts: dict[tuple[str, tuple[tuple[int, int], ...], bool], _ChipText] = {}
        self._id_widths: dict[int, float] = {}

        # selection state
        self._current: int | None = None  # the clicked chip (highlight outline)
        self._anchor: int | None = None  # where a shift-click span starts
        self._span: tuple[int, int] | None = None
        self._press: _Press | None = None
        self._hover: int | None = None

        self._stick_to_end = False  # set by scroll_to_end, cleared by scrolling elsewhere
        self.verticalScrollBar().actionTriggered.connect(self._user_scrolled)
        self._m = self._make_metrics()
        self._apply_palette()

    # ------------------------------------------------------------------ API

    def set_document(
        self,
        tokens: Sequence[DocToken],
        segments: Sequence[Segment],
        texts: Callable[[int], TokenText],
        first_changed: int = 0,
    ) -> None:
        """Show ``tokens``; the chips before ``first_changed`` are known to be unchanged."""
        old_n = len(self._tokens)
        self._tokens = list(tokens)
        self._segments = list(segments)
        self._texts = texts
        n = len(self._tokens)
        keep = max(0, min(self._valid, int(first_changed), old_n, n))
        self._rebuild_runs(max(0, min(int(first_changed), old_n, n)))
        self._relayout(keep)
        # selection beyond the new end goes
        if self._current is not None and self._current >= n:
            self._current = None
        if self._anchor is not None and self._anchor >= n:
            self._anchor = None
        if self._span is not None:
            a, b = self._span
            b = min(b, n)
            self._span = (a, b) if a < b else None
        if self._hover is not None and self._hover >= n:
            self._hover = None
        if self._press is not None:
            self._press = None
        self._repaint_from(keep)

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self._apply_palette()
        self._canvas.update()

    def set_zoom(self, factor: float) -> None:
        factor = max(MIN_ZOOM, min(MAX_ZOOM, float(factor)))
        if factor == self._zoom:
            return
        self._zoom = factor
        self._settings_changed()

    def set_compact(self, on: bool) -> None:
        if bool(on) != self._compact:
            self._compact = bool(on)
            self._settings_changed()

    def set_show_ids(self, on: bool) -> None:
        if bool(on) != self._show_ids:
            self._show_ids = bool(on)
            self._settings_changed()

    def set_color_by_surprise(self, on: bool) -> None:
        self._by_surprise = bool(on)
        self._canvas.update()

    def set_attention(self, query: int | None, weights=None, label: str = "") -> None:
        """Tint each chip ``0 … query`` by how much token ``query`` attends to
        it (``weights``: one per key, adding up to 1); the strongest weight
        gets the full tint. ``None``: back to the surprise colours."""
        if query is None or weights is None:
            self._attention = None
        else:
            w = np.asarray(weights, dtype=np.float64).reshape(-1)
            self._attention = (int(query), w, label)
        self._canvas.update()

    def set_notes(self, notes: dict[int, str]) -> None:
        """Remarks shown after the role over messages (message index → text)."""
        if notes != self._notes:
            self._notes = dict(notes)
            self._canvas.update()

    def attention(self) -> tuple[int, np.ndarray, str] | None:
        return self._attention

    def attention_tint(self, index: int) -> QColor | None:
        """The attention tint of chip ``index`` (None: no tint on it)."""
        if self._attention is None:
            return None
        query, w, _ = self._attention
        if not 0 <= index < w.size:
            return None
        top = float(w.max()) if w.size else 0.0
        share = float(w[index]) / top if top > 0 else 0.0
        return mix(self._theme.panel, self._theme.highlight, share ** 0.5)  # square root: small weights still show

    def select_token(self, index: int | None) -> None:
        if index is not None and not 0 <= index < len(self._tokens):
            index = None
        old, self._current = self._current, index
        if index is not None:
            self._anchor = index
            self._ensure_visible(index)
        # only the two chips whose outline changes (the window sets "no chip" after every
        # token the model writes: repainting the whole view for it cost 7-10 ms a time)
        self._update_chips(old, index)

    def _update_chips(self, *indices: int | None) -> None:
        """Repaint chips ``indices`` with the outline drawn around a selected or hovered chip."""
        pad = round(self._m.highlight_w * 2) + 2
        for i in dict.fromkeys(indices):
            if i is not None and i < len(self._rects):
                self._canvas.update(self._rects[i].adjusted(-pad, -pad, pad, pad))

    def select_span(self, start: int, stop: int) -> None:
        n = len(self._tokens)
        start, stop = max(0, int(start)), min(n, int(stop))
        self._span = (start, stop) if start < stop else None
        if self._span is not None:
            self._ensure_visible(start)
        self._canvas.update()

    def clear_selection(self) -> None:
        old, had_span = self._current, self._span is not None
        self._current = None
        self._span = None
        self._press = None
        if had_span:
            self._canvas.update()
        else:
            self._update_chips(old)

    def chip_rect(self, index: int) -> QRect:
        """The chip's rectangle in canvas coordinates (a null QRect for no such chip)."""
        if 0 <= index < len(self._rects):
            return QRect(self._rects[index])
        return QRect()

    def canvas(self) -> QWidget:
        return self._canvas

    def scroll_to_end(self) -> None:
        """Show the end of the document, and keep showing it through re-layouts
        (a scroll bar appearing, a resize, a zoom) until the view is scrolled elsewhere."""
        self._stick_to_end = True
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    # read-only state (for the window and tests)

    def selected_token(self) -> int | None:
        return self._current

    def selected_span(self) -> tuple[int, int] | None:
        return self._span

    def theme(self) -> Theme:
        return self._theme

    def zoom(self) -> float:
        return self._zoom

    def index_at(self, pos: QPoint) -> int | None:
        """The chip under ``pos`` (canvas coordinates), or None."""
        return self._hit(pos)

    def tooltip_text(self, index: int) -> str:
        """What hovering chip ``index`` tells: text, id, probability, surprise, rank, entropy."""
        if not 0 <= index < len(self._tokens) or self._texts is None:
            return ""
        tok = self._tokens[index]
        tt = self._texts(tok.id)
        role = self._role_of(tok)
        if tok.special:
            kind = "special token"
        elif tok.kind == MARKUP:
            kind = "template markup"
        else:
            kind = "text" if role == "text" else f"{role} message"
        lines = [tt.display or "(empty)", f"token {index} · id {tok.id} · {kind}"]
        if tt.partial_utf8:
            lines.append("bytes " + " ".join(f"{b:02X}" for b in tt.raw) + ": only part of a character")
            lo = max(0, index - 4)
            raws = [self._texts(t.id).raw for t in self._tokens[lo : index + 5]]
            for ch, first, last in characters_made_with(raws, index - lo):
                lines.append(f"tokens {first + lo}–{last + lo} together make ‘{ch}’ (U+{ord(ch):04X})")
        if self._attention is not None and 0 <= index < self._attention[1].size:
            query, w, label = self._attention
            lines.append(f"token {query} attends to it with weight {w[index]:.4f} ({w[index] * 100:.2f} %)"
                         + (f", {label}" if label else ""))
        stats = tok.stats
        if stats is None:
            lines.append("first token: nothing predicted it")
        else:
            p = f"p = {format_prob(stats.prob, stats.bits)}"
            if stats.prob >= 0.001:
                p += f"  ({stats.prob * 100:.1f} %)"
            lines.append(p)
            lines.append(f"surprise = {stats.bits:.2f} bits  (−log₂ p){one_in(stats.prob)}")
            lines.append(f"rank {stats.rank}" + ("  (the model's first choice)" if stats.rank == 1 else ""))
            lines.append(f"entropy = {stats.entropy:.2f} bits  (how unsure the model was)")
        return "\n".join(lines)

    # ------------------------------------------------------------------ Qt overrides

    def resizeEvent(self, event) -> None:  # noqa: N802 (the viewport's resize, see QAbstractScrollArea)
        super().resizeEvent(event)
        width = self.viewport().width()
        if width != self._width:
            anchor = self._top_anchor()
            self._width = width
            self._valid = 0
            self._relayout(0)
            self._canvas.update()
            self._restore_anchor(anchor)
        else:
            self._resize_canvas()
            if self._stick_to_end:
                self.scroll_to_end()

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(640, 420)

    # ------------------------------------------------------------------ metrics and layout

    def _make_metrics(self) -> _Metrics:
        z = self._zoom
        compact = self._compact
        font = QFont(QApplication.font())
        font.setPointSizeF(BASE_POINT_SIZE * z)
        font.setKerning(True)
        special = QFont(font)
        special.setItalic(True)
        special.setPointSizeF(BASE_POINT_SIZE * z * 0.86)
        label = QFont(font)
        label.setBold(True)
        label.setPointSizeF(BASE_POINT_SIZE * z * 0.8)
        label.setLetterSpacing(QFont.SpacingType.PercentageSpacing, 106)
        idf = QFont(font)
        idf.setPointSizeF(BASE_POINT_SIZE * z * 0.66)
        fm, sfm, lfm, ifm = QFontMetricsF(font), QFontMetricsF(special), QFontMetricsF(label), QFontMetricsF(idf)
        pad_y = (1.5 if compact else 3.5) * z
        chip_h = round(fm.height() + 2 * pad_y)
        bar_w = max(2, round(3 * z))
        margin = round(8 * z)
        return _Metrics(
            font=font, special_font=special, label_font=label, id_font=idf,
            fm=fm, special_fm=sfm, label_fm=lfm, id_fm=ifm,
            chip_h=chip_h,
            pad_x=(3.0 if compact else 5.0) * z,
            min_w=round(fm.height() * 0.85),
            gap_x=max(2, round((3 if compact else 4) * z)),
            line_gap=max(2, round((3 if compact else 6) * z)),
            seg_gap=round((7 if compact else 14) * z),
            label_h=0 if compact else round(lfm.height() + 4 * z),
            id_h=round(ifm.height() + 1 * z) if self._show_ids else 0,
            top=round((6 if compact else 8) * z),
            bottom=round(10 * z),
            margin=margin,
            right_margin=round(8 * z),
            bar_w=bar_w,
            indent=margin + bar_w + round((6 if compact else 10) * z),
            radius=(3.0 if compact else 4.5) * z,
            strip_h=max(2, round(3.5 * z)),
            line_w=max(1.0, 1.0 * z),
            highlight_w=max(2.0, 2.0 * z),
        )

    def _settings_changed(self) -> None:
        self._m = self._make_metrics()
        self._chip_texts.clear()
        self._id_widths.clear()
        anchor = self._top_anchor()
        self._valid = 0
        self._relayout(0)
        self._canvas.update()
        self._restore_anchor(anchor)
        if self._current is not None and not self._stick_to_end:
            self._ensure_visible(self._current)

    def _top_anchor(self) -> tuple[int, int] | None:
        """The first chip at the top of the view, and its distance from the top."""
        y = self.verticalScrollBar().value()
        i = bisect_left(self._bottoms, y)
        if y <= 0 or i >= len(self._rects):
            return None
        return i, self._rects[i].top() - y

    def _restore_anchor(self, anchor: tuple[int, int] | None) -> None:
        """After a new layout: keep following the end, or keep the same chip at the top."""
        if self._stick_to_end:
            self.scroll_to_end()
        elif anchor is not None and anchor[0] < len(self._rects):
            self.verticalScrollBar().setValue(self._rects[anchor[0]].top() - anchor[1])

    def _chip_text(self, tt: TokenText, special: bool) -> _ChipText:
        key = (tt.display, tuple(tt.marks), special)
        found = self._chip_texts.get(key)
        if found is not None:
            return found
        fm = self._m.special_fm if special else self._m.fm
        display = tt.display
        pieces: list[tuple[str, bool, float]] = []
        pos = 0
        x = 0.0
        cuts: list[tuple[int, int, bool]] = []
        for a, b in tt.marks:
            a, b = max(a, pos), min(b, len(display))
            if a > pos:
                cuts.append((pos, a, False))
            if b > a:
                cuts.append((a, b, True))
            pos = max(pos, b)
        if pos < len(display):
            cuts.append((pos, len(display), False))
        for a, b, is_mark in cuts:
            piece = display[a:b]
            pieces.append((piece, is_mark, x))
            x += fm.horizontalAdvance(piece)
        value = _ChipText(x, tuple(pieces))
        self._chip_texts[key] = value
        return value

    def _id_width(self, token_id: int) -> float:
        w = self._id_widths.get(token_id)
        if w is None:
            w = self._m.id_fm.horizontalAdvance(str(token_id))
            self._id_widths[token_id] = w
        return w

    def _chip_width(self, tok: DocToken, tt: TokenText) -> int:
        m = self._m
        w = self._chip_text(tt, tok.special).width + 2 * m.pad_x
        if self._show_ids:
            w = max(w, self._id_width(tok.id) + 2 * m.pad_x * 0.6)
        return max(m.min_w, math.ceil(w))

    def _role_of(self, tok: DocToken) -> str:
        if 0 <= tok.segment < len(self._segments):
            return self._segments[tok.segment].role
        return "text"

    def _holds_call(self, start: int) -> bool:
        """Whether the run starting at chip ``start`` holds a tool call (worked out as the runs are)."""
        k = bisect_left(self._runs, (start,))
        return k < len(self._runs) and self._runs[k][0] == start and k in self._run_calls

    def labelled_parts(self) -> list[tuple[int, int, str]]:
        """The chips of each part of the document, in reading order, with the label over them."""
        return [(start, stop, self.role_label(start, stop)) for start, stop, _role in self._runs]

    def role_label(self, start: int, stop: int) -> str:
        """The label over the chips ``start`` … ``stop - 1`` of one message: its
        role, a tool result's function, an assistant's tool calls."""
        tok = self._tokens[start]
        seg = self._segments[tok.segment] if 0 <= tok.segment < len(self._segments) else None
        role = self._role_of(tok)
        if seg is not None and role == "tool":
            return f"tool result · {seg.name}" if seg.name else "tool result"
        if role == "assistant" and self._holds_call(start):
            return "assistant · tool call"
        note = self._notes.get(seg.message) if seg is not None and seg.message is not None else None
        return f"{role} · {note}" if note else role

    def _label_h_for(self, role: str) -> int:
        if self._compact or role == "text":
            return 0
        return self._m.label_h

    def _rebuild_runs(self, first: int = 0) -> None:
        """The runs of chips of one part each, from the run holding chip ``first - 1`` on
        (the chips before ``first`` and their parts are unchanged; so are the runs that end
        before it). Going through all 8,000 chips again took 3-5 ms a token while the model wrote."""
        k = bisect_left(self._runs, first, key=lambda run: run[1])  # the first run not ending before ``first``
        runs = self._runs[:k]
        calls = {c for c in self._run_calls if c < k}  # the runs holding a tool call
        start = runs[-1][1] if runs else 0
        toks = self._tokens
        for i in range(start, len(toks)):
            tok = toks[i]
            if tok.kind == TOOL_CALL:
                calls.add(len(runs))
            if i + 1 == len(toks) or toks[i + 1].segment != tok.segment:
                runs.append((start, i + 1, self._role_of(toks[start])))
                start = i + 1
        self._runs = runs
        self._run_calls = calls

    def _relayout(self, start: int) -> None:
        """Lay out the chips from ``start`` on; the rectangles before it are kept."""
        m = self._m
        toks = self._tokens
        texts = self._texts
        n = len(toks)
        start = max(0, min(start, self._valid, len(self._rects), n))
        del self._rects[start:]
        del self._bottoms[start:]
        if n == 0 or texts is None:
            self._valid = 0
            self._content_h = 0
            self._resize_canvas()
            return
        width = self._width or self.width()  # before the first resize event: the widget's own width
        right = max(width - m.right_margin, m.indent + m.min_w)
        avail = right - m.indent
        chip_h, line_h = m.chip_h, m.line_h
        rects, bottoms = self._rects, self._bottoms
        if start == 0:
            x = m.indent
            y = m.top + self._label_h_for(self._role_of(toks[0]))
            prev_newline = False
        else:
            prev = rects[start - 1]
            x = prev.left() + prev.width() + m.gap_x
            y = prev.top()
            prev_newline = texts(toks[start - 1].id).has_newline
        for i in range(start, n):
            tok = toks[i]
            tt = texts(tok.id)
            w = min(self._chip_width(tok, tt), avail)
            if i > 0:
                if tok.segment != toks[i - 1].segment:
                    y += line_h + m.seg_gap + self._label_h_for(self._role_of(tok))
                    x = m.indent
                elif prev_newline or (x + w > right and x > m.indent):
                    y += line_h + m.line_gap
                    x = m.indent
            rects.append(QRect(x, y, w, chip_h))
            bottoms.append(y + line_h)
            x += w + m.gap_x
            prev_newline = tt.has_newline
        self._valid = n
        self._content_h = bottoms[-1] + m.bottom
        self._resize_canvas()

    def _resize_canvas(self) -> None:
        width = max(1, self._width or self.width())
        height = max(self._content_h, self.viewport().height())
        self._canvas._hint = QSize(width, self._content_h)
        if self._canvas.size() != QSize(width, height):
            self._canvas.resize(width, height)
            self._canvas.updateGeometry()

    def _repaint_from(self, index: int) -> None:
        if index <= 0 or index > len(self._rects):
            self._canvas.update()
            return
        y = self._rects[index - 1].top() - self._m.seg_gap - self._m.label_h
        self._canvas.update(QRect(0, max(0, y), self._canvas.width(), self._canvas.height()))

    def _apply_palette(self) -> None:
        pal = self.viewport().palette()
        pal.setColor(self.viewport().backgroundRole(), self._theme.window)
        self.viewport().setPalette(pal)
        self.viewport().setAutoFillBackground(True)

    def _user_scrolled(self, _action: int) -> None:
        self._stick_to_end = False

    def _ensure_visible(self, index: int) -> None:
        if not 0 <= index < len(self._rects):
            return
        self._stick_to_end = False
        r = self._rects[index]
        margin = self._m.line_h
        self.ensureVisible(r.center().x(), r.center().y(), r.width() // 2 + margin, r.height() // 2 + margin)

    # ------------------------------------------------------------------ hit testing

    def _hit(self, pos: QPoint) -> int | None:
        y = pos.y()
        i = bisect_left(self._bottoms, y)
        rects = self._rects
        while i < len(rects) and rects[i].top() <= y:
            if rects[i].contains(pos):
                return i
            i += 1
        return None

    def _nearest(self, pos: QPoint, forward: bool = False) -> int | None:
        """The chip a drag at ``pos`` reaches, in reading order (also over gaps
        and margins): a drag ``forward`` (towards the end) reaches the last chip
        begun before ``pos``, a drag backward the first chip not yet ended, so a
        gap between two chips selects neither of them."""
        rects = self._rects
        if not rects:
            return None
        i = bisect_left(self._bottoms, pos.y())
        if i >= len(rects):
            return len(rects) - 1
        top = rects[i].top()
        if forward:
            reached = i - 1  # left of the row's first chip: the chip before the row
            while i < len(rects) and rects[i].top() == top and rects[i].left() <= pos.x():
                reached = i
                i += 1
            return max(reached, 0)
        while i < len(rects) and rects[i].top() == top:
            if rects[i].right() >= pos.x():
                return i
            i += 1
        return i - 1

    def _forward_of(self, anchor: int, pos: QPoint) -> bool:
        """Whether ``pos`` lies after chip ``anchor`` in reading order."""
        r = self._rects[anchor]
        return pos.y() > r.bottom() or (pos.y() >= r.top() and pos.x() >= r.left())

    # ------------------------------------------------------------------ mouse and keys

    def _mouse_press(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        self._canvas.setFocus(Qt.FocusReason.MouseFocusReason)
        pos = event.position().toPoint()
        index = self._hit(pos)
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if index is not None and shift and self._anchor is not None:
            a, b = min(self._anchor, index), max(self._anchor, index) + 1
            self._span = (a, b)
            self._current = None
            self._press = None
            self._canvas.update()
            self.spanSelected.emit(a, b)
            return
        anchor = index if index is not None else self._nearest(pos)
        self._press = _Press(index, anchor, pos)

    def _drag_to(self, pos: QPoint) -> None:
        press = self._press
        if press is None or press.anchor is None:
            return
        cur = self._nearest(pos, forward=self._forward_of(press.anchor, pos))
        if cur is None:
            return
        if not press.dragging:
            moved = (pos - press.pos).manhattanLength() >= QApplication.startDragDistance()
            if cur != press.anchor or (press.index is None and moved):
                press.dragging = True
        if press.dragging:
            # dragging past the top or bottom edge scrolls the document along
            self.ensureVisible(pos.x(), pos.y(), 0, round(self._m.chip_h * 0.5))
            span = (min(press.anchor, cur), max(press.anchor, cur) + 1)
            if span != self._span:
                self._span = span
                self._current = None
                self._canvas.update()

    def _mouse_move(self, event: QMouseEvent) -> None:
        pos = event.position().toPoint()
        if self._press is not None:
            self._drag_to(pos)
        else:
            self._set_hover(self._hit(pos))

    def _mouse_release(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        press = self._press
        self._press = None
        if press is None:
            return
        pos = event.position().toPoint()
        self._press = press
        self._drag_to(pos)
        self._press = None
        if press.dragging and self._span is not None:
            a, b = self._span
            self._anchor = press.anchor
            self._current = None
            self._canvas.update()
            self.spanSelected.emit(a, b)
        elif press.index is not None:
            if self._hit(pos) == press.index:
                self._current = press.index
                self._anchor = press.index
                self._span = None
                self._canvas.update()
                self.tokenClicked.emit(press.index)
        else:
            self.clear_selection()
            self.selectionCleared.emit()

    def _set_hover(self, index: int | None) -> None:
        if index == self._hover:
            return
        old, self._hover = self._hover, index
        self._update_chips(old, index)

    def _key_press(self, event: QKeyEvent) -> bool:
        key = event.key()
        if key == Qt.Key.Key_Escape:
            self.clear_selection()
            self.selectionCleared.emit()
            return True
        if key in (Qt.Key.Key_Left, Qt.Key.Key_Right) and self._tokens:
            n = len(self._tokens)
            step = -1 if key == Qt.Key.Key_Left else 1
            if self._current is not None:
                new = self._current + step
            elif self._span is not None:
                new = self._span[0] - 1 if step < 0 else self._span[1]
            elif self._anchor is not None:
                new = self._anchor + step
            else:
                new = n - 1 if step < 0 else 0
            new = max(0, min(n - 1, new))
            self._current = new
            self._anchor = new
            self._span = None
            self._ensure_visible(new)
            self._canvas.update()
            self.tokenClicked.emit(new)
            return True
        return False

    def _show_tooltip(self, event) -> None:
        pos = event.pos()
        index = self._hit(pos)
        if index is None:
            QToolTip.hideText()
            event.ignore()
            return
        lines = self.tooltip_text(index).split("\n")
        head = html.escape(lines[0])
        rest = "<br>".join(html.escape(line) for line in lines[1:])
        body = (
            f"<div style='white-space:pre'><span style='font-size:large; font-weight:bold'>{head}</span>"
            f"<br>{rest}</div>"
        )
        QToolTip.showText(event.globalPos(), body, self._canvas, self._rects[index])

    # ------------------------------------------------------------------ painting

    def _visible_range(self, rect: QRect) -> tuple[int, int]:
        margin = self._m.line_gap + round(self._m.highlight_w * 2) + 2
        start = bisect_left(self._bottoms, rect.top() - margin)
        tops_limit = rect.bottom() + margin
        rects = self._rects
        # chips are in reading order: tops never decrease
        lo, hi = start, len(rects)
        while lo < hi:
            mid = (lo + hi) // 2
            if rects[mid].top() <= tops_limit:
                lo = mid + 1
            else:
                hi = mid
        stop = lo
        return start, stop

    def _paint(self, p: QPainter, exposed: QRect) -> None:
        t = self._theme
        m = self._m
        p.fillRect(exposed, t.window)
        if not self._rects:
            self._paint_placeholder(p)
            return
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        start, stop = self._visible_range(exposed)
        self._paint_roles(p, exposed)
        if self._span is not None:
            self._paint_span(p, self._span, start, stop)
        for i in range(start, stop):
            self._paint_chip(p, i)
        if self._hover is not None and start <= self._hover < stop and self._hover != self._current:
            r = QRectF(self._rects[self._hover]).adjusted(-1, -1, 1, 1)
            c = QColor(t.text)
            c.setAlpha(150)
            p.setPen(QPen(c, m.line_w))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(r, m.radius + 1, m.radius + 1)
        if self._current is not None and self._current < len(self._rects):
            w = m.highlight_w
            r = QRectF(self._rects[self._current]).adjusted(-w * 0.75, -w * 0.75, w * 0.75, w * 0.75)
            p.setPen(QPen(t.highlight, w))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(r, m.radius + w * 0.75, m.radius + w * 0.75)

    def _paint_placeholder(self, p: QPainter) -> None:
        font = QFont(self._m.font)
        font.setPointSizeF(font.pointSizeF() * 1.05)
        p.setFont(font)
        p.setPen(self._theme.muted)
        vw = self.viewport().width()
        width = min(vw - round(48 * self._zoom), round(QFontMetricsF(font).averageCharWidth() * 44))
        area = QRect((vw - width) // 2, self.verticalScrollBar().value(), width, self.viewport().height())
        p.drawText(area, int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), PLACEHOLDER)

    def _paint_roles(self, p: QPainter, exposed: QRect) -> None:
        m, t = self._m, self._theme
        rects = self._rects
        for start, stop, role in self._runs:
            if start >= len(rects):
                break
            label = self.role_label(start, stop)
            label_h = self._label_h_for(role)
            top = rects[start].top() - label_h
            bottom = self._bottoms[min(stop, len(rects)) - 1]
            if bottom < exposed.top() or top > exposed.bottom():
                continue
            color = t.role_colors.get(role, t.muted)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(color)
            bar = QRectF(m.margin, top + (label_h * 0.2 if label_h else 0), m.bar_w, bottom - top - (label_h * 0.2))
            p.drawRoundedRect(bar, m.bar_w / 2, m.bar_w / 2)
            if label_h:
                p.setFont(m.label_font)
                p.setPen(color)
                baseline = top + (label_h - m.label_fm.height()) / 2 + m.label_fm.ascent() - m.line_gap * 0.25
                p.drawText(QPointF(m.indent, baseline), label)

    def _paint_span(self, p: QPainter, span: tuple[int, int], first: int, last: int) -> None:
        m, t = self._m, self._theme
        a, b = max(span[0], first), min(span[1], last)
        if a >= b:
            return
        rects = self._rects
        dx = m.gap_x * 0.5 + max(1.0, m.gap_x * 0.25)
        dy = m.line_gap * 0.5 + 0.5
        shape = QPainterPath()
        shape.setFillRule(Qt.FillRule.WindingFill)
        i = a
        while i < b:
            top = rects[i].top()
            j = i
            while j + 1 < b and rects[j + 1].top() == top:
                j += 1
            band = QRectF(rects[i].left() - dx, top - dy, rects[j].right() + 1 - rects[i].left() + 2 * dx,
                          m.line_h + 2 * dy)
            piece = QPainterPath()
            piece.addRoundedRect(band, m.radius + dx, m.radius + dx)
            shape = shape.united(piece)
            i = j + 1
        edge = QColor(t.selection)
        edge.setAlpha(min(255, edge.alpha() * 2 + 40))
        p.setPen(QPen(edge, m.line_w))
        p.setBrush(t.selection)
        p.drawPath(shape)

    def _paint_chip(self, p: QPainter, i: int) -> None:
        m, t = self._m, self._theme
        tok = self._tokens[i]
        tt = self._texts(tok.id)  # type: ignore[misc]
        rect = self._rects[i]
        r = QRectF(rect)
        stats = tok.stats
        if self._attention is not None:  # the tint replaces the surprise colours
            surprise = self.attention_tint(i)
        else:
            surprise = surprise_color(stats.bits) if (stats is not None and self._by_surprise) else None
        markup = tok.kind == MARKUP and not tok.special
        tool_call = tok.kind == TOOL_CALL and not tok.special
        strip = False
        if tok.special:
            fill = t.special_fill
            text = mix(t.text, fill, 0.3)
            outline = QPen(t.special_outline, m.line_w, Qt.PenStyle.DashLine)
            strip = surprise is not None
        elif markup:
            fill = mix(t.window, t.panel, 0.35)
            text = mix(t.text, fill, 0.35)
            outline = QPen(t.special_outline, m.line_w)
            strip = surprise is not None
        else:
            fill = surprise if surprise is not None else t.panel
            text = text_on(fill) if surprise is not None else t.text
            # on a dark window the darkest chips would melt into it: a faint lighter rim
            outline = QPen(mix(fill, t.text, 0.22), m.line_w) if t.dark else None
            if tool_call:  # the call's name and arguments, as the template writes them: a rim of the tool colour
                outline = QPen(t.role_colors.get("tool", t.highlight), m.line_w * 2)
        inner = r.adjusted(0.5 * m.line_w, 0.5 * m.line_w, -0.5 * m.line_w, -0.5 * m.line_w) if outline else r
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(fill)
        p.drawRoundedRect(r, m.radius, m.radius)
        if strip:
            path = QPainterPath()
            path.addRoundedRect(r, m.radius, m.radius)
            p.save()
            p.setClipPath(path)
            p.fillRect(QRectF(r.left(), r.bottom() - m.strip_h, r.width(), m.strip_h), surprise)
            p.restore()
        if outline is not None:
            p.setPen(outline)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(inner, m.radius, m.radius)

        # text: marks muted, real text in full colour
        special = tok.special
        font, fm = (m.special_font, m.special_fm) if special else (m.font, m.fm)
        chip = self._chip_text(tt, special)
        mark = mix(text, fill, 0.5)
        x0 = r.left() + max(m.pad_x * 0.6, (r.width() - chip.width) / 2)
        cy = r.top() + (r.height() - (m.strip_h * 0.6 if strip else 0)) / 2
        baseline = cy + (fm.ascent() - fm.descent()) / 2
        p.setFont(font)
        clipped = chip.width > r.width() - m.pad_x
        if clipped:
            p.save()
            p.setClipRect(r.adjusted(m.pad_x * 0.5, 0, -m.pad_x * 0.5, 0))
        for piece, is_mark, dx in chip.pieces:
            p.setPen(mark if is_mark else text)
            p.drawText(QPointF(x0 + dx, baseline), piece)
        if clipped:
            p.restore()
        if self._show_ids:
            p.setFont(m.id_font)
            p.setPen(t.muted)
            label = str(tok.id)
            w = self._id_width(tok.id)
            p.drawText(QPointF(r.left() + (r.width() - w) / 2, r.bottom() + 1 * self._zoom + m.id_fm.ascent()), label)

"""Two models, one text: the compare view, word by word.

:class:`CompareView` shows what :mod:`lmdesk.engine.compare` computed for a
text scored by two (or more) models; it computes nothing of its own beyond
layout, colours and the sums that say which tokens cover a word:

* **Whole-text figures**, one row per model, bits per character first (the
  fair comparison across tokenizers: every model reads the same characters,
  not the same tokens), then bits per word, total bits, predicted tokens,
  bits per token and perplexity; under them one sentence: "B needs 0.42 bits
  per character fewer than A (−18 %)".
* **The text as aligned words** (:func:`lmdesk.engine.compare.split_words`:
  a word with the white space before it), in a wrapping flow of chips painted
  in one widget (never a widget per word, so thousands of words stay quick).
  Each chip shows the word, white space visible as in the document (``·``
  space, ``↵`` new line, ``→`` tab), over two bands: model A's bits on top,
  model B's below, each in the surprise colour of the document's chips.
  A band's colour is the **word's bits** (the sum over the tokens that cover
  it), the same scale the document uses for a token's bits, so a word that is
  one token has the colour its chip has in the document; **Per character**
  divides by the word's characters instead (its white space included), so a
  long word and a short one compare. The tooltip gives the exact bits.
* **Difference**: each chip in one colour for B − A, on a diverging
  blue–orange scale (told apart by colour-blind eyes; in greyscale the
  distance from the neutral middle still shows how big the difference is):
  blue where B was less surprised than A, orange where more, neutral at 0,
  placed by log2(1 + |B − A|) up to 8 bits, like the surprise scale.
* **A word clicked** shows its details beside the chips: both models' bits,
  per character and their difference, and each model's tokens that cover it,
  a token that straddles words with the share of its characters that lies in
  this one and its bits there (the engine splits a token's bits over its
  characters: see :mod:`lmdesk.engine.compare`).
* **Most different words**: where B − A is largest and smallest; a click
  selects the word. A word on which a model's first token lies (a tokenizer
  with no start token: nothing predicted that token, so it carries no bits)
  is left out of it, and its details say why: its difference says more about
  the tokenizers' start tokens than about the models.
* **A token holding only some of a character's bytes** (byte-level
  vocabularies cut "中" or "🙂" into pieces) is listed with the character and
  "(some of its bytes)".

With three models or more the figures table lists them all and two pickers
choose which is A and which is B in the chips (the first two to begin with).

The view asks the window for work through signals (``loadRequested``,
``closeRequested``, ``compareRequested``); the window's worker loads and
scores, and hands the engine's results to :meth:`CompareView.set_result`.
"""

from __future__ import annotations

import html
import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QPoint, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QKeyEvent,
    QLinearGradient,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QToolTip,
    QVBoxLayout,
    QWidget,
)

from ..engine.compare import Alignment, Figures, Scored, size_label
from ..engine.token_text import TokenText, TokenTextTable
from .theme import (
    SCALE_MARKS,
    Theme,
    apply_widget_palette,
    bits_at_position,
    mix,
    surprise_color,
    surprise_position,
    system_theme,
    text_on,
)

__all__ = [
    "CompareView",
    "CoveringToken",
    "covering_tokens",
    "difference_color",
    "difference_position",
    "reading",
    "most_different",
    "DIFF_MAX_BITS",
    "DIFF_MARKS",
    "FIGURE_COLUMNS",
    "OTHER_FOLDER",
]

BASE_PT = 10.5  # the labels' and the table's text at zoom 1
CHIP_PT = 11.0  # the chips' text at zoom 1, as the document's
MIN_ZOOM, MAX_ZOOM = 0.4, 5.0
OTHER_FOLDER = "Other folder…"
FIGURE_COLUMNS = ("", "model", "bits per\ncharacter", "bits per\nword", "total\nbits", "tokens", "bits per\ntoken",
                  "perplexity\nper token")
FIGURE_TIPS = (
    "A and B: the two models the chips show",
    "the model (and its size, when its folder tells it)",
    "total bits ÷ the text's characters: the fair comparison across tokenizers",
    "total bits ÷ the text's words (a word with the white space before it)",
    "−log2 p summed over the model's tokens (the first token has no prediction)",
    "the model's own predicted tokens: tokenizers cut the same text differently",
    "total bits ÷ tokens",
    "2 ^ (bits per token): per token, so it depends on the tokenizer",
)
DETAILS_CHARS = 34  # the details panel's least width, in average characters
TOP_DIFFERENT = 4  # words in each half of the "most different" line
PLACEHOLDER = "Load a second model to compare: the document's text is scored by both."

# the difference scale: B − A bits, saturating at ±DIFF_MAX_BITS, placed by log2(1 + |d|)
DIFF_MAX_BITS = 8.0
DIFF_MARKS = (-8, -4, -2, -1, 0, 1, 2, 4, 8)
_DIFF_LOG2 = math.log2(1.0 + DIFF_MAX_BITS)
# blue (B less surprised) … neutral … orange (B more surprised): ColorBrewer's RdBu blues and PuOr
# oranges, a pair that deuteranopes and protanopes tell apart; on a dark window the middle is dark
_DIFF_LIGHT = ((-1.0, (33, 102, 172)), (-0.5, (146, 197, 222)), (0.0, (240, 240, 240)),
               (0.5, (253, 184, 99)), (1.0, (179, 88, 6)))
_DIFF_DARK = ((-1.0, (146, 197, 222)), (-0.5, (67, 147, 195)), (0.0, (64, 64, 64)),
              (0.5, (224, 130, 20)), (1.0, (253, 184, 99)))


def difference_position(diff_bits: float) -> float:
    """Where B − A = ``diff_bits`` sits on the difference scale, −1 … 1
    (negative: B was less surprised)."""
    if not math.isfinite(diff_bits) or diff_bits == 0.0:
        return 0.0
    return math.copysign(min(1.0, math.log2(1.0 + abs(diff_bits)) / _DIFF_LOG2), diff_bits)


def difference_color(diff_bits: float, theme: Theme) -> QColor:
    """The difference scale's colour for B − A = ``diff_bits``: blue where B was
    less surprised, orange where more, neutral at 0 (dark on a dark window)."""
    t = difference_position(diff_bits)
    stops = _DIFF_DARK if theme.dark else _DIFF_LIGHT
    for (t0, c0), (t1, c1) in zip(stops, stops[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return QColor(*(round(a + (b - a) * f) for a, b in zip(c0, c1)))
    return QColor(*stops[-1][1])


def _minus(text: str) -> str:
    """A typographic minus sign for a number's '-'."""
    return text.replace("-", "\u2212")


def _signed(value: float, digits: int = 2) -> str:
    """``+1.25`` / ``−0.40`` / ``0.00``."""
    if round(value, digits) == 0:
        return f"{0:.{digits}f}"
    return _minus(f"{value:+.{digits}f}")


def model_label(f: Figures) -> str:
    """The model's name, with its size when known: "SmolLM2 (135M)"."""
    size = size_label(f.parameters)
    return f"{f.model} ({size})" if size else f.model


def reading(a: Figures, b: Figures) -> str:
    """One sentence comparing the two models' bits per character:
    "B needs 0.42 bits per character fewer than A (−18 %)"."""
    diff = b.bits_per_char - a.bits_per_char
    if round(diff, 2) == 0:
        return f"{b.model} and {a.model} need the same bits per character ({a.bits_per_char:.2f})."
    share = f" ({_minus(f'{diff / a.bits_per_char * 100:+.0f}')} %)" if a.bits_per_char > 0 else ""
    how = "fewer" if diff < 0 else "more"
    return f"{b.model} needs {abs(diff):.2f} bits per character {how} than {a.model}{share}."


def most_different(diff: np.ndarray, count: int = TOP_DIFFERENT) -> tuple[list[int], list[int]]:
    """The words where B − A is largest (B more surprised; positive only) and
    smallest (B less surprised; negative only), most different first."""
    order = np.argsort(diff, kind="stable")
    less = [int(i) for i in order[:count] if diff[i] < 0]
    more = [int(i) for i in order[::-1][:count] if diff[i] > 0]
    return more, less


@lru_cache(maxsize=8192)
def _chip_text_of(text: str) -> TokenText:
    """``text`` as a chip shows it, white space made visible (the document's own marks)."""
    return TokenTextTable.text_of(text)


@dataclass(frozen=True)
class CoveringToken:
    """One of a model's tokens that covers (part of) a word."""

    index: int  # the token's position in the model's tokens
    text: str  # the characters it covers, white space visible ("" for none)
    bits: float | None  # its bits; None for the first token (nothing predicted it)
    share: float  # the part of its bits on this word: the share of its characters here (1 for all)
    chars_here: int  # its characters inside the word
    chars: int  # its characters in all
    partial: bool = False  # it holds only some of a character's bytes (another token has the rest)

    @property
    def straddles(self) -> bool:
        return self.chars_here < self.chars

    @property
    def bits_here(self) -> float | None:
        return None if self.bits is None else self.bits * self.share


def covering_tokens(alignment: Alignment, scored: Scored, model: int, word: int) -> list[CoveringToken]:
    """Model ``model``'s tokens that cover word ``word``, in order, each with the
    share of its characters inside the word (the engine spreads a token's bits
    over its characters, a whole character one share; a token covering no
    character is counted on the character at its place, as the engine does)."""
    w = alignment.words[word]
    n = len(alignment.text)
    spans = alignment.token_spans[model]
    out = []
    for i, ((a, b), bits) in enumerate(zip(spans, scored.bits)):
        if b > a:
            here = min(b, w.end) - max(a, w.start)
            if here > 0:
                # spans overlap only where tokens share a character's bytes
                partial = (i > 0 and spans[i - 1][1] > a) or (i + 1 < len(spans) and spans[i + 1][0] < b
                                                               and spans[i + 1][1] > spans[i + 1][0])
                out.append(CoveringToken(i, _chip_text_of(alignment.text[a:b]).display, bits, here / (b - a),
                                         here, b - a, partial))
        elif n and w.start <= min(a, n - 1) < w.end:
            out.append(CoveringToken(i, "", bits, 1.0, 0, 0))
    return out


@dataclass(frozen=True)
class _Metrics:
    """Every size of the chips' layout, in pixels, for one zoom."""

    font: QFont
    fm: QFontMetricsF
    text_h: int  # the word's row
    band_h: int  # each model's band under it
    chip_h: int
    pad_x: float
    min_w: int
    gap_x: int
    line_gap: int
    para_gap: int  # extra space after an empty line
    margin: int
    radius: float
    line_w: float
    highlight_w: float


@dataclass(frozen=True)
class _ChipText:
    width: float
    pieces: tuple[tuple[str, bool, float], ...]  # (text, is a mark, x offset)


class _Canvas(QWidget):
    """The painted surface of the word chips; the logic lives in :class:`_WordFlow`."""

    def __init__(self, flow: "_WordFlow") -> None:
        super().__init__()
        self._flow = flow
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 (Qt name)
        painter = QPainter(self)
        try:
            self._flow._paint(painter, event.rect())
        finally:
            painter.end()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            index = self._flow.word_at(event.position().toPoint())
            if index is not None:
                self._flow.clicked(index)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if not self._flow._key_press(event):
            super().keyPressEvent(event)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            self._flow._show_tooltip(event)
            return True
        return super().event(event)


class _WordFlow(QScrollArea):
    """The words as chips in a wrapping flow, two bands (or one difference
    colour) each; laid out again only when the words, the width or the zoom change."""

    def __init__(self, view: "CompareView") -> None:
        super().__init__(view)
        self._view = view
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setWidgetResizable(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self._canvas = _Canvas(self)
        self.setWidget(self._canvas)
        self.setFocusProxy(self._canvas)
        self._texts: list[TokenText] = []
        self._breaks: list[int] = []  # new lines in each word's white space
        self._rects: list[QRect] = []
        self._bottoms: list[int] = []
        self._content_h = 0
        self._width = 0
        self._cache: dict[str, _ChipText] = {}
        self.m = self._make_metrics(1.0)

    def set_words(self, words: Sequence[str]) -> None:
        self._texts = [_chip_text_of(w) for w in words]
        self._breaks = [w[: len(w) - len(w.lstrip())].count("\n") for w in words]
        self._relayout()
        self._canvas.update()

    def set_zoom(self, zoom: float) -> None:
        self.m = self._make_metrics(zoom)
        self._cache.clear()
        self._relayout()
        self._canvas.update()

    def refresh(self) -> None:
        self._canvas.update()

    def refresh_chips(self, indices: Sequence[int]) -> None:
        """Repaint only these chips (and their selection outline)."""
        pad = round(self.m.highlight_w * 2) + 2
        for i in indices:
            if 0 <= i < len(self._rects):
                self._canvas.update(self._rects[i].adjusted(-pad, -pad, pad, pad))

    def canvas(self) -> QWidget:
        return self._canvas

    def chip_rect(self, index: int) -> QRect:
        return QRect(self._rects[index]) if 0 <= index < len(self._rects) else QRect()

    def word_at(self, pos: QPoint) -> int | None:
        i = bisect_left(self._bottoms, pos.y())
        while i < len(self._rects) and self._rects[i].top() <= pos.y():
            if self._rects[i].contains(pos):
                return i
            i += 1
        return None

    def clicked(self, index: int) -> None:
        self._view.select_word(index)

    def ensure_visible(self, index: int) -> None:
        if 0 <= index < len(self._rects):
            r = self._rects[index]
            self.ensureVisible(r.center().x(), r.center().y(), r.width() // 2 + 8, r.height())

    # -- layout ------------------------------------------------------------------------------

    @staticmethod
    def _make_metrics(z: float) -> _Metrics:
        font = QFont(QApplication.font())
        font.setPointSizeF(CHIP_PT * z)
        fm = QFontMetricsF(font)
        text_h = round(fm.height() + 4 * z)
        band_h = max(round(4.0 * z) + 2, round(fm.height() * 0.42))  # taller than the corners' radius
        return _Metrics(
            font=font, fm=fm, text_h=text_h, band_h=band_h, chip_h=text_h + 2 * band_h,
            pad_x=5.0 * z, min_w=round(fm.height() * 0.9), gap_x=max(2, round(4 * z)),
            line_gap=max(3, round(7 * z)), para_gap=round(fm.height() * 0.5), margin=round(10 * z),
            radius=4.0 * z, line_w=max(1.0, z), highlight_w=max(2.0, 2.0 * z),
        )

    def _chip_text(self, tt: TokenText) -> _ChipText:
        found = self._cache.get(tt.display)
        if found is not None:
            return found
        fm = self.m.fm
        pieces, x, pos = [], 0.0, 0
        cuts = []
        for a, b in tt.marks:
            if a > pos:
                cuts.append((pos, a, False))
            cuts.append((a, b, True))
            pos = b
        if pos < len(tt.display):
            cuts.append((pos, len(tt.display), False))
        for a, b, is_mark in cuts:
            piece = tt.display[a:b]
            pieces.append((piece, is_mark, x))
            x += fm.horizontalAdvance(piece)
        found = _ChipText(x, tuple(pieces))
        self._cache[tt.display] = found
        return found

    def _relayout(self) -> None:
        m = self.m
        width = self._width or self.viewport().width()
        right = max(width - m.margin, m.margin + m.min_w)
        x, y = m.margin, m.margin
        rects, bottoms = [], []
        for i, tt in enumerate(self._texts):
            w = min(max(m.min_w, math.ceil(self._chip_text(tt).width + 2 * m.pad_x)), right - m.margin)
            if i and (self._breaks[i] or (x + w > right and x > m.margin)):
                y += m.chip_h + m.line_gap + (m.para_gap if self._breaks[i] > 1 else 0)
                x = m.margin
            rects.append(QRect(x, y, w, m.chip_h))
            bottoms.append(y + m.chip_h)
            x += w + m.gap_x
        self._rects, self._bottoms = rects, bottoms
        self._content_h = (bottoms[-1] + m.margin) if bottoms else 0
        height = max(self._content_h, self.viewport().height())
        self._canvas.resize(max(1, width), height)

    def resizeEvent(self, event) -> None:  # noqa: N802 (the viewport's resize)
        super().resizeEvent(event)
        if self.viewport().width() != self._width:
            self._width = self.viewport().width()
            self._relayout()
            self._canvas.update()
        else:
            self._canvas.resize(self._canvas.width(), max(self._content_h, self.viewport().height()))

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(640, 360)

    # -- painting ----------------------------------------------------------------------------

    def _visible_range(self, rect: QRect) -> tuple[int, int]:
        pad = self.m.line_gap + 4
        start = bisect_left(self._bottoms, rect.top() - pad)
        stop = start
        while stop < len(self._rects) and self._rects[stop].top() <= rect.bottom() + pad:
            stop += 1
        return start, stop

    def _paint(self, p: QPainter, exposed: QRect) -> None:
        view = self._view
        t = view.theme
        p.fillRect(exposed, t.window)
        if not self._rects:
            p.setFont(self.m.font)
            p.setPen(t.muted)
            area = QRect(self.m.margin, self.m.margin, max(1, self.viewport().width() - 2 * self.m.margin),
                         self.viewport().height())
            p.drawText(area, int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
                                 | Qt.TextFlag.TextWordWrap), view.message)
            return
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        p.setFont(self.m.font)
        start, stop = self._visible_range(exposed)
        for i in range(start, stop):
            self._paint_chip(p, i, view.band_colors(i))
        current = view.selected_word()
        if current is not None and current < len(self._rects):
            w = self.m.highlight_w
            r = QRectF(self._rects[current]).adjusted(-w * 0.75, -w * 0.75, w * 0.75, w * 0.75)
            p.setPen(QPen(t.highlight, w))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(r, self.m.radius + w * 0.75, self.m.radius + w * 0.75)

    def _paint_chip(self, p: QPainter, i: int, colors: list[QColor]) -> None:
        """One chip, without clipping or saving the painter's state (thousands are painted at a time):
        in Both mode the word on the panel colour, B's band along the rounded bottom, A's band over
        B's rounded top corners."""
        m, t = self.m, self._view.theme
        r = QRectF(self._rects[i])
        p.setPen(Qt.PenStyle.NoPen)
        if len(colors) == 1:  # the difference: the whole chip in one colour
            fill = colors[0]
            p.setBrush(fill)
            p.drawRoundedRect(r, m.radius, m.radius)
            text_rect = r
        else:
            fill = t.panel
            p.setBrush(fill)
            p.drawRoundedRect(r, m.radius, m.radius)
            bands = r.adjusted(0, m.text_h, 0, 0)
            p.setBrush(colors[1])
            p.drawRoundedRect(bands, m.radius, m.radius)
            p.fillRect(QRectF(r.left(), bands.top(), r.width(), m.band_h), colors[0])
            text_rect = QRectF(r.left(), r.top(), r.width(), m.text_h)
        p.setPen(QPen(mix(fill, t.text, 0.25), m.line_w))  # a rim, so chips do not melt into the window
        p.setBrush(Qt.BrushStyle.NoBrush)
        half = m.line_w / 2
        p.drawRoundedRect(r.adjusted(half, half, -half, -half), m.radius, m.radius)
        ink = text_on(fill) if len(colors) == 1 else t.text
        mark = mix(ink, fill, 0.5)
        chip = self._chip_text(self._texts[i])
        x0 = text_rect.left() + max(m.pad_x * 0.6, (text_rect.width() - chip.width) / 2)
        baseline = text_rect.center().y() + (m.fm.ascent() - m.fm.descent()) / 2
        clipped = chip.width > text_rect.width() - m.pad_x  # a word wider than the view
        if clipped:
            p.save()
            p.setClipRect(text_rect.adjusted(m.pad_x * 0.5, 0, -m.pad_x * 0.5, 0))
        for piece, is_mark, dx in chip.pieces:
            p.setPen(mark if is_mark else ink)
            p.drawText(QPointF(x0 + dx, baseline), piece)
        if clipped:
            p.restore()

    # -- keys and tooltips -------------------------------------------------------------------

    def _key_press(self, event: QKeyEvent) -> bool:
        if event.key() not in (Qt.Key.Key_Left, Qt.Key.Key_Right) or not self._rects:
            return False
        current = self._view.selected_word()
        step = -1 if event.key() == Qt.Key.Key_Left else 1
        new = (0 if step > 0 else len(self._rects) - 1) if current is None else current + step
        self._view.select_word(max(0, min(len(self._rects) - 1, new)))
        return True

    def _show_tooltip(self, event) -> None:
        index = self.word_at(event.pos())
        if index is None:
            QToolTip.hideText()
            event.ignore()
            return
        head, *rest = self._view.word_tooltip(index).split("\n")
        body = (f"<div style='white-space:pre'><span style='font-size:large; font-weight:bold'>"
                f"{html.escape(head)}</span><br>{'<br>'.join(html.escape(line) for line in rest)}</div>")
        QToolTip.showText(event.globalPos(), body, self._canvas, self._rects[index])


class _Legend(QWidget):
    """The chips' colour scale: the surprise scale (Both) or the difference scale."""

    def __init__(self, view: "CompareView") -> None:
        super().__init__(view)
        self._view = view
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def _font(self) -> QFont:
        f = QFont(QApplication.font())
        f.setPointSizeF(BASE_PT * 0.9 * self._view.zoom)
        return f

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(480, round(QFontMetricsF(self._font()).height() * 2.6))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return QSize(200, self.sizeHint().height())

    def label(self) -> str:
        """What the scale shows (drawn before it, shortened when the room is short)."""
        a, b = self._view.pair_names()
        per = " per character" if self._view.per_character() else ""
        if self._view.mode() == "difference":
            return f"bits{per}: {b} − {a} (blue: {b} less surprised, orange: more)"
        return f"bits{per}: top band {a}, bottom band {b}"

    def refresh(self) -> None:
        """Repaint, and say what the colours mean in the tooltip."""
        a, b = self._view.pair_names()
        diff = self._view.mode() == "difference"
        self.setToolTip(self.label() + "\n" + (
            f"Blue: {b} was less surprised by the word than {a}; orange: more; grey: as surprised.\n"
            "Placed by log2(1 + |difference|): 8 bits and more take the last colour." if diff else
            "Each band is coloured by how surprised that model was by the word: −log2 p summed over the "
            "tokens that cover it, in bits.\n0 bits: sure of it. 1 bit: a coin flip. 10 bits: about 1 in 1,000."))
        self.update()

    def paintEvent(self, _event) -> None:  # noqa: N802
        view, t = self._view, self._view.theme
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = self._font()
        p.setFont(font)
        fm = QFontMetricsF(font)
        lh = fm.height()
        diff = view.mode() == "difference"
        label = fm.elidedText(self.label(), Qt.TextElideMode.ElideRight, max(lh, self.width() * 0.55))
        x0 = fm.horizontalAdvance(label) + lh
        p.setPen(t.text)
        p.drawText(QPointF(0, lh * 0.35 + fm.ascent()), label)
        width = max(40.0, self.width() - x0 - lh * 1.2)
        bar = QRectF(x0, lh * 0.35, width, lh * 0.8)
        grad = QLinearGradient(bar.left(), 0, bar.right(), 0)
        for k in range(65):
            f = k / 64
            if diff:
                grad.setColorAt(f, difference_color(self._diff_at(2 * f - 1), t))
            else:
                grad.setColorAt(f, surprise_color(bits_at_position(f)))
        p.fillRect(bar, grad)
        p.setPen(QPen(t.muted, 1))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(bar)
        marks = DIFF_MARKS if diff else SCALE_MARKS
        p.setPen(t.text)
        labels = []  # (x of the tick, left, width, text), ends and 0 first: they are never left out
        for value in sorted(marks, key=lambda v: (v not in (marks[0], marks[-1], 0), abs(v))):
            f = (difference_position(value) + 1) / 2 if diff else surprise_position(value)
            x = bar.left() + f * width
            if diff:
                text = _minus(f"{value:+g}") if value else "0"
                text = ("≤" if value == marks[0] else "≥" if value == marks[-1] else "") + text
            else:
                text = f"{value:g}" + ("+" if value == marks[-1] else "")
            tw = fm.horizontalAdvance(text)
            left = max(0.0, min(x - tw / 2, self.width() - tw))
            gap = fm.averageCharWidth()
            if all(left + tw + gap <= other or left >= other + w + gap for _, other, w, _ in labels):
                labels.append((x, left, tw, text))  # a label that would touch another is left out
        for x, left, _, text in labels:
            p.drawLine(QPointF(x, bar.bottom()), QPointF(x, bar.bottom() + lh * 0.2))
            p.drawText(QPointF(left, bar.bottom() + lh * 0.2 + fm.ascent()), text)
        p.end()

    @staticmethod
    def _diff_at(position: float) -> float:
        """The inverse of :func:`difference_position`."""
        return math.copysign((1.0 + DIFF_MAX_BITS) ** abs(position) - 1.0, position)


class CompareView(QWidget):
    """Two models' surprise on one text: figures, aligned word chips, a
    difference view and each word's tokens (see the module documentation)."""

    loadRequested = Signal(str)  # noqa: N815 (Qt naming): a model folder for the second model
    closeRequested = Signal()  # noqa: N815: close the second model
    compareRequested = Signal()  # noqa: N815: score the text with both models again
    wordSelected = Signal(int)  # noqa: N815: a word was clicked (its index in alignment.words)

    def __init__(self, parent: QWidget | None = None, theme: Theme | None = None) -> None:
        super().__init__(parent)
        self.theme = theme or system_theme()
        self.zoom = 1.0
        self.message = PLACEHOLDER
        self._alignment: Alignment | None = None
        self._figures: list[Figures] = []
        self._scored: list[Scored] = []
        self._pair = (0, 1)
        self._selected: int | None = None
        self._colors: dict[int, list[QColor]] = {}  # each chip's colours, as far as painted
        self._mode = "both"
        self._per_char = False
        self._busy = False
        self._second: str | None = None
        self._first = ""
        self._build()
        self._apply_fonts()
        apply_widget_palette(self, self.theme)
        self.clear(PLACEHOLDER)

    # -- building ----------------------------------------------------------------------------

    def _build(self) -> None:
        v = QVBoxLayout(self)
        v.setContentsMargins(4, 4, 4, 4)
        top = QHBoxLayout()
        self.models_label = QLabel("Second model:")
        self.combo = QComboBox()
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.combo.setToolTip("The second model: a model folder on this computer, or another folder")
        self.load_button = QPushButton("Load")
        self.load_button.setToolTip("Load this model beside the first and score the document's text with both")
        self.close_button = QPushButton("Close")
        self.close_button.setToolTip("Close the second model and free its memory")
        self.again_button = QPushButton("Score again")
        self.again_button.setToolTip("Score the document's current text with both models")
        self.status = QLabel()
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the view
        for w in (self.models_label, self.combo, self.load_button, self.close_button, self.again_button):
            top.addWidget(w)
        top.addWidget(self.status, 1)
        v.addLayout(top)

        self.pickers = QWidget()
        ph = QHBoxLayout(self.pickers)
        ph.setContentsMargins(0, 0, 0, 0)
        self.pick_a, self.pick_b = QComboBox(), QComboBox()
        for name, combo in (("A", self.pick_a), ("B", self.pick_b)):
            ph.addWidget(QLabel(f"{name}:"))
            ph.addWidget(combo)
            combo.activated.connect(self._picked)
        ph.addStretch(1)
        v.addWidget(self.pickers)

        self.table = QTableWidget(0, len(FIGURE_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(FIGURE_COLUMNS))
        for j, tip in enumerate(FIGURE_TIPS):
            self.table.horizontalHeaderItem(j).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # the model column elides
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        v.addWidget(self.table)
        self.reading_label = QLabel()
        self.reading_label.setWordWrap(True)
        self.reading_label.setTextFormat(Qt.TextFormat.PlainText)
        v.addWidget(self.reading_label)

        self.mode_bar = QWidget()
        bar = QHBoxLayout(self.mode_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        self.both_button = QPushButton("Both")
        self.diff_button = QPushButton("Difference")
        self.both_button.setToolTip("Each word with two bands: model A's bits on top, model B's below")
        self.diff_button.setToolTip("Each word in one colour: B's bits minus A's (blue: B less surprised)")
        self.mode_group = QButtonGroup(self)
        for k, b in enumerate((self.both_button, self.diff_button)):
            b.setCheckable(True)
            self.mode_group.addButton(b, k)
            bar.addWidget(b)
        self.both_button.setChecked(True)
        self.mode_group.idClicked.connect(lambda k: self.set_mode(("both", "difference")[k]))
        self.per_char_box = QCheckBox("Per character")
        self.per_char_box.setToolTip("Colour each word by its bits divided by its characters (its white space "
                                     "included), so long and short words compare")
        self.per_char_box.toggled.connect(self.set_per_character)
        bar.addWidget(self.per_char_box)
        self.legend = _Legend(self)
        bar.addWidget(self.legend, 1)
        v.addWidget(self.mode_bar)

        self.different_label = QLabel()
        self.different_label.setWordWrap(True)
        self.different_label.setTextFormat(Qt.TextFormat.RichText)
        self.different_label.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                                     | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
        self.different_label.linkActivated.connect(self._link)
        v.addWidget(self.different_label)

        self.split = QSplitter(Qt.Orientation.Horizontal)
        self.flow = _WordFlow(self)
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setContentsMargins(8, 4, 8, 4)
        self.details_scroll = QScrollArea()
        self.details_scroll.setWidgetResizable(True)
        self.details_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.details_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.details_scroll.setWidget(self.details)
        self.split.addWidget(self.flow)
        self.split.addWidget(self.details_scroll)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 0)
        self.split.setChildrenCollapsible(False)
        v.addWidget(self.split, 1)

        self.load_button.clicked.connect(self._load_clicked)
        self.close_button.clicked.connect(self.closeRequested)
        self.again_button.clicked.connect(self.compareRequested)
        self._update_controls()

    # -- the models ---------------------------------------------------------------------------

    def set_models(self, first: str, second: str | None, choices: list[tuple[str, str]]) -> None:
        """The first model's name, the second's (None: none loaded) and the model
        folders the combo box offers, as (label, folder); "Other folder…" comes last."""
        self._first, self._second = first, second
        keep = self.combo.currentData()
        self.combo.clear()
        for label, folder in choices:
            self.combo.addItem(label, str(folder))
            self.combo.setItemData(self.combo.count() - 1, str(folder), Qt.ItemDataRole.ToolTipRole)
        self.combo.addItem(OTHER_FOLDER, None)
        at = self.combo.findData(keep) if keep is not None else -1
        self.combo.setCurrentIndex(at if at >= 0 else 0)
        self.models_label.setToolTip(f"A: {first}\nB: {second}" if second else f"A: {first}\nB: none loaded yet")
        self._update_controls()

    def _load_clicked(self) -> None:
        folder = self.combo.currentData()
        if folder is None:  # "Other folder…"
            folder = QFileDialog.getExistingDirectory(self, "A model folder to compare with", "")
            if not folder:
                return
            at = self.combo.findData(folder)
            if at < 0:
                self.combo.insertItem(self.combo.count() - 1, Path(folder).name or folder, folder)
                at = self.combo.count() - 2
            self.combo.setCurrentIndex(at)
        self.loadRequested.emit(str(folder))

    def set_busy(self, busy: bool, message: str = "") -> None:
        """While the worker loads or scores: no new work can be started, the
        message shows; the chips stay readable and scrollable."""
        self._busy = bool(busy)
        self.status.setText(message)
        self._update_controls()

    def _update_controls(self) -> None:
        idle = not self._busy
        self.combo.setEnabled(idle)
        self.load_button.setEnabled(idle and self.combo.count() > 0)
        self.close_button.setEnabled(idle and self._second is not None)
        self.again_button.setEnabled(idle and self._second is not None)

    # -- what is shown -------------------------------------------------------------------------

    def clear(self, message: str) -> None:
        """Nothing to compare yet: ``message`` says why and what to do."""
        self.message = message
        self._alignment, self._figures, self._scored = None, [], []
        self._selected = None
        self._colors.clear()
        self.table.setRowCount(0)
        self.table.setVisible(False)
        self.pickers.setVisible(False)
        self.reading_label.setText("")
        self.different_label.setText("")
        self.details.setText("")
        self.details_scroll.setVisible(False)
        self.mode_bar.setVisible(False)
        self.flow.set_words([])

    def set_result(self, alignment: Alignment, figures: list[Figures], scored: list[Scored]) -> None:
        """Show a comparison: the engine's alignment of the text, each model's
        whole-text figures and its scored tokens (all in the same model order)."""
        if not (len(alignment.models) == len(figures) == len(scored)) or not scored:
            raise ValueError("the alignment, the figures and the scored texts must be of the same models")
        keep = self._selected if self._alignment is not None and self._alignment.text == alignment.text else None
        self._alignment, self._figures, self._scored = alignment, list(figures), list(scored)
        n = len(figures)
        a, b = self._pair
        self._pair = (a, b) if max(a, b) < n and (a != b or n == 1) else (0, min(1, n - 1))
        names = [model_label(f) for f in figures]
        for combo in (self.pick_a, self.pick_b):
            combo.clear()
            combo.addItems(names)
        self.pick_a.setCurrentIndex(self._pair[0])
        self.pick_b.setCurrentIndex(self._pair[1])
        self.pickers.setVisible(n > 2)
        self.table.setVisible(True)
        self.mode_bar.setVisible(True)
        self.details_scroll.setVisible(True)
        self._selected = keep
        self.flow.set_words([w.text for w in alignment.words])
        self._fill_table()
        self._pair_changed()

    def set_pair(self, a: int, b: int) -> None:
        """Which models the chips show as A (top band) and B (bottom band)."""
        n = len(self._figures)
        if not (0 <= a < n and 0 <= b < n):
            raise ValueError(f"no such models: {a}, {b}")
        self._pair = (a, b)
        self.pick_a.setCurrentIndex(a)
        self.pick_b.setCurrentIndex(b)
        self._fill_table()
        self._pair_changed()

    def _picked(self, _index: int) -> None:
        self.set_pair(self.pick_a.currentIndex(), self.pick_b.currentIndex())

    def _pair_changed(self) -> None:
        a, b = self._pair
        fa, fb = self._figures[a], self._figures[b]
        chars, words = fa.characters, fa.words
        self.reading_label.setText(f"{reading(fa, fb)}  The text: {chars:,} characters, {words:,} words; "
                                   "bits per character is the fair comparison across tokenizers.")
        self._fill_different()
        self._fill_details()
        self.legend.refresh()
        self._colours_changed()

    def _fill_table(self) -> None:
        a, b = self._pair
        self.table.setRowCount(len(self._figures))
        bold = QFont(self.table.font())
        bold.setBold(True)
        for i, f in enumerate(self._figures):
            tag = "A" if i == a else "B" if i == b else ""
            values = (tag, model_label(f), f"{f.bits_per_char:.3f}", f"{f.bits_per_word:.2f}", f"{f.total_bits:,.1f}",
                      f"{f.tokens:,}", f"{f.bits_per_token:.3f}", f"{f.perplexity:,.2f}")
            for j, text in enumerate(values):
                item = QTableWidgetItem(text)
                if j >= 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if j in (0, 2):
                    item.setFont(bold)
                if j == 1:
                    item.setToolTip(text)
                if j == 4:
                    item.setToolTip(f"{f.total_bits:.4f} bits")
                self.table.setItem(i, j, item)
        self._fit_table()

    def _fit_table(self) -> None:
        """The table as tall as its rows: it never scrolls."""
        t = self.table
        rows = sum(t.rowHeight(i) for i in range(t.rowCount()))
        t.setFixedHeight(t.horizontalHeader().sizeHint().height() + rows + 2 * t.frameWidth())

    def _fill_different(self) -> None:
        if self._alignment is None:
            return
        a, b = self.pair_names()
        link = self.theme.highlight.name()  # the palette's link blue is unreadable on a dark window
        diff = self._difference().copy()
        unfair = sorted(self._unpredicted(self._pair[0]) | self._unpredicted(self._pair[1]))
        diff[unfair] = 0.0  # a token nothing predicted carries no bits: no difference to show there
        more, less = most_different(diff)

        def links(indices: list[int]) -> str:
            if not indices:
                return "none"
            return ", ".join(f"<a href='word:{i}' style='color:{link}'>‘{html.escape(self._word_label(i))}’</a> "
                             f"{_signed(float(self._difference()[i]), 1)}" for i in indices)

        left_out = (f" · left out: {', '.join(f'‘{html.escape(self._word_label(i))}’' for i in unfair)} "
                    "(a first token, with no prediction)") if unfair else ""
        self.different_label.setText(f"<b>Most different</b> ({html.escape(b)} − {html.escape(a)}, bits) · "
                                     f"{html.escape(b)} more surprised: {links(more)} · "
                                     f"{html.escape(b)} less surprised: {links(less)}{left_out}")

    def _unpredicted(self, model: int) -> set[int]:
        """The words on which one of the model's tokens lies that nothing
        predicted (its first token, when the tokenizer adds no start token):
        that token carries no bits, so the word's bits there say nothing."""
        al = self._alignment
        if al is None:
            return set()
        words = [w.end for w in al.words]
        out = set()
        for (start, end), bits in zip(al.token_spans[model], self._scored[model].bits):
            if bits is None and end > start:
                out.update(range(bisect_left(words, start + 1), bisect_left(words, end) + 1))
        return {i for i in out if i < len(al.words)}

    def _link(self, href: str) -> None:
        if href.startswith("word:"):
            self.select_word(int(href[5:]))

    def _word_label(self, index: int) -> str:
        """The word without the white space before it (all of it when it is only white space)."""
        text = self._alignment.words[index].text  # type: ignore[union-attr]
        return text.lstrip() or _chip_text_of(text).display

    # -- selection and details ----------------------------------------------------------------

    def select_word(self, index: int | None) -> None:
        """Select word ``index`` (None: nothing) and show its details."""
        if self._alignment is None or index is None or not 0 <= index < len(self._alignment.words):
            index = None
        old, self._selected = self._selected, index
        self._fill_details()
        self.flow.refresh_chips([i for i in (old, index) if i is not None])
        if index is not None:
            self.flow.ensure_visible(index)
            self.wordSelected.emit(index)

    def _fill_details(self) -> None:
        al = self._alignment
        i = self._selected
        if al is None:
            return
        if i is None:
            self.details.setText("<i>Click a word to see both models' bits on it and the tokens that "
                                 "cover it.</i>")
            return
        w = al.words[i]
        a, b = self._pair
        chars = len(w.text)
        rows = []
        for m in (a, b):
            bits = float(al.bits[i, m])
            rows.append(f"<b>{html.escape(self._figures[m].model)}</b>: {bits:.2f} bits "
                        f"({bits / chars:.2f} per character)")
        diff = float(al.bits[i, b] - al.bits[i, a])
        parts = [f"<p style='font-size:large'><b>‘{html.escape(_chip_text_of(w.text).display)}’</b></p>",
                 f"<p>characters {w.start:,}–{w.end - 1:,} · word {i + 1:,} of {len(al.words):,}</p>",
                 f"<p>{'<br>'.join(rows)}</p>",
                 f"<p><b>{html.escape(self._figures[b].model)} − {html.escape(self._figures[a].model)}: "
                 f"{_signed(diff)} bits</b> ({self._diff_words(diff)})</p>"]
        for m in (a, b):
            if i in self._unpredicted(m):
                parts.append(f"<p><i>{html.escape(self._figures[m].model)}'s first token lies here and nothing "
                             "predicted it: it carries no bits, so this word's difference says more about the "
                             "tokenizers' start tokens than about the models.</i></p>")
        for m in (a, b):
            parts.append(f"<p><b>{html.escape(self._figures[m].model)}</b>'s tokens on it:<br>"
                         + "<br>".join(self._token_line(t) for t in covering_tokens(al, self._scored[m], m, i))
                         + "</p>")
        self.details.setText("".join(parts))

    def _diff_words(self, diff: float) -> str:
        a, b = self.pair_names()
        if round(diff, 2) == 0:
            return "as surprised"
        return f"{b} {'less' if diff < 0 else 'more'} surprised than {a}"

    @staticmethod
    def _token_line(t: CoveringToken) -> str:
        bits = "no prediction (the first token)" if t.bits is None else f"{t.bits:.2f} bits"
        if not t.chars:
            what = "covers no character (a start token)" if t.bits is None else \
                "covers no character; its bits are counted here"
        elif t.straddles:
            here = "—" if t.bits_here is None else f"{t.bits_here:.2f} bits"
            what = f"straddles words: {t.chars_here} of its {t.chars} characters here → {here}"
        else:
            what = "all of it here"
        if not t.chars:
            return f"#{t.index} {bits} · {what}"
        piece = " (some of its bytes)" if t.partial else ""
        return f"#{t.index} ‘{html.escape(t.text)}’{piece} {bits} · {what}"

    def selected_word(self) -> int | None:
        return self._selected

    def details_text(self) -> str:
        """The details panel as plain text (for tests and copying)."""
        doc = QTextDocument()
        doc.setHtml(self.details.text())
        return doc.toPlainText()

    # -- modes and colours ---------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        """"both": two bands per word; "difference": one colour, B − A."""
        if mode not in ("both", "difference"):
            raise ValueError(f"no such mode: {mode}")
        self._mode = mode
        (self.both_button if mode == "both" else self.diff_button).setChecked(True)
        self.legend.refresh()
        self._colours_changed()

    def mode(self) -> str:
        return self._mode

    def set_per_character(self, on: bool) -> None:
        """Colour by the word's bits (off) or its bits per character (on)."""
        self._per_char = bool(on)
        if self.per_char_box.isChecked() != self._per_char:
            self.per_char_box.setChecked(self._per_char)
        self.legend.refresh()
        self._colours_changed()

    def per_character(self) -> bool:
        return self._per_char

    def pair(self) -> tuple[int, int]:
        return self._pair

    def pair_names(self) -> tuple[str, str]:
        """The names of models A and B ("A", "B" before there is a result)."""
        if not self._figures:
            return "A", "B"
        return self._figures[self._pair[0]].model, self._figures[self._pair[1]].model

    def _difference(self) -> np.ndarray:
        a, b = self._pair
        return self._alignment.difference(a, b)  # type: ignore[union-attr]

    def _value(self, bits: float, index: int) -> float:
        return bits / len(self._alignment.words[index].text) if self._per_char else bits  # type: ignore[union-attr]

    def band_colors(self, index: int) -> list[QColor]:
        """Chip ``index``'s colours: [A's, B's] in Both mode, [B − A's] in Difference."""
        found = self._colors.get(index)
        if found is not None:
            return found
        al = self._alignment
        if al is None:
            return []
        a, b = self._pair
        if self._mode == "difference":
            found = [difference_color(self._value(float(al.bits[index, b] - al.bits[index, a]), index), self.theme)]
        else:
            found = [surprise_color(self._value(float(al.bits[index, m]), index)) for m in (a, b)]
        self._colors[index] = found
        return found

    def _colours_changed(self) -> None:
        """The mode, the pair, the theme or the words changed: the chips' colours are worked out again."""
        self._colors.clear()
        self.flow.refresh()

    def word_tooltip(self, index: int) -> str:
        """What hovering word ``index`` tells: the word, each model's exact bits, the difference."""
        al = self._alignment
        if al is None or not 0 <= index < len(al.words):
            return ""
        w = al.words[index]
        a, b = self._pair
        n = len(w.text)
        lines = [_chip_text_of(w.text).display, f"characters {w.start:,}–{w.end - 1:,} ({n} characters)"]
        for m in (a, b):
            bits = float(al.bits[index, m])
            lines.append(f"{self._figures[m].model}: {bits:.4f} bits ({bits / n:.4f} per character)")
        diff = float(al.bits[index, b] - al.bits[index, a])
        lines.append(f"{self._figures[b].model} − {self._figures[a].model}: {_signed(diff, 4)} bits "
                     f"({self._diff_words(diff)})")
        return "\n".join(lines)

    def figures_text(self) -> list[list[str]]:
        """The figures table's cells as shown (for tests and copying)."""
        return [[self.table.item(i, j).text() for j in range(self.table.columnCount())]
                for i in range(self.table.rowCount())]

    def most_different_text(self) -> str:
        """The "most different" line as plain text."""
        doc = QTextDocument()
        doc.setHtml(self.different_label.text())
        return doc.toPlainText()

    def chip_rect(self, index: int) -> QRect:
        """Word ``index``'s chip in the canvas's coordinates (null: no such chip)."""
        return self.flow.chip_rect(index)

    def canvas(self) -> QWidget:
        return self.flow.canvas()

    def word_at(self, pos: QPoint) -> int | None:
        return self.flow.word_at(pos)

    # -- looks ---------------------------------------------------------------------------------

    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        apply_widget_palette(self, theme)
        for area in (self.flow, self.details_scroll):
            pal = area.viewport().palette()
            pal.setColor(area.viewport().backgroundRole(), theme.window)
            area.viewport().setPalette(pal)
        self._fill_different()
        self.legend.refresh()
        self._colours_changed()

    def set_zoom(self, factor: float) -> None:
        self.zoom = max(MIN_ZOOM, min(MAX_ZOOM, float(factor)))
        self._apply_fonts()
        self.flow.set_zoom(self.zoom)
        self.legend.updateGeometry()
        self.legend.refresh()

    def _apply_fonts(self) -> None:
        f = QFont(QApplication.font())
        f.setPointSizeF(BASE_PT * self.zoom)
        for w in (self.models_label, self.combo, self.load_button, self.close_button, self.again_button,
                  self.status, self.reading_label, self.both_button, self.diff_button, self.per_char_box,
                  self.different_label, self.details, self.pick_a, self.pick_b, self.pickers):
            w.setFont(f)
        self.table.setFont(f)
        self.table.horizontalHeader().setFont(f)
        self.table.verticalHeader().setDefaultSectionSize(int(QFontMetricsF(f).height() * 1.4))
        self.details_scroll.setMinimumWidth(round(QFontMetricsF(f).averageCharWidth() * DETAILS_CHARS))
        if self._figures:  # the rows' own fonts (the bold ones) and heights follow
            self.table.setRowCount(0)
            self._fill_table()
        self._fit_table()

    def font_point_size(self) -> float:
        """The chips' text size, in points (it follows the zoom)."""
        return self.flow.m.font.pointSizeF()

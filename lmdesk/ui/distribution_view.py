"""The next-token distribution: one horizontal bar per candidate token.

The widget only draws what it is given: (token id, display string,
probability) rows, most likely first, optionally the same tokens'
probabilities after the sampling settings, the token that actually came
next, and a footer line. It does no model arithmetic beyond formatting.

Layout of the chart (one pyqtgraph ViewBox, y grows downwards, one row per
candidate)::

    ·Paris  ████████████████████████████  95.1 %
    ·the    █  1.2 %
    ...
    … rank 7,399:  ·Caf  0.0012 %  ◀ actual

The x axis is probability on a fixed scale (1.0 = "certain" is always at
the same place), so a confident and an unsure prediction look different.
The token labels live in a gutter left of x = 0 and the percentages right
of each bar; the gutter and the room on the right are kept in pixels, so the
text never overlaps the bars at any widget size or zoom.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEasingCurve, QPointF, QRectF, Qt, QVariantAnimation, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPen
from PySide6.QtWidgets import (
    QGraphicsRectItem,
    QLabel,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from .theme import Theme, apply_widget_palette, mix, system_theme

EMPTY_TEXT = "No prediction yet: the document is empty."
MARKER = "◀ actual"
ANIMATION_MS = 180
LABEL_PT = 11.0  # chart labels at zoom 1; readable from the back of a classroom at 1.5
MIN_LABEL_PT = 6.5  # when many rows share a small widget the labels shrink, down to this
MAIN_HEIGHT = 0.62  # bar thickness, in rows
BACK_HEIGHT = 0.84  # the faint bar behind (the model's own when the sampled one is in front)
SEP = "  "  # between token and percentage in labels()


def format_percent(p: float) -> str:
    """``95.1 %``, ``3.4 %``, ``0.03 %``, ``<0.01 %``, ``0 %``."""
    pct = float(p) * 100.0
    if not pct > 0.0:
        return "0 %"
    if pct >= 1.0:
        return f"{pct:.1f} %"
    if pct >= 0.01:
        return f"{pct:.2f} %"
    return "<0.01 %"


def format_percent_fine(p: float) -> str:
    """Like :func:`format_percent`, but two significant digits for the very unlikely."""
    pct = float(p) * 100.0
    if pct >= 0.01 or not pct > 0.0:
        return format_percent(p)
    if pct < 1e-6:
        return "<0.000001 %"
    digits = -math.floor(math.log10(pct)) + 1
    return f"{pct:.{digits}f} %"


def _blend(color: QColor, background: QColor, alpha: float) -> QColor:
    """``color`` at ``alpha`` over an opaque ``background``, as an opaque colour."""
    return mix(background, color, alpha)


def _with_alpha(color: QColor, alpha: int) -> QColor:
    c = QColor(color)
    c.setAlpha(alpha)
    return c


class _RowHit(QGraphicsRectItem):
    """The clickable, hoverable area of one row (label, bar and percentage)."""

    def __init__(self) -> None:
        super().__init__()
        self.setPen(QPen(Qt.PenStyle.NoPen))
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setZValue(-10)
        self._base = QBrush(Qt.BrushStyle.NoBrush)
        self._hover = QBrush(Qt.BrushStyle.NoBrush)
        self._hovered = False

    def set_brushes(self, base: QBrush, hover: QBrush) -> None:
        self._base, self._hover = base, hover
        self.setBrush(self._hover if self._hovered else self._base)

    def hoverEvent(self, event) -> None:  # noqa: N802 (pyqtgraph's hover protocol)
        hovered = not event.isExit()
        if hovered != self._hovered:
            self._hovered = hovered
            self.setBrush(self._hover if hovered else self._base)


def _text_item() -> pg.TextItem:
    item = pg.TextItem()
    item.textItem.document().setDocumentMargin(0)
    item.setZValue(10)
    return item


class DistributionView(QWidget):
    """Horizontal bars of the top-k next-token candidates, most likely at the top."""

    candidateClicked = Signal(int)

    def __init__(self, parent: QWidget | None = None, theme: Theme | None = None) -> None:
        super().__init__(parent)
        self._theme = theme or system_theme()
        self._zoom = 1.0
        self._animated = True
        self._footer = ""
        self._title = ""
        self._ids: list[int] = []
        self._displays: list[str] = []
        self._probs = np.zeros(0)
        self._sampled: np.ndarray | None = None
        self._highlight: int | None = None
        self._extra: tuple[int, str, float, int] | None = None
        self._target_main = np.zeros(0)
        self._target_back = np.zeros(0)
        self._from_main = np.zeros(0)
        self._from_back = np.zeros(0)
        self._shown_main = np.zeros(0)
        self._shown_back = np.zeros(0)
        self._label_pt = LABEL_PT
        self._scale = 1.0  # pixels per probability unit
        self._pad = 8.0  # pixels

        self._title_label = QLabel()
        self._title_label.setWordWrap(True)
        self._title_label.setTextFormat(Qt.TextFormat.PlainText)
        self._legend_label = QLabel()
        self._legend_label.setTextFormat(Qt.TextFormat.RichText)
        self._legend_label.setWordWrap(True)
        self._footer_label = QLabel()
        self._footer_label.setWordWrap(True)
        self._footer_label.setTextFormat(Qt.TextFormat.PlainText)
        self._footer_label.hide()

        self.placeholder = QLabel(EMPTY_TEXT)
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)

        self.plot_widget = pg.PlotWidget()
        self.plot_widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.plot_widget.setMinimumHeight(60)
        item = self.plot_widget.getPlotItem()
        item.hideAxis("left")
        item.hideAxis("bottom")
        item.hideButtons()
        item.setMenuEnabled(False)
        item.layout.setContentsMargins(0, 4, 0, 4)
        self.view_box: pg.ViewBox = item.getViewBox()
        self.view_box.setMouseEnabled(False, False)
        self.view_box.disableAutoRange()
        self.view_box.invertY(True)
        self.view_box.setDefaultPadding(0)

        self._guides = pg.PlotCurveItem()
        self._guides.setZValue(-5)
        self._back_bars = pg.BarGraphItem(x0=0.0, y=np.zeros(0), height=BACK_HEIGHT, width=np.zeros(0))
        self._main_bars = pg.BarGraphItem(x0=0.0, y=np.zeros(0), height=MAIN_HEIGHT, width=np.zeros(0), pen=None)
        for it in (self._guides, self._back_bars, self._main_bars):
            self.view_box.addItem(it, ignoreBounds=True)
        self._name_items: list[pg.TextItem] = []
        self._pct_items: list[pg.TextItem] = []
        self._hit_items: list[_RowHit] = []
        self._extra_item = _text_item()
        self.view_box.addItem(self._extra_item, ignoreBounds=True)
        self._extra_item.hide()

        self._stack = QStackedWidget()
        self._stack.addWidget(self.placeholder)
        self._stack.addWidget(self.plot_widget)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(4)
        layout.addWidget(self._title_label)
        layout.addWidget(self._legend_label)
        layout.addWidget(self._stack, 1)
        layout.addWidget(self._footer_label)

        self._anim = QVariantAnimation(self)
        self._anim.setDuration(ANIMATION_MS)
        self._anim.setStartValue(0.0)
        self._anim.setEndValue(1.0)
        self._anim.setEasingCurve(QEasingCurve.Type.OutCubic)
        self._anim.valueChanged.connect(self._on_anim_value)
        self._anim.finished.connect(self._on_anim_finished)

        self.view_box.sigResized.connect(lambda *_: self._relayout())
        self.plot_widget.scene().sigMouseClicked.connect(self._on_scene_click)

        self.setAutoFillBackground(True)
        self.set_theme(self._theme)
        self._show_empty()

    # ------------------------------------------------------------------ API

    def set_distribution(
        self,
        entries: Sequence[tuple[int, str, float]],
        sampled: Mapping[int, float] | None = None,
        highlight: int | None = None,
        extra: tuple[int, str, float, int] | None = None,
        title: str = "",
    ) -> None:
        """Show ``entries`` (most likely first); see the module docstring."""
        entries = list(entries)
        self._title = title
        self._title_label.setText(title)
        self._title_label.setVisible(bool(title))
        if not entries:
            self._anim.stop()
            self._ids, self._displays = [], []
            self._probs = np.zeros(0)
            self._sampled, self._highlight, self._extra = None, None, None
            for name in ("_target_main", "_target_back", "_from_main", "_from_back", "_shown_main", "_shown_back"):
                setattr(self, name, np.zeros(0))
            self._show_empty()
            return

        old_main = dict(zip(self._ids, self._shown_main.tolist()))
        old_back = dict(zip(self._ids, self._shown_back.tolist()))
        self._ids = [int(e[0]) for e in entries]
        self._displays = [str(e[1]) for e in entries]
        self._probs = np.array([float(e[2]) for e in entries], dtype=np.float64)
        if sampled is not None:
            self._sampled = np.array([float(sampled.get(i, 0.0)) for i in self._ids], dtype=np.float64)
        else:
            self._sampled = None
        self._highlight = None if highlight is None else int(highlight)
        self._extra = None
        if extra is not None and int(extra[0]) not in self._ids:
            self._extra = (int(extra[0]), str(extra[1]), float(extra[2]), int(extra[3]))

        self._target_main = self._probs.copy() if self._sampled is None else self._sampled.copy()
        self._target_back = self._probs.copy()
        self._from_main = np.array([old_main.get(i, 0.0) for i in self._ids], dtype=np.float64)
        self._from_back = np.array([old_back.get(i, 0.0) for i in self._ids], dtype=np.float64)

        self._anim.stop()
        changed = not (
            np.allclose(self._from_main, self._target_main) and np.allclose(self._from_back, self._target_back)
        )
        animate = self._animated and changed
        if animate:
            self._shown_main, self._shown_back = self._from_main.copy(), self._from_back.copy()
        else:
            self._shown_main, self._shown_back = self._target_main.copy(), self._target_back.copy()

        self._stack.setCurrentWidget(self.plot_widget)
        self._legend_label.show()
        self._update_legend()
        self._rebuild_rows()
        self._relayout()
        if animate:
            self._anim.start()

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        apply_widget_palette(self, theme)
        self.plot_widget.setBackground(theme.panel)
        self._title_label.setStyleSheet(f"color: {theme.text.name()};")
        self._legend_label.setStyleSheet(f"color: {theme.muted.name()};")
        self._footer_label.setStyleSheet(f"color: {theme.muted.name()};")
        self.placeholder.setStyleSheet(
            f"color: {theme.muted.name()}; background: {theme.panel.name()}; border-radius: 6px; padding: 12px;"
        )
        self._apply_fonts()
        self._update_legend()
        self._rebuild_rows()
        self._relayout()

    def set_zoom(self, factor: float) -> None:
        self._zoom = max(0.25, float(factor))
        self._apply_fonts()
        self._relayout()

    def set_animated(self, on: bool) -> None:
        self._animated = bool(on)
        if not on and self._anim.state() == QVariantAnimation.State.Running:
            self._anim.stop()
            self._on_anim_finished()

    def bar_values(self) -> list[float]:
        """The main bars' displayed lengths (the target values once the animation settled)."""
        return [float(v) for v in self._shown_main]

    def back_values(self) -> list[float]:
        """The faint bars' displayed lengths (the model's own, drawn when ``sampled`` was given)."""
        return [float(v) for v in self._shown_back] if self._sampled is not None else []

    def labels(self) -> list[str]:
        """The label strings, top to bottom (the extra line last)."""
        out = []
        for row, tid in enumerate(self._ids):
            text = f"{self._displays[row]}{SEP}{format_percent(self._target_main[row])}"
            if tid == self._highlight:
                text += f"{SEP}{MARKER}"
            out.append(text)
        if self._extra is not None:
            out.append(self._extra_plain())
        return out

    def ids(self) -> list[int]:
        """The token ids of the rows, top to bottom (the extra token last)."""
        return self._ids + ([self._extra[0]] if self._extra is not None else [])

    def entropy_text(self) -> str:
        return self._footer

    def set_footer(self, text: str) -> None:
        self._footer = text
        self._footer_label.setText(text)
        self._footer_label.setVisible(bool(text))

    def title(self) -> str:
        return self._title

    def is_empty(self) -> bool:
        return not self._ids

    def label_font(self) -> QFont:
        """The font of the chart's labels (its size follows zoom; it shrinks when rows are crowded)."""
        return self._font(bold=False)

    def click_bar(self, row: int) -> None:
        """Emit ``candidateClicked`` with the id of ``row`` (the extra line is row ``len(entries)``)."""
        ids = self.ids()
        if not 0 <= row < len(ids):
            raise IndexError(f"row {row} of {len(ids)}")
        self.candidateClicked.emit(ids[row])

    def row_at(self, scene_pos: QPointF) -> int | None:
        """The row under a scene position, or None."""
        if not self._ids or not self.view_box.sceneBoundingRect().contains(scene_pos):
            return None
        y = self.view_box.mapSceneToView(scene_pos).y()
        row = math.floor(y + 0.5)
        return row if 0 <= row < len(self.ids()) else None

    # ------------------------------------------------------------ internals

    def _show_empty(self) -> None:
        self._stack.setCurrentWidget(self.placeholder)
        self._legend_label.hide()
        self._rebuild_rows()

    def _font(self, bold: bool = False, scale: float = 1.0, pt: float | None = None) -> QFont:
        f = QFont(self.font())
        f.setPointSizeF((self._label_pt if pt is None else pt) * scale)
        f.setBold(bold)
        return f

    def _apply_fonts(self) -> None:
        pt = LABEL_PT * self._zoom
        title = QFont(self.font())
        title.setPointSizeF(pt * 1.05)
        title.setBold(True)
        self._title_label.setFont(title)
        small = QFont(self.font())
        small.setPointSizeF(pt * 0.85)
        self._legend_label.setFont(small)
        self._footer_label.setFont(small)
        big = QFont(self.font())
        big.setPointSizeF(pt)
        self.placeholder.setFont(big)

    def _update_legend(self) -> None:
        t = self._theme
        bg = t.window
        items = []
        if self._sampled is not None:
            front = _blend(_with_alpha(t.bar_sampled, 255), bg, 0.9)
            back = _blend(t.bar, bg, 0.4 if t.dark else 0.3)
            items += [(front, "after sampling settings"), (back, "model's own")]
        else:
            items.append((t.bar, "model's own probability"))
        if self._highlight is not None or self._extra is not None:
            items.append((t.highlight, "actual next token"))
        # wrap only between items, never inside one
        html = "&nbsp;&nbsp;&nbsp; ".join(
            f'<span style="color:{c.name()}">■</span>&nbsp;{escape(text).replace(" ", "&nbsp;")}' for c, text in items
        )
        self._legend_plain = "   ".join(f"■ {text}" for _, text in items)
        self._legend_label.setText(html)

    def legend_text(self) -> str:
        """The legend as plain text (what the bar colours mean)."""
        return self._legend_plain

    def _extra_parts(self, room: float | None = None) -> tuple[tuple[str, str, str, str], float]:
        """The extra line's parts (lead, token, probability, marker), the
        longest form that fits ``room`` pixels, and its width: "… rank 3,015:",
        then "rank 3,015", then "#3,015", then the token shortened."""
        assert self._extra is not None
        _, display, prob, rank = self._extra
        fm, bold = QFontMetricsF(self._font()), QFontMetricsF(self._font(bold=True))
        gap = fm.horizontalAdvance("\u00a0\u00a0")
        forms = [(f"… rank {rank:,}:", MARKER), (f"rank {rank:,}", MARKER), (f"#{rank:,}", MARKER), (f"#{rank:,}", "◀")]

        def width(lead: str, token: str, marker: str) -> float:
            return (fm.horizontalAdvance(lead) + bold.horizontalAdvance(token)
                    + fm.horizontalAdvance(format_percent_fine(prob)) + fm.horizontalAdvance(marker) + 3 * gap)

        for lead, marker in forms:
            w = width(lead, display, marker)
            if room is None or w <= room:
                return (lead, display, format_percent_fine(prob), marker), w
        lead, marker = forms[-1]
        rest = max(0.0, room - (width(lead, "", marker)))
        token = bold.elidedText(display, Qt.TextElideMode.ElideRight, rest)
        return (lead, token, format_percent_fine(prob), marker), width(lead, token, marker)

    def _extra_html(self, lead: str, token: str, percent: str, marker: str) -> str:
        t = self._theme
        return (f'<span style="color:{t.muted.name()}">{escape(lead)}</span>&nbsp;&nbsp;'
                f'<span style="color:{t.highlight.name()}"><b>{escape(token)}</b>&nbsp;&nbsp;'
                f"{escape(percent)}&nbsp;&nbsp;{escape(marker)}</span>")

    def extra_text_width(self) -> float:
        """How wide the extra line is drawn, in pixels (for tests), or 0."""
        if self._extra is None or not self._extra_item.isVisible():
            return 0.0
        return float(self._extra_item.textItem.document().idealWidth())

    def _extra_plain(self) -> str:
        assert self._extra is not None
        _, display, prob, rank = self._extra
        return f"… rank {rank:,}: {display}{SEP}{format_percent_fine(prob)}{SEP}{MARKER}"

    def prepare_rows(self, n: int) -> None:
        """Make the items of ``n`` rows now (while nothing else waits), not at the first
        distribution shown: making 16 rows took 20 ms of that first drawing, which came
        on top of everything else at the end of the first document read."""
        self._ensure_rows(n)
        self._fonts_to_items()
        self._rebuild_rows()  # rows beyond the distribution shown stay hidden

    def _ensure_rows(self, n: int) -> None:
        while len(self._name_items) < n:
            name, pct, hit = _text_item(), _text_item(), _RowHit()
            name.setAnchor((1, 0.5))
            pct.setAnchor((0, 0.5))
            for it in (name, pct, hit):
                self.view_box.addItem(it, ignoreBounds=True)
            self._name_items.append(name)
            self._pct_items.append(pct)
            self._hit_items.append(hit)

    def _rebuild_rows(self) -> None:
        """Texts, colours, tooltips of the rows (not their positions)."""
        t = self._theme
        n = len(self._ids)
        rows = n + (1 if self._extra is not None else 0)
        self._ensure_rows(rows)
        zebra = QBrush(_with_alpha(t.text, 14 if t.dark else 10))
        hover = QBrush(_with_alpha(t.highlight, 40))
        none = QBrush(Qt.BrushStyle.NoBrush)
        for row in range(len(self._name_items)):
            name, pct, hit = self._name_items[row], self._pct_items[row], self._hit_items[row]
            if row >= rows:
                name.hide()
                pct.hide()
                hit.hide()
                continue
            hit.show()
            hit.set_brushes(zebra if row % 2 else none, hover)
            if row >= n:  # the extra row: one text spanning the row, no bar
                name.hide()
                pct.hide()
                hit.setToolTip(self._tooltip(*self._extra[:3], rank=self._extra[3]))
                continue
            tid = self._ids[row]
            actual = tid == self._highlight
            color = t.highlight if actual else t.text
            name.show()
            pct.show()
            name.setText(self._displays[row], color=color)
            pct_text = format_percent(self._target_main[row]) + (f"{SEP}{MARKER}" if actual else "")
            pct.setText(pct_text, color=color)
            sampled = None if self._sampled is None else float(self._sampled[row])
            hit.setToolTip(self._tooltip(tid, self._displays[row], float(self._probs[row]), sampled=sampled))
        if self._extra is not None:
            self._extra_item.setHtml(self._extra_html(*self._extra_parts()[0]))
            self._extra_item.show()
        else:
            self._extra_item.hide()

        main_color = QColor(t.bar) if self._sampled is None else _with_alpha(t.bar_sampled, 235)
        brushes = [QBrush(t.highlight if tid == self._highlight else main_color) for tid in self._ids]
        self._main_bars.setOpts(brushes=brushes, pen=None)
        self._back_bars.setOpts(
            brush=QBrush(_with_alpha(t.bar, 95 if t.dark else 60)),
            pen=pg.mkPen(_with_alpha(t.bar, 200), width=1.2),
        )
        self._back_bars.setVisible(self._sampled is not None and n > 0)
        self._guide_pen_color = _with_alpha(t.muted, 110)
        self._fonts_to_items()

    def _tooltip(self, tid: int, display: str, prob: float, sampled: float | None = None,
                 rank: int | None = None) -> str:
        lines = [f"{display}", f"token id {tid:,}"]
        if rank is not None:
            lines.append(f"rank {rank:,}")
        lines.append(f"model's own: {format_percent_fine(prob)}  (p = {prob:.6g})")
        if sampled is not None:
            lines.append(f"after sampling settings: {format_percent_fine(sampled)}")
        lines.append("click to see what follows it")
        return "\n".join(lines)

    def _fonts_to_items(self) -> None:
        plain, bold = self._font(), self._font(bold=True)
        # a font set again lays its text out again: 0.5 ms an item, 31 items at every new
        # distribution while the model writes, for fonts that change only with zoom or size
        for row, (name, pct) in enumerate(zip(self._name_items, self._pct_items)):
            actual = row < len(self._ids) and self._ids[row] == self._highlight
            for item in (name, pct):
                if item.textItem.font() != (bold if actual else plain):
                    item.setFont(bold if actual else plain)
        if self._extra_item.textItem.font() != plain:
            self._extra_item.setFont(plain)

    def _relayout(self) -> None:
        """Fit fonts to the rows, size the label gutter and place everything in view coordinates."""
        n = len(self._ids)
        rows = n + (1 if self._extra is not None else 0)
        self._ensure_rows(rows)  # a resize can arrive between new ids and their rows
        rect = self.view_box.boundingRect()
        width, height = max(rect.width(), 40.0), max(rect.height(), 40.0)
        y_top, y_bottom = -0.55, max(rows, 1) - 0.45

        # label size: as zoom asks, unless the rows are too thin for it
        wanted = LABEL_PT * self._zoom
        probe = QFontMetricsF(self._font(pt=10.0))
        px_per_pt = probe.height() / 10.0
        row_px = height / (y_bottom - y_top)
        pt = max(MIN_LABEL_PT, min(wanted, row_px * 0.8 / px_per_pt))
        if abs(pt - self._label_pt) > 0.01:
            self._label_pt = pt
            self._fonts_to_items()
        if not n:
            return

        fm, fm_bold = QFontMetricsF(self._font()), QFontMetricsF(self._font(bold=True))
        pad = max(4.0, fm.averageCharWidth() * 0.9)
        self._pad = pad
        widest = max(
            (fm_bold if tid == self._highlight else fm).horizontalAdvance(d)
            for tid, d in zip(self._ids, self._displays)
        )
        gutter = min(max(widest, fm.horizontalAdvance("MMMM")), 0.38 * width)
        # Pixels for probability 1: as many as leave room for "100.0 %" after a full bar, so the
        # scale stays the same from one distribution to the next; fewer only when the
        # actual token's "◀ actual" after its long bar needs more room.
        room = width - gutter - 3.5 * pad  # for bars and the texts after them
        bars = room - fm_bold.horizontalAdvance("100.0 %")
        if self._highlight in self._ids:
            row = self._ids.index(self._highlight)
            p = max(float(self._target_main[row]), float(self._target_back[row]) if self._sampled is not None else 0.0)
            text = fm_bold.horizontalAdvance(f"{format_percent(self._target_main[row])}{SEP}{MARKER}")
            if p > 0:
                bars = min(bars, (room - text) / p)
        bars = max(30.0, bars)
        self._scale = bars
        x_left = -(gutter + 2 * pad) / bars
        x_right = x_left + (width / bars)
        self.view_box.setRange(xRange=(x_left, x_right), yRange=(y_top, y_bottom), padding=0)

        for row in range(n):
            name = self._name_items[row]
            actual = self._ids[row] == self._highlight
            elided = (fm_bold if actual else fm).elidedText(self._displays[row], Qt.TextElideMode.ElideRight, gutter)
            name.setText(elided)
            name.setPos(-pad / bars, row)
        for row in range(rows):
            self._hit_items[row].setRect(QRectF(x_left, row - 0.5, x_right - x_left, 1.0))
        if self._extra is not None:
            # the longest form of "… rank 3,015: ·Caf 0.0012 % ◀ actual" the width has room for
            margin = 2 * self._extra_item.textItem.document().documentMargin()
            parts, _ = self._extra_parts(room=width - 2 * pad - margin)
            self._extra_item.setHtml(self._extra_html(*parts))
            self._extra_item.setAnchor((0, 0.5))
            self._extra_item.setPos(x_left + pad / bars, n)

        # guides: x = 0 (solid), 50 % and 100 % (dotted); a dashed line above the extra row
        xs, ys = [], []
        for x in (0.0, 0.5, 1.0):
            xs += [x, x]
            ys += [-0.5, n - 0.5]
        if self._extra is not None:
            xs += [x_left + pad / bars, x_right - pad / bars]
            ys += [n - 0.5, n - 0.5]
        self._guides.setData(
            np.array(xs), np.array(ys), connect="pairs",
            pen=pg.mkPen(self._guide_pen_color, width=1, style=Qt.PenStyle.DotLine),
        )
        self._apply_frame()

    def _apply_frame(self) -> None:
        """Bar lengths and percentage positions for the current animation frame."""
        n = len(self._ids)
        if not n:
            self._main_bars.setOpts(y=np.zeros(0), width=np.zeros(0))
            self._back_bars.setOpts(y=np.zeros(0), width=np.zeros(0))
            return
        stub = 2.0 / self._scale  # a nonzero probability stays visible as a 2-pixel sliver
        y = np.arange(n, dtype=np.float64)
        main = np.where(self._target_main > 0, np.maximum(self._shown_main, stub), self._shown_main)
        back = np.where(self._target_back > 0, np.maximum(self._shown_back, stub), self._shown_back)
        self._main_bars.setOpts(y=y, width=main)
        self._back_bars.setOpts(y=y, width=back)
        ends = np.maximum(main, back) if self._sampled is not None else main
        gap = 0.6 * self._pad / self._scale
        for row in range(n):
            self._pct_items[row].setPos(float(ends[row]) + gap, row)

    def _on_anim_value(self, value) -> None:
        f = float(value)
        if len(self._from_main) != len(self._target_main):
            return
        self._shown_main = self._from_main + (self._target_main - self._from_main) * f
        self._shown_back = self._from_back + (self._target_back - self._from_back) * f
        self._apply_frame()

    def _on_anim_finished(self) -> None:
        self._shown_main = self._target_main.copy()
        self._shown_back = self._target_back.copy()
        self._apply_frame()

    def _on_scene_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or event.double():
            return
        row = self.row_at(event.scenePos())
        if row is not None:
            event.accept()
            self.candidateClicked.emit(self.ids()[row])

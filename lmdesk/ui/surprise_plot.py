"""Surprise along the document: bits per token, one point per token.

x is the token's index in the document, y its surprise in bits
(−log2 of the probability the model gave it). Points are coloured with the
theme's surprise scale; a thin line joins them and a thicker line shows the
mean over a sliding window of tokens, so a rise in surprise over a passage
stands out from single surprising tokens.

The widget renders what it is given (a list of bits, ``None`` where a token
has no prediction, e.g. the first one); its only arithmetic is the summary
line and the sliding mean. Updates replace the data arrays of long-lived
items, so documents of thousands of tokens stay quick: the points are one
scatter item per colour level (each with one brush), so a new token
re-sets only its own level's points — one item with a brush per point spent
49 ms a token at 8,000 tokens re-building them all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from lmdesk.engine.stats import SpanSummary, summarize

from .theme import (
    SCALE_MARKS, Theme, apply_widget_palette, bits_at_position, mix, surprise_color, surprise_positions, system_theme,
)

EMPTY_TEXT = "Surprise appears here once the model has predicted a token."
AVERAGE_WINDOW = 16  # tokens in the sliding mean (more for long documents: about 1/150 of them)
LABEL_PT = 10.5  # text at zoom 1
POINT_PX = 7.0  # point diameter at zoom 1
DECIMATE_AFTER = 3  # points per pixel column beyond which only the lowest and highest of each column are drawn
_LEVELS = 16  # distinct point colours, one scatter item each (each costs ~0.5 ms a repaint)


def format_perplexity(p: float) -> str:
    """Three significant digits: ``4.00``, ``12.3``, ``187``, ``1,024``."""
    if p < 10:
        return f"{p:.2f}"
    if p < 100:
        return f"{p:.1f}"
    return f"{p:,.0f}"


def summary_line(bits: Sequence[float | None]) -> str:
    """``312 tokens · 1,023.4 bits · 3.28 bits/token · perplexity 9.70`` (or ``—`` when nothing is scored)."""
    return _summary_text(summarize([b for b in bits if b is not None]))


def _summary_text(s: SpanSummary) -> str:
    if s.tokens == 0:
        return "—"
    noun = "token" if s.tokens == 1 else "tokens"
    return (
        f"{s.tokens:,} {noun} · {s.total_bits:,.1f} bits · {s.bits_per_token:.2f} bits/token"
        f" · perplexity {format_perplexity(s.perplexity)}"
    )


def peak_mask(values: np.ndarray, bucket: int) -> np.ndarray:
    """Which points a plot can show apart when ``bucket`` neighbouring indices
    share a pixel column: in each run of ``bucket`` indices (0 … bucket − 1,
    bucket … 2 bucket − 1, …) the lowest and the highest value. What is left
    out lies between the two drawn in its own column, hidden under them anyway.
    Buckets are fixed runs of indices, so a token added at the end changes
    only the last one."""
    valid = np.flatnonzero(np.isfinite(values))
    mask = np.zeros(len(values), dtype=bool)
    if bucket <= 1:
        mask[valid] = True
        return mask
    ids = valid // bucket
    order = np.lexsort((values[valid], ids))  # by bucket, then by value
    sorted_ids = ids[order]
    first = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
    last = np.r_[first[1:] - 1, sorted_ids.size - 1]
    mask[valid[order[first]]] = True
    mask[valid[order[last]]] = True
    return mask


def sliding_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Centred mean over ``window`` positions, ignoring NaN; NaN where a position has no value."""
    n = len(values)
    if n == 0:
        return values.copy()
    valid = np.isfinite(values)
    v = np.where(valid, values, 0.0)
    c0 = np.concatenate(([0.0], np.cumsum(v)))
    n0 = np.concatenate(([0], np.cumsum(valid)))
    half = window // 2
    idx = np.arange(n)
    lo = np.clip(idx - half, 0, n)
    hi = np.clip(idx - half + window, 0, n)
    counts = n0[hi] - n0[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (c0[hi] - c0[lo]) / counts
    mean[~valid] = np.nan
    return mean


class _SpanViewBox(pg.ViewBox):
    """No panning or zooming: a left-drag on the background selects a span of tokens."""

    sigSpanDragged = Signal(float, float, bool)  # x where the drag began, x now, finished

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 (pyqtgraph)
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        x0 = self.mapSceneToView(ev.buttonDownScenePos()).x()
        x1 = self.mapSceneToView(ev.scenePos()).x()
        self.sigSpanDragged.emit(x0, x1, ev.isFinish())

    def wheelEvent(self, ev, axis=None) -> None:  # noqa: N802 (pyqtgraph)
        ev.ignore()


class SurprisePlot(QWidget):
    """Bits per token along the document, with the document's totals above."""

    pointClicked = Signal(int)
    spanChanged = Signal(int, int)

    def __init__(self, parent: QWidget | None = None, theme: Theme | None = None) -> None:
        super().__init__(parent)
        self._theme = theme or system_theme()
        self._zoom = 1.0
        self._raw: list[float | None] = []
        self._bits = np.zeros(0)  # NaN where there is no value
        self._valid = np.zeros(0, dtype=np.int64)  # indices with a value
        self._levels = np.zeros(0, dtype=np.int64)  # colour level of each index
        self._brushes: np.ndarray = np.empty(0, dtype=object)
        self._selection: tuple[int, int] | None = None
        self._current: int | None = None
        self._setting_region = False
        self._summary = "—"
        self._point_size = POINT_PX
        self._window = AVERAGE_WINDOW
        self._bucket = 1  # indices sharing a pixel column, of which only the extremes are drawn (peak_mask)
        self._shown = np.zeros(0, dtype=bool)  # the points drawn
        self._growing = False  # see set_bits
        self._x_right = 9.5  # the right end of the x axis

        self._summary_label = QLabel("—")
        self._summary_label.setTextFormat(Qt.TextFormat.RichText)
        self._summary_label.setWordWrap(True)
        self._legend_label = QLabel()
        self._legend_label.setTextFormat(Qt.TextFormat.RichText)
        self._legend_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

        self.view_box = _SpanViewBox()
        self.plot_widget = pg.PlotWidget(viewBox=self.view_box)
        self.plot_widget.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.plot_widget.setMinimumHeight(80)
        item = self.plot_widget.getPlotItem()
        item.hideButtons()
        item.setMenuEnabled(False)
        item.layout.setContentsMargins(2, 4, 10, 2)
        self.view_box.setMouseEnabled(False, False)
        self.view_box.disableAutoRange()
        self.view_box.setCursor(Qt.CursorShape.PointingHandCursor)

        self._line = pg.PlotCurveItem(connect="finite", skipFiniteCheck=False)
        self._mean = pg.PlotCurveItem(connect="finite")
        self._points = [
            pg.ScatterPlotItem(pxMode=True, hoverable=True, tip=lambda x, y, data: f"token {int(round(x)):,}: {y:.2f} bits")
            for _ in range(_LEVELS + 1)
        ]
        self._region = pg.LinearRegionItem(values=(0, 1), orientation="vertical", movable=True, swapMode="sort")
        self._region.hide()
        self._region.setZValue(1)  # above the view box itself, so drags inside it move it
        self._current_line = pg.InfiniteLine(angle=90, movable=False)
        self._current_line.hide()
        self._current_ring = pg.ScatterPlotItem(pxMode=True)
        self._selection_text = pg.TextItem()
        self._selection_text.textItem.document().setDocumentMargin(3)
        self._selection_text.setZValue(30)
        self._selection_text.hide()
        self._current_ring.setZValue(20)
        self._mean.setZValue(15)
        for points in self._points:
            points.setZValue(10)
        # the y axis's grid, as lines of the plot's own: pyqtgraph's grid is drawn by the axis,
        # which then covers the plot and is redrawn with it every time, see-through (5 ms a token)
        self._grid = [pg.PlotCurveItem(connect="pairs") for _ in range(2)]  # the major and minor ticks' lines
        self._grid_at: tuple | None = None  # the ranges and height the lines were made for
        for grid in self._grid:
            grid.setZValue(-10)
        self._empty_text = pg.TextItem(EMPTY_TEXT, anchor=(0.5, 0.5))
        for it in (*self._grid, self._region, self._line, self._mean, *self._points, self._current_line, self._current_ring,
                   self._selection_text, self._empty_text):
            self.view_box.addItem(it, ignoreBounds=True)

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.setSpacing(12)
        header.addWidget(self._summary_label, 1)
        header.addWidget(self._legend_label, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 4)
        layout.setSpacing(2)
        layout.addLayout(header)
        layout.addWidget(self.plot_widget, 1)

        self.plot_widget.scene().sigMouseClicked.connect(self._on_scene_click)
        self.view_box.sigSpanDragged.connect(self._on_span_dragged)
        self.view_box.sigResized.connect(lambda *_: (self._resize_points(), self._update_grid()))
        self._region.sigRegionChangeFinished.connect(self._on_region_finished)

        self.setAutoFillBackground(True)
        self.set_theme(self._theme)
        self._update_ranges()

    # ------------------------------------------------------------------ API

    def set_bits(self, bits: Sequence[float | None], first_changed: int = 0, growing: bool = False) -> None:
        """The surprise of every token (``None`` where there is none).

        Entries before ``first_changed`` are as in the previous call, so only the rest is converted.
        ``growing``: the document grows as the model works; the x axis then widens in steps with
        room for the tokens to come, not at every token (a new range redraws the axes and
        every item: 3-4 ms a token at 8,000 tokens).
        """
        self._growing = bool(growing)
        raw = list(bits)
        n = len(raw)
        start = max(0, min(int(first_changed), len(self._raw), n))
        if start == 0 or len(self._bits) < start:
            start = 0
        old_levels = self._levels[start:]
        new = np.array([np.nan if b is None else float(b) for b in raw[start:]], dtype=np.float64)
        self._bits = np.concatenate((self._bits[:start], new))
        levels = np.full(len(new), -1, dtype=np.int64)  # -1: no point (a token without a prediction)
        finite = np.isfinite(new)
        levels[finite] = np.rint(surprise_positions(new[finite]) * _LEVELS)
        self._levels = np.concatenate((self._levels[:start], levels))
        self._raw = raw
        self._valid = np.flatnonzero(np.isfinite(self._bits))
        self._fit_x()  # the points' size and the line's strength follow the axis's span

        x = np.arange(n, dtype=np.float64)
        self._line.setData(x, self._bits)
        self._window = max(AVERAGE_WINDOW, round(n / 150))
        mean = sliding_mean(self._bits, self._window)
        columns = int(max(self.view_box.boundingRect().width(), 50.0))
        step = max(1, 2 * n // columns)  # the mean is smooth over its window (1/150 of the tokens): a point every 2 pixels is plenty
        if step > 1:
            keep = np.r_[np.arange(0, n, step), n - 1]
            self._mean.setData(x[keep], mean[keep])
        else:
            self._mean.setData(x, mean)
        size = self._fitting_point_size()
        # with more points than the plot has pixel columns, only those that can be told apart are
        # drawn: the lowest and highest of each run of indices sharing a column (peak_mask)
        bucket = 1
        if n > DECIMATE_AFTER * columns:
            bucket = 1 << int(np.ceil(np.log2(n / columns)))
        if start == 0 or abs(size - self._point_size) > 0.25 or bucket != self._bucket:
            self._shown = peak_mask(self._bits, bucket)
            touched = range(_LEVELS + 1)
        else:  # only the levels of the points that changed, went, came, or were hidden or shown
            b0 = start // bucket * bucket
            old_shown = self._shown[b0:start]
            self._shown = np.concatenate((self._shown[:b0], peak_mask(self._bits[b0:], bucket)))
            flipped = b0 + np.flatnonzero(old_shown != self._shown[b0:start])
            touched = {int(v) for v in np.concatenate((old_levels, levels, self._levels[flipped])) if v >= 0}
        self._bucket = bucket
        self._point_size = size
        pen = self._density_pen()
        for level in touched:
            at = np.flatnonzero((self._levels == level) & self._shown)
            points = self._points[level]
            points.setData(x=at.astype(np.float64), y=self._bits[at], brush=self._brushes[level], size=size, pen=pen)
            points.setVisible(len(at) > 0)  # an empty item is not painted at all
        self._style_line()
        # from the array, not the list: going through 8,000 Python floats again took 3 ms a token
        self._summary = _summary_text(summarize(self._bits[self._valid].tolist()))
        self._region.setBounds((-0.5, max(n, 1) - 0.5))
        if self._selection is not None:  # keep it on the tokens that are still there
            start, stop = self._selection
            if start < n:
                self.set_selection(start, min(stop, n))
            else:
                self.set_selection(None, None)
        self._update_current()
        self._update_summary_label()
        self._update_ranges()

    def set_selection(self, start: int | None, stop: int | None) -> None:
        """Shade tokens ``start`` … ``stop - 1``; ``None`` removes the shading. Emits nothing."""
        if start is None or stop is None or stop <= start:
            self._selection = None
            self._region.hide()
            self._selection_text.hide()
        else:
            self._selection = (int(start), int(stop))
            self._set_region(*self._selection)
            self._region.show()
        self._update_summary_label()

    def selection(self) -> tuple[int, int] | None:
        return self._selection

    def region_bounds(self) -> tuple[float, float] | None:
        """The shaded region in x (token i spans i − 0.5 … i + 0.5), or None when hidden."""
        if not self._region.isVisible():
            return None
        lo, hi = self._region.getRegion()
        return float(lo), float(hi)

    def set_current(self, index: int | None) -> None:
        self._current = None if index is None else int(index)
        self._update_current()

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        apply_widget_palette(self, theme)
        self.plot_widget.setBackground(theme.panel)
        self._brushes = [QBrush(surprise_color(bits_at_position(level / _LEVELS))) for level in range(_LEVELS + 1)]
        outline = QColor(theme.text)
        outline.setAlpha(150 if theme.dark else 120)
        self._point_pen = pg.mkPen(outline, width=1)
        self._style_line()
        mean = QColor(theme.text)
        mean.setAlpha(200)
        self._mean_color = mean
        selection = QColor(theme.selection)
        edge = QColor(theme.highlight)
        edge.setAlpha(200)
        self._region.setBrush(QBrush(selection))
        hover = QColor(selection)
        hover.setAlpha(min(255, selection.alpha() + 40))
        self._region.setHoverBrush(QBrush(hover))
        for ln in self._region.lines:
            ln.setPen(pg.mkPen(edge, width=2))
            ln.setHoverPen(pg.mkPen(theme.highlight, width=4))
        self._current_line.setPen(pg.mkPen(theme.highlight, width=1.5, style=Qt.PenStyle.DashLine))
        for name in ("left", "bottom"):
            axis = self.plot_widget.getAxis(name)
            axis.setPen(pg.mkPen(theme.muted))
            axis.setTextPen(pg.mkPen(theme.text))
        self._empty_text.setColor(theme.muted)
        self._summary_label.setStyleSheet(f"color: {theme.text.name()};")
        self._legend_label.setStyleSheet(f"color: {theme.muted.name()};")
        self._apply_zoom()
        if len(self._bits):
            self.set_bits(self._raw, first_changed=0, growing=self._growing)
        self._update_current()
        self._update_summary_label()

    def set_zoom(self, factor: float) -> None:
        self._zoom = max(0.25, float(factor))
        self._apply_zoom()
        self._resize_points()
        self._update_current()

    def summary_text(self) -> str:
        return self._summary

    def point_count(self) -> int:
        """How many points are drawn: every token with a value, or with more
        of them than pixel columns, the lowest and highest of each column's."""
        return sum(len(points.data) for points in self._points)

    def drawn_indices(self) -> list[int]:
        """The tokens whose points are drawn, in order."""
        return sorted(int(round(x)) for points in self._points for x in points.data["x"])

    def point_size(self) -> float:
        """The points' diameter in pixels (smaller when they crowd together)."""
        return self._point_size

    def bucket(self) -> int:
        """How many neighbouring tokens share a pixel column (1: every point is drawn)."""
        return self._bucket

    def current_index(self) -> int | None:
        """The token the current-token marker is on, or None when it is hidden."""
        return self._current if self._current_line.isVisible() else None

    def point_position(self, index: int) -> QPointF:
        """Where token ``index``'s point is, in the plot widget's viewport coordinates (for tests)."""
        y = self._bits[index] if 0 <= index < len(self._bits) and np.isfinite(self._bits[index]) else 0.0
        scene = self.view_box.mapViewToScene(QPointF(float(index), float(y)))
        return QPointF(self.plot_widget.mapFromScene(scene))

    def nearest_index(self, x: float) -> int | None:
        """The scored token nearest to ``x``."""
        v = self._valid
        if not len(v):
            return None
        j = int(np.searchsorted(v, x))
        candidates = [v[k] for k in (j - 1, j) if 0 <= k < len(v)]
        return int(min(candidates, key=lambda i: abs(i - x)))

    # ------------------------------------------------------------ internals

    def _apply_zoom(self) -> None:
        pt = LABEL_PT * self._zoom
        font = QFont(self.font())
        font.setPointSizeF(pt * 0.95)
        self._summary_label.setFont(font)
        self._empty_text.setFont(font)
        small = QFont(self.font())
        small.setPointSizeF(pt * 0.8)
        self._legend_label.setFont(small)
        tick = QFont(self.font())
        tick.setPointSizeF(pt * 0.85)
        item = self.plot_widget.getPlotItem()
        for name in ("left", "bottom"):
            axis = self.plot_widget.getAxis(name)
            axis.setStyle(tickFont=tick, tickTextOffset=max(3, round(4 * self._zoom)))
        # the x axis needs no title (the summary counts tokens); y says its unit
        item.setLabel("left", "bits", color=self._theme.muted.name(), **{"font-size": f"{pt * 0.85:.1f}pt"})
        self.plot_widget.getAxis("left").setWidth(round(30 + 14 * self._zoom))
        self._mean.setPen(pg.mkPen(self._mean_color, width=max(1.5, 2.0 * self._zoom)))
        self._update_legend()
        self._grid_at = None
        self._update_grid()

    def _fitting_point_size(self) -> float:
        """The zoom's point size, smaller when the points would overlap."""
        width = max(self.view_box.boundingRect().width(), 50.0)
        spacing = width / max(self._x_right + 0.5, 1.0)  # the span, which grows in steps: the size too
        return float(np.clip(spacing * 1.15, 3.0, POINT_PX * self._zoom))

    def _density_pen(self):
        """Points get an outline (it keeps the dark end of the scale visible) unless they are crowded."""
        return self._point_pen if self._point_size >= 4.5 else pg.mkPen(None)

    def _style_line(self) -> None:
        """The thin line joining the points fades as they crowd together, then goes."""
        spacing = max(self.view_box.boundingRect().width(), 50.0) / max(self._x_right + 0.5, 1.0)
        strength = float(np.clip(40 * spacing - 20, 0, 140)) / 255
        # opaque, the colour it would have over the background: Qt draws a thin see-through
        # line 20-40 times slower than an opaque one (2 ms for 200 points)
        self._line.setPen(pg.mkPen(mix(self._theme.panel, self._theme.muted, strength), width=1))
        self._line.setVisible(strength > 0)

    def _resize_points(self) -> None:
        size = self._fitting_point_size()
        if abs(size - self._point_size) > 0.25:
            self._point_size = size
            for points in self._points:
                points.setSize(size)
                points.setPen(self._density_pen())
            self._update_current()
        self._style_line()

    def _update_legend(self) -> None:
        self._fit_header()

    def _legend_html(self, with_mean: bool) -> tuple[str, str]:
        """The colour-scale legend (and the mean line's), as rich text and as plain text for measuring."""
        # one block per mark of the scale, each labelled: 0 █ 1 █ 2 █ 4 █ 8 █ 16+ bits
        marks = SCALE_MARKS
        html = " ".join(f'{b:g}{"+" if b == marks[-1] else ""}<span style="color:{surprise_color(b).name()}">█</span>'
                        for b in marks) + " bits"
        plain = " ".join(f'{b:g}{"+" if b == marks[-1] else ""}█' for b in marks) + " bits"
        if with_mean:
            mean = f'<span style="color:{self._mean_color.name()}"><b>━</b></span> mean of {self._window}'
            html = f"{mean}&nbsp;&nbsp;&nbsp; {html}"
            plain = f"━ mean of {self._window}    " + plain
        return html, plain

    def _fit_header(self) -> None:
        """The summary comes first; the legend shows in full, shortened or not at all, as room allows."""
        if not hasattr(self, "_mean_color"):
            return
        bold = QFont(self._summary_label.font())
        bold.setBold(True)
        need = QFontMetricsF(bold).horizontalAdvance(self._summary) + 4
        margins = self.layout().contentsMargins() if self.layout() is not None else None
        room = self.width() - (margins.left() + margins.right() if margins else 16) - 16
        legend_fm = QFontMetricsF(self._legend_label.font())
        for with_mean in (True, False):
            html, plain = self._legend_html(with_mean)
            if need + legend_fm.horizontalAdvance(plain) + 8 <= room:
                self._legend_label.setText(html)
                self._legend_label.show()
                return
        self._legend_label.hide()

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt)
        super().resizeEvent(event)
        self._fit_header()

    def _update_summary_label(self) -> None:
        # the numbers bold, the words plain: "<b>312</b> tokens · <b>1,023.4</b> bits · ..."
        parts = []
        for part in self._summary.split(" · "):
            head, _, tail = part.rpartition(" ") if part.startswith("perplexity") else part.partition(" ")
            parts.append(f"{head} <b>{tail}</b>" if part.startswith("perplexity") else f"<b>{head}</b> {tail}")
        self._summary_label.setText(" · ".join(parts) if self._summary != "—" else "—")
        self._fit_header()
        self._update_selection_text()

    def selection_text(self) -> str:
        """The selected span's numbers shown in the plot ("22 tokens · 4.68 bits/token"), or ""."""
        if self._selection is None or not len(self._bits):
            return ""
        a, b = self._selection
        sub = self._bits[max(0, a) : max(0, b)]
        sub = sub[np.isfinite(sub)]
        if not len(sub):
            return ""
        noun = "token" if len(sub) == 1 else "tokens"
        return f"{len(sub):,} {noun} · {sub.mean():.2f} bits/token"

    def _update_selection_text(self) -> None:
        text = self.selection_text()
        if not text or not self._region.isVisible():
            self._selection_text.hide()
            return
        t = self._theme
        fill = QColor(t.panel)
        fill.setAlpha(225)
        self._selection_text.fill = pg.mkBrush(fill)
        self._selection_text.border = pg.mkPen(t.highlight, width=1)
        self._selection_text.setText(text, color=t.text)
        font = QFont(self.font())
        font.setPointSizeF(LABEL_PT * self._zoom * 0.8)
        self._selection_text.setFont(font)
        a, b = self._selection
        n = len(self._bits)
        left = (a + b) / 2 < n / 2
        self._selection_text.setAnchor((0, 0) if left else (1, 0))
        self._selection_text.setPos((a - 0.5) if left else (b - 0.5), getattr(self, "_y_top", 1.0))
        self._selection_text.show()

    def is_empty(self) -> bool:
        """True while no token has a value (the plot shows a short explanation instead)."""
        return not len(self._valid)

    def _update_ranges(self) -> None:
        n = len(self._bits)
        finite = self._bits[np.isfinite(self._bits)] if n else self._bits
        top = max(1.0, float(finite.max()) * 1.1) if len(finite) else 1.0
        self._y_top = top
        right = self._fit_x()
        self.view_box.setRange(xRange=(-0.5, right), yRange=(-0.02 * top, top), padding=0, update=True)
        self._update_grid()
        self._empty_text.setPos((right - 0.5) / 2, top / 2)
        self._empty_text.setVisible(not len(finite))
        self._update_selection_text()

    def _fit_x(self) -> float:
        """The right end of the x axis for the tokens there are (kept in ``_x_right``): the
        last token's, or while the document grows a step beyond it (see ``set_bits``)."""
        n = len(self._bits)
        scored = len(self._valid) > 0
        right = max(n, 10 if not scored else 1) - 0.5
        room = max(16, n // 8)
        if self._growing and scored and right <= self._x_right <= right + 2 * room:
            right = self._x_right  # the tokens so far still fit, with no more than twice the room
        elif self._growing and scored:
            right += room
        self._x_right = right
        return right

    def _update_grid(self) -> None:
        """A line across the plot at each of the y axis's ticks, as pyqtgraph's own grid
        draws them: the major ticks' lines stronger than the minor ones', both fainter when many."""
        (x0, x1), (y0, y1) = self.view_box.viewRange()
        height = self.view_box.boundingRect().height()
        at = (x0, x1, y0, y1, height, self._theme)
        if at == self._grid_at:
            return
        self._grid_at = at
        levels = self.plot_widget.getAxis("left").tickValues(y0, y1, height) if height > 0 else []
        strength = 0.18 if not self._theme.dark else 0.25
        for i, grid in enumerate(self._grid):
            values = [v for v in levels[i][1] if y0 <= v <= y1] if i < len(levels) else []
            if not values:
                grid.setData([], [])
                grid.hide()
                continue
            alpha = strength / (i + 1) * float(np.clip(0.05 * height / (len(levels[i][1]) + 1), 0, 1))
            grid.setPen(pg.mkPen(mix(self._theme.panel, self._theme.muted, alpha), width=1))  # opaque: see _style_line
            grid.setData(np.tile([x0, x1], len(values)), np.repeat(np.asarray(values, dtype=np.float64), 2))
            grid.show()

    def _update_current(self) -> None:
        i = self._current
        if i is None or not 0 <= i < len(self._bits):
            self._current_line.hide()
            if len(self._current_ring.data):  # emptying it again repaints the plot all the same
                self._current_ring.setData([], [])
            return
        self._current_line.setValue(i)
        self._current_line.show()
        if np.isfinite(self._bits[i]):
            self._current_ring.setData(
                [float(i)], [float(self._bits[i])], size=(POINT_PX + 9) * self._zoom,
                pen=pg.mkPen(self._theme.highlight, width=max(2.0, 2.5 * self._zoom)), brush=None,
            )
        else:
            self._current_ring.setData([], [])

    def _set_region(self, start: int, stop: int) -> None:
        self._setting_region = True
        try:
            self._region.setRegion((start - 0.5, stop - 0.5))
        finally:
            self._setting_region = False

    def _span_from(self, x0: float, x1: float) -> tuple[int, int] | None:
        n = len(self._bits)
        if not n:
            return None
        lo, hi = min(x0, x1), max(x0, x1)
        start = int(np.clip(np.floor(lo + 0.5), 0, n - 1))
        stop = int(np.clip(np.floor(hi + 0.5) + 1, start + 1, n))
        return start, stop

    def _on_span_dragged(self, x0: float, x1: float, finished: bool) -> None:
        span = self._span_from(x0, x1)
        if span is None:
            return
        self._set_region(*span)
        self._region.show()
        if finished:
            self._selection = span
            self._update_summary_label()
            self.spanChanged.emit(*span)

    def _on_region_finished(self, *_args) -> None:
        if self._setting_region or not self._region.isVisible():
            return
        lo, hi = self._region.getRegion()
        n = len(self._bits)
        if not n:
            return
        start = int(np.clip(round(lo + 0.5), 0, n - 1))
        stop = int(np.clip(round(hi + 0.5), start + 1, n))
        self._set_region(start, stop)
        if (start, stop) != self._selection:
            self._selection = (start, stop)
            self._update_summary_label()
            self.spanChanged.emit(start, stop)

    def _on_scene_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton or event.double():
            return
        pos = event.scenePos()
        if not self.view_box.sceneBoundingRect().contains(pos):
            return
        index = self.nearest_index(self.view_box.mapSceneToView(pos).x())
        if index is not None:
            self.pointClicked.emit(index)

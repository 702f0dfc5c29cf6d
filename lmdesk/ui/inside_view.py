"""Inside the model at one position: the logit lens and the attention.

The widget shows an :class:`lmdesk.engine.inspect.Inspection`, the model's
state at token P − 1 as it predicts token P:

* **the logit lens**: for each layer l = 1 … L, what the model would predict
  if it stopped after block l (the output head applied to the residual
  stream there): the five most likely tokens with their probabilities, the
  actual next token marked wherever it appears, its rank in a last column;
  and a small plot of the actual token's probability layer by layer. The
  last layer's row is the model's own distribution.
* **attention**: how much token P − 1 looks at each earlier token, in one
  layer, for one head or the average over the heads: a heat map of the
  heads × the tokens before it, and (sent to the window) a tint on the chips.

Every number comes from the engine; the widget only formats it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QFont, QFontMetricsF
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..engine.inspect import Inspection
from .worker import Inspected
from .distribution_view import format_percent
from .theme import Theme, apply_widget_palette, mix, system_theme, text_on

BASE_PT = 10.5
TABLE_SCALE = 0.9
LENS_ROWS = 14  # layers shown at once in the lens grid; more scroll
AVERAGE = -1  # the head picker's "average of the heads"

Texts = Callable[[int], str]


class InsideView(QWidget):
    """The logit lens and the attention of one inspected position."""

    # the query token, its weights over the tokens 0 … query, and what they are ("layer 3, head 2");
    # query -1: no tint (the box is unticked or nothing is inspected)
    attentionShown = Signal(int, object, str)  # noqa: N815
    keyClicked = Signal(int)  # noqa: N815 - a token of the heat map, to show in the document

    def __init__(self, parent: QWidget | None = None, theme: Theme | None = None) -> None:
        super().__init__(parent)
        self.theme = theme or system_theme()
        self.zoom = 1.0
        self.inspection: Inspection | None = None
        self.shown: Inspected | None = None
        self._texts: Texts | None = None
        self._ids: tuple[int, ...] = ()  # the ids of the tokens 0 … query
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        self.heading = QLabel()
        self.heading.setWordWrap(True)
        v.addWidget(self.heading)
        self.lens_title = QLabel("Logit lens: what the model would predict if it stopped after each layer")
        self.lens_title.setWordWrap(True)
        v.addWidget(self.lens_title)
        self.lens = QTableWidget(0, 7)
        self.lens.verticalHeader().setVisible(False)
        self.lens.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.lens.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.lens.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.lens.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.lens.horizontalHeader().setStretchLastSection(True)
        v.addWidget(self.lens)
        self.by_layer = pg.PlotWidget()
        self.by_layer.setMenuEnabled(False)
        self.by_layer.setMouseEnabled(x=False, y=False)
        self.by_layer.hideButtons()
        self.by_layer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.by_layer.setYRange(0, 1, padding=0.05)
        self.by_layer.getAxis("left").setTicks([[(0, "0"), (0.5, "0.5"), (1, "1")]])
        self._curve = self.by_layer.plot([], [], pen=pg.mkPen(width=2), symbol="o", symbolSize=6)
        self.by_layer_title = QLabel()
        self.by_layer_title.setWordWrap(True)
        v.addWidget(self.by_layer_title)
        v.addWidget(self.by_layer)

        self.attention_title = QLabel()
        self.attention_title.setWordWrap(True)
        v.addWidget(self.attention_title)
        row = QHBoxLayout()
        row.addWidget(QLabel("Layer"))
        self.layer = QSpinBox()
        self.layer.setRange(1, 1)
        row.addWidget(self.layer)
        row.addWidget(QLabel("Head"))
        self.head = QComboBox()
        self.head.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.head.setMinimumContentsLength(8)
        row.addWidget(self.head, 1)
        v.addLayout(row)
        self.on_chips = QCheckBox("Tint the chips by it")
        self.on_chips.setChecked(True)
        self.on_chips.setToolTip("Tint the document's chips by this attention")
        v.addWidget(self.on_chips)
        self.heat = pg.PlotWidget()
        self.heat.setMenuEnabled(False)
        self.heat.setMouseEnabled(x=False, y=False)
        self.heat.hideButtons()
        self.heat.invertY(True)
        self.heat.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.heat.getAxis("left").setLabel("head")
        self.heat.getAxis("bottom").setLabel("token")
        self._image = pg.ImageItem(axisOrder="row-major")
        self.heat.addItem(self._image)
        self._head_mark = pg.QtWidgets.QGraphicsRectItem()
        self._head_mark.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self.heat.addItem(self._head_mark)
        self._image.mouseClickEvent = self._on_heat_click
        v.addWidget(self.heat)
        self.strongest = QLabel()
        self.strongest.setWordWrap(True)
        v.addWidget(self.strongest)
        v.addStretch(1)

        self.layer.valueChanged.connect(self._show_attention)
        self.head.currentIndexChanged.connect(self._show_attention)
        self.on_chips.toggled.connect(self._show_attention)
        self._apply_fonts()
        self.clear("Click a token, or look at the end of the document: this tab shows what happens inside the "
                   "model as it predicts it.")

    # -- what is shown ---------------------------------------------------------------------
    def clear(self, message: str) -> None:
        self.inspection = self.shown = None
        self.heading.setText(message)
        for w in (self.lens_title, self.lens, self.by_layer_title, self.by_layer, self.attention_title, self.layer,
                  self.head, self.on_chips, self.heat, self.strongest):
            w.setVisible(False)
        self.attentionShown.emit(-1, None, "")

    def set_inspection(self, shown: Inspected, texts: Texts) -> None:
        """Show an inspected position (its tokens' ids come with it)."""
        ins = shown.inspection
        self.shown, self.inspection, self._texts, self._ids = shown, ins, texts, shown.key_ids
        for w in (self.lens_title, self.lens, self.by_layer_title, self.by_layer, self.attention_title, self.layer,
                  self.head, self.on_chips, self.heat, self.strongest):
            w.setVisible(True)
        query = texts(self._ids[ins.query])
        if ins.actual_id is None:
            self.heading.setText(f"Inside the model after the last token ‘{query}’: predicting the token after "
                                 "the text")
        else:
            self.heading.setText(f"Inside the model at ‘{query}’ (token {ins.query:,}), predicting "
                                 f"‘{texts(ins.actual_id)}’ (token {ins.position:,})")
        self._fill_lens(ins, texts)
        self._plot_by_layer(shown)
        rows_shown = min(len(ins.layers), LENS_ROWS)
        self.lens.setFixedHeight(self.lens.horizontalHeader().sizeHint().height() + 2 * self.lens.frameWidth()
                                 + rows_shown * self.lens.verticalHeader().defaultSectionSize()
                                 + self.lens.horizontalScrollBar().sizeHint().height())
        n_layer, n_head = ins.attention.shape[0], ins.attention.shape[1]
        self.layer.blockSignals(True)
        self.head.blockSignals(True)
        self.layer.setRange(1, n_layer)
        if self.head.count() != n_head + 1:
            self.head.clear()
            self.head.addItem("average of the heads", AVERAGE)
            for h in range(n_head):
                self.head.addItem(f"head {h + 1}", h)
        self.layer.blockSignals(False)
        self.head.blockSignals(False)
        self._show_attention()

    def _fill_lens(self, ins: Inspection, texts: Texts) -> None:
        t = self.lens
        top = max((len(layer.top_ids) for layer in ins.layers), default=0)
        headers = ["layer", *[_ordinal(k + 1) for k in range(top)],
                   "actual" if ins.actual_id is not None else ""]
        t.setColumnCount(len(headers))
        t.setHorizontalHeaderLabels(headers)
        t.setRowCount(len(ins.layers))
        th = self.theme
        bold = QFont(t.font())
        bold.setBold(True)
        last = len(ins.layers)
        for r, layer in enumerate(reversed(ins.layers)):  # the output on top, as the model stacks them
            item = QTableWidgetItem(f"{layer.layer}" + (" out" if layer.layer == last else ""))
            if layer.layer == last:
                item.setToolTip("the last layer: the model's own output")
            item.setForeground(QBrush(th.muted))
            t.setItem(r, 0, item)
            for c, (tid, p) in enumerate(zip(layer.top_ids, layer.top_probs)):
                cell = QTableWidgetItem(f"{texts(tid)} {short_percent(p)}")
                fill = mix(th.panel, th.bar, min(1.0, p) ** 0.5)
                cell.setBackground(QBrush(fill))
                cell.setForeground(QBrush(text_on(fill)))
                cell.setToolTip(f"layer {layer.layer}: ‘{texts(tid)}’ p = {p:.4f}")
                if tid == ins.actual_id:
                    cell.setBackground(QBrush(th.highlight))
                    cell.setForeground(QBrush(text_on(th.highlight)))
                    cell.setFont(bold)
                    cell.setToolTip(cell.toolTip() + " — the actual next token")
                t.setItem(r, c + 1, cell)
            for c in range(len(layer.top_ids), top):
                t.setItem(r, c + 1, QTableWidgetItem(""))
            if ins.actual_id is not None and layer.actual_rank is not None:
                cell = QTableWidgetItem(f"#{layer.actual_rank:,} {short_percent(layer.actual_prob or 0.0)}")
                cell.setToolTip(f"the actual token ‘{texts(ins.actual_id)}’ at layer {layer.layer}: rank "
                                f"{layer.actual_rank:,}, p = {layer.actual_prob or 0.0:.4f}")
                if layer.actual_rank == 1:
                    cell.setFont(bold)
            else:
                cell = QTableWidgetItem("")
            t.setItem(r, top + 1, cell)

    def _plot_by_layer(self, shown: Inspected) -> None:
        ins = shown.inspection
        layers = [layer.layer for layer in ins.layers]
        name = self._texts(shown.followed)
        if ins.actual_id is not None:
            what = f"The probability of the actual token ‘{name}’, layer by layer"
        else:
            what = f"The probability of the model's final choice ‘{name}’, layer by layer"
        self._curve.setData(layers, list(shown.followed_probs))
        self.by_layer.setXRange(1, max(2, len(layers)), padding=0.03)
        step = max(1, len(layers) // 8)
        self.by_layer.getAxis("bottom").setTicks([[(x, str(x)) for x in layers if x == 1 or x % step == 0]])
        self.by_layer.setToolTip(what)
        self.by_layer_title.setText(what)

    def current_weights(self) -> tuple[np.ndarray, str] | None:
        """The attention shown: weights over the tokens 0 … query, and what they are."""
        ins = self.inspection
        if ins is None:
            return None
        layer = self.layer.value()
        head = self.head.currentData()
        rows = ins.attention[layer - 1].astype(np.float64)
        if head is None or head == AVERAGE:
            return rows.mean(axis=0), f"layer {layer}, average of {rows.shape[0]} heads"
        return rows[int(head)], f"layer {layer}, head {int(head) + 1}"

    def _show_attention(self, *_args) -> None:
        ins = self.inspection
        if ins is None or self._texts is None:
            return
        shown = self.current_weights()
        assert shown is not None
        weights, label = shown
        layer = self.layer.value()
        rows = ins.attention[layer - 1]
        self._image.setImage(rows, levels=(0.0, max(1e-9, float(rows.max()))), autoLevels=False)
        self._image.setColorMap(pg.ColorMap([0.0, 1.0], [self.theme.panel, self.theme.highlight]))
        self._image.setRect(0, 0, rows.shape[1], rows.shape[0])
        self.heat.setXRange(0, rows.shape[1], padding=0)
        every = max(1, -(-rows.shape[0] // 4))  # four labels at most: the map is a few lines high
        self.heat.getAxis("left").setTicks([[(h + 0.5, str(h + 1)) for h in range(rows.shape[0])
                                             if h == 0 or (h + 1) % every == 0]])
        self.heat.setYRange(0, rows.shape[0], padding=0)
        head = self.head.currentData()
        if head is None or head == AVERAGE:
            self._head_mark.setVisible(False)
        else:
            self._head_mark.setVisible(True)
            self._head_mark.setRect(0, int(head), rows.shape[1], 1)
            self._head_mark.setPen(pg.mkPen(self.theme.text, width=2, cosmetic=True))
        query = self._texts(self._ids[ins.query])
        self.attention_title.setText(f"Attention: how much ‘{query}’ (token {ins.query:,}) looks at each token "
                                     f"before it, in one layer")
        order = np.argsort(-weights, kind="stable")[:3]
        names = [f"‘{self._texts(self._ids[k])}’ (token {k:,}) {format_percent(float(weights[k]))}" for k in order]
        self.strongest.setText(f"{label}: most attention to " + ", ".join(names) if names else label)
        self.attentionShown.emit(ins.query if self.on_chips.isChecked() else -1, weights, label)

    def _on_heat_click(self, event) -> None:
        x = int(event.pos().x())
        if self.inspection is not None and 0 <= x < self.inspection.attention.shape[2]:
            self.keyClicked.emit(x)

    def needed_width(self) -> int:
        """The width the lens grid needs."""
        return needed_table_width(self.lens)

    def lens_text(self) -> list[list[str]]:
        """The lens table's cells as shown (for tests)."""
        t = self.lens
        return [[t.item(i, j).text() if t.item(i, j) else "" for j in range(t.columnCount())]
                for i in range(t.rowCount())]

    # -- looks -------------------------------------------------------------------------------
    def set_theme(self, theme: Theme) -> None:
        self.theme = theme
        apply_widget_palette(self, theme)
        for plot in (self.by_layer, self.heat):
            plot.setBackground(theme.window)
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setPen(theme.muted)
                plot.getAxis(axis).setTextPen(theme.text)
        self._curve.setPen(pg.mkPen(theme.bar, width=2))
        self._curve.setSymbolBrush(theme.bar)
        if self.shown is not None and self._texts is not None:
            self.set_inspection(self.shown, self._texts)

    def set_zoom(self, factor: float) -> None:
        self.zoom = factor
        self._apply_fonts()

    def _apply_fonts(self) -> None:
        f = QFont(self.font())
        f.setPointSizeF(BASE_PT * self.zoom)
        for w in (self.lens_title, self.by_layer_title, self.attention_title, self.strongest):
            w.setFont(f)
        small = QFont(f)
        small.setPointSizeF(BASE_PT * TABLE_SCALE * self.zoom)
        self.lens.setFont(small)
        self.lens.horizontalHeader().setFont(small)
        self.lens.verticalHeader().setDefaultSectionSize(int(QFontMetricsF(small).height() * 1.3))
        for plot in (self.by_layer, self.heat):
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setStyle(tickFont=small)
        h = QFont(f)
        h.setBold(True)
        h.setPointSizeF(BASE_PT * 1.15 * self.zoom)
        self.heading.setFont(h)
        line = QFontMetricsF(f).height()
        self.by_layer.setFixedHeight(int(line * 7))
        self.heat.setFixedHeight(int(line * 8))


def short_percent(p: float) -> str:
    """A probability in few characters, for the lens grid: ``64%``, ``2.6%``, ``0.4%``, ``<0.1%``."""
    pct = float(p) * 100.0
    if pct >= 9.95:
        return f"{pct:.0f}%"
    if pct >= 0.095:
        return f"{pct:.1f}%"
    return "<0.1%" if pct > 0 else "0%"


def needed_table_width(t: QTableWidget) -> int:
    """The width ``t`` needs to show all its columns (what they need, not what they have)."""
    header = t.horizontalHeader()
    columns = sum(max(t.sizeHintForColumn(j), header.sectionSizeHint(j)) for j in range(t.columnCount()))
    return columns + t.verticalScrollBar().sizeHint().width() + 2 * t.frameWidth()


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")

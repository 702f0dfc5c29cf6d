"""How the next token is chosen, step by step: the sampling made visible.

The widget shows an :class:`lmdesk.engine.sampling.Pipeline` (what the
settings do to the next-token distribution) or a
:class:`lmdesk.engine.sampling.Draw` (one token drawn, with the uniform
number r that chose it), as the course's notes tell it:

1. the model's logits, its raw scores, divided by the temperature T;
2. softmax turns them into probabilities;
3. top-k and top-p keep the most likely tokens;
4. those are renormalised and stacked end to end from 0 to 1, most likely first;
5. a uniform random number r in [0, 1) is drawn: the token whose stretch holds it comes next.

A table lists the most likely candidates through each stage; a number line
shows the stretches and where r fell. The widget only formats what it is
given: every number comes from the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QBrush, QFont, QFontMetricsF, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..engine.sampling import Draw, Pipeline
from .distribution_view import format_percent
from .theme import Theme, apply_widget_palette, mix, system_theme, text_on

BASE_PT = 10.5  # text at zoom 1
TABLE_SCALE = 0.9  # the table's text, relative to the rest
COLUMNS = ("token", "logit", "÷ T", "p\nT = 1", "p\nT", "p\ndrawn")
HEADER_TIPS = (
    "the candidate token, most likely first",
    "the model's raw score for it (before the softmax)",
    "the logit divided by the temperature T",
    "softmax of the logits: the model's own probability",
    "softmax of logit ÷ T",
    "after top-k and top-p, renormalised to add up to 1: what the draw uses ('out': left out)",
)
LINE_SEGMENTS = 12  # stretches drawn one by one on the number line; the rest share one

Texts = Callable[[int], str]  # token id → how the token is shown (whitespace visible)


def _settings_text(pipe: Pipeline) -> str:
    s = pipe.settings
    if s.is_greedy:
        return "greedy"
    return f"temperature {s.temperature:g} · top-k {s.top_k or 'off'} · top-p {s.top_p:g}"


def story(pipe: Pipeline, texts: Texts, drawn: Draw | None = None, actual: int | None = None) -> list[str]:
    """The steps from logits to the token, one sentence each (HTML)."""
    s = pipe.settings
    if not pipe.rows:
        return []
    top = pipe.rows[0]
    name = f"‘{escape(texts(top.token_id))}’"
    if s.is_greedy:
        return [f"Greedy: the token with the highest logit, {name} ({top.logit:.2f}), is taken. "
                "Nothing is drawn, so the same document always gives the same token."]
    t = s.temperature
    if t == 1.0:
        how = "T = 1 leaves them as they are"
    elif t < 1.0:
        how = f"T = {t:g} makes the gaps between them {1 / t:.2g} times wider: the distribution sharpens"
    else:
        how = f"T = {t:g} shrinks the gaps between them to {1 / t:.2g} of their size: the distribution flattens"
    steps = [
        f"1. The model's logits (raw scores) are divided by the temperature: {how}.",
        f"2. Softmax turns them into probabilities: {name} has {format_percent(top.p_model)} at T = 1 and "
        f"{format_percent(top.p_temperature)} at T = {t:g}.",
    ]
    filters = []
    if s.top_k:
        filters.append(f"top-k {s.top_k} keeps the {s.top_k:,} most likely")
    if s.top_p < 1.0:
        filters.append(f"top-p {s.top_p:g} keeps the fewest most likely tokens that reach {s.top_p * 100:g} %")
    if filters:
        left = "1 token is" if pipe.n_kept == 1 else f"{pipe.n_kept:,} tokens are"
        steps.append(f"3. {'; '.join(filters)}: {left} left of {pipe.vocab_size:,}, holding "
                     f"{format_percent(pipe.kept_mass)}.")
        steps.append(f"4. Their probabilities are divided by {pipe.kept_mass:.4g} so they add up to 1, and "
                     "stacked from 0 to 1, most likely first.")
    else:
        steps.append(f"3. No top-k or top-p: all {pipe.vocab_size:,} tokens stay in.")
        steps.append("4. Their probabilities are stacked from 0 to 1, most likely first.")
    if drawn is None and actual is not None:
        name = f"‘{escape(texts(actual))}’"
        row = next((r for r in pipe.rows if r.token_id == actual), None)
        if row is not None and row.kept:
            where = (f"the settings keep it, with {format_percent(row.p_final)}: a draw gives it when r falls in "
                     f"[{row.low:.4f}, {row.high:.4f})")
        elif row is not None:
            where = "the settings leave it out: with them, it could not have been drawn here"
        else:
            where = "it is not among the most likely shown"
        steps.append(f"5. The document has {name} here; {where}.")
    elif drawn is None:
        steps.append("5. Sample one token draws a uniform random number r between 0 and 1: the token whose "
                     "stretch holds r comes next.")
    else:
        where = f"seed {drawn.seed}, number {drawn.step:,} of its stream" if drawn.seed is not None else "no seed"
        chosen = f"‘{escape(texts(drawn.token_id))}’"
        steps.append(f"5. The uniform random number drawn was <b>r = {drawn.r:.4f}</b> ({where}). It falls in "
                     f"{chosen}'s stretch [{drawn.low:.4f}, {drawn.high:.4f}), so {chosen} came next "
                     f"({_rank_text(drawn.rank)}).")
    return steps


def _rank_text(rank: int) -> str:
    return "the most likely token after the settings" if rank == 1 else \
        f"the {_ordinal(rank)} most likely after the settings"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"


class DrawLine(QWidget):
    """The line from 0 to 1 the draw picks from: one stretch per kept
    token, most likely first, and a marker where r fell."""

    def __init__(self, parent: QWidget | None = None, theme: Theme | None = None) -> None:
        super().__init__(parent)
        self.theme = theme or system_theme()
        self.zoom = 1.0
        self.stretches: list[tuple[float, float, str, bool]] = []  # low, high, label, the drawn one?
        self.r: float | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(120)

    def set_line(self, stretches: list[tuple[float, float, str, bool]], r: float | None) -> None:
        self.stretches, self.r = stretches, r
        self.setToolTip("" if r is None else f"r = {r:.4f}")
        self.update()

    def _font(self) -> QFont:
        f = QFont(self.font())
        f.setPointSizeF(BASE_PT * self.zoom)
        return f

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        h = QFontMetricsF(self._font()).height()
        return QSize(300, int(h * 4.2))

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        return self.sizeHint()

    def paintEvent(self, _event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        font = self._font()
        p.setFont(font)
        fm = QFontMetricsF(font)
        lh = fm.height()
        margin = fm.horizontalAdvance("0.00")
        x0, x1 = margin * 0.6, self.width() - margin * 0.6
        top, bar_h = lh * 1.3, lh * 1.4
        width = max(1.0, x1 - x0)
        th = self.theme
        for i, (lo, hi, label, chosen) in enumerate(self.stretches):
            rect = QRectF(x0 + lo * width, top, max(1.0, (hi - lo) * width), bar_h)
            base = th.bar if i % 2 == 0 else mix(th.bar, th.window, 0.45)
            fill = th.highlight if chosen else base
            p.fillRect(rect, fill)
            p.setPen(QPen(th.window, 1))
            p.drawLine(rect.topRight(), rect.bottomRight())
            if label and fm.horizontalAdvance(label) + 6 < rect.width():
                p.setPen(text_on(fill))
                p.drawText(rect, Qt.AlignmentFlag.AlignCenter, label)
        p.setPen(QPen(th.text, 1))
        p.drawRect(QRectF(x0, top, width, bar_h))
        for value in (0.0, 0.5, 1.0):
            x = x0 + value * width
            p.drawLine(QPointF(x, top + bar_h), QPointF(x, top + bar_h + lh * 0.3))
            text = f"{value:g}"
            tw = fm.horizontalAdvance(text)
            p.drawText(QPointF(min(max(x - tw / 2, 0), self.width() - tw), top + bar_h + lh * 1.2), text)
        if self.r is not None:
            x = x0 + self.r * width
            path = QPainterPath()
            path.moveTo(x, top)
            path.lineTo(x - lh * 0.35, top - lh * 0.5)
            path.lineTo(x + lh * 0.35, top - lh * 0.5)
            path.closeSubpath()
            p.fillPath(path, QBrush(th.text))
            p.setPen(QPen(th.text, 2))
            p.drawLine(QPointF(x, top), QPointF(x, top + bar_h))
            text = f"r = {self.r:.4f}"
            tw = fm.horizontalAdvance(text)
            p.drawText(QPointF(min(max(x - tw / 2, 0), self.width() - tw), top - lh * 0.6), text)
        p.end()


class SamplingView(QWidget):
    """The settings' pipeline for the next token, or the draw that was just made."""

    def __init__(self, parent: QWidget | None = None, theme: Theme | None = None) -> None:
        super().__init__(parent)
        self.theme = theme or system_theme()
        self.zoom = 1.0
        self.pipe: Pipeline | None = None
        self.drawn: Draw | None = None
        self._texts: Texts | None = None
        self.actual: int | None = None  # the document's token at a position looked back at
        v = QVBoxLayout(self)
        v.setContentsMargins(0, 0, 0, 0)
        self.heading = QLabel()
        self.heading.setWordWrap(True)
        self.settings_label = QLabel()
        self.settings_label.setWordWrap(True)
        self.line = DrawLine(theme=self.theme)
        self.table = QTableWidget(0, len(COLUMNS))
        self._headers(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.steps = QLabel()
        self.steps.setWordWrap(True)
        self.steps.setTextFormat(Qt.TextFormat.RichText)
        self.steps.setAlignment(Qt.AlignmentFlag.AlignTop)
        for w in (self.heading, self.settings_label, self.line):
            v.addWidget(w)
        v.addWidget(self.table)
        v.addWidget(self.steps)
        v.addStretch(1)
        self._apply_fonts()
        self.clear("Load a model and write something: this tab shows how the next token is chosen.")

    # -- what is shown ---------------------------------------------------------------------
    def clear(self, message: str) -> None:
        self.pipe, self.drawn = None, None
        self.heading.setText(message)
        self.settings_label.setText("")
        self.line.set_line([], None)
        self.line.setVisible(False)
        self.table.setRowCount(0)
        self.steps.setText("")

    def set_pipeline(self, pipe: Pipeline, texts: Texts) -> None:
        """What the settings do to the next token's distribution (nothing drawn yet)."""
        self.actual = None
        self._show(pipe, None, texts, "How the next token will be chosen")

    def set_pipeline_at(self, pipe: Pipeline, texts: Texts, position: int, actual: int | None) -> None:
        """What the settings would have done where token ``position`` was
        predicted; ``actual``, the token that stands there, is marked."""
        self.actual = actual
        what = f", where the document has ‘{texts(actual)}’" if actual is not None else ""
        self._show(pipe, None, texts, f"How token {position:,} would be chosen{what}")

    def set_draw(self, drawn: Draw, texts: Texts, position: int) -> None:
        """The token just drawn at ``position`` and how."""
        self.actual = None
        self._show(drawn.pipeline, drawn, texts, f"How ‘{texts(drawn.token_id)}’ was chosen (position {position:,})")

    def _show(self, pipe: Pipeline, drawn: Draw | None, texts: Texts, heading: str) -> None:
        self.pipe, self.drawn, self._texts = pipe, drawn, texts
        self.heading.setText(heading)
        self.settings_label.setText(_settings_text(pipe))
        chosen = drawn.token_id if drawn is not None else self.actual
        self._fill_table(pipe, texts, chosen)
        self.line.set_line(self._stretches(pipe, texts, chosen), None if drawn is None or drawn.seed is None
                           else drawn.r)
        self.line.setVisible(True)
        self.steps.setText("<br>".join(story(pipe, texts, drawn, self.actual)))

    def _stretches(self, pipe: Pipeline, texts: Texts, chosen: int | None) -> list[tuple[float, float, str, bool]]:
        kept = sorted((r for r in pipe.rows if r.kept), key=lambda r: r.low)[:LINE_SEGMENTS]
        out = [(r.low, r.high, texts(r.token_id), r.token_id == chosen) for r in kept]
        end = out[-1][1] if out else 0.0
        if end < 1.0 - 1e-9:
            out.append((end, 1.0, "others", False))
        if chosen is not None and self.drawn is not None and not any(c for *_, c in out):
            out.append((self.drawn.low, self.drawn.high, texts(chosen), True))  # a rare token beyond the rows
        return out

    def _fill_table(self, pipe: Pipeline, texts: Texts, chosen: int | None) -> None:
        rows = list(pipe.rows)
        greedy = pipe.settings.is_greedy
        self.table.setRowCount(len(rows) + 1)
        th = self.theme
        bold = QFont(self.table.font())  # the table's own (smaller) size
        bold.setBold(True)
        for i, r in enumerate(rows):
            values = (texts(r.token_id), f"{r.logit:.1f}", "—" if greedy else f"{r.scaled:.1f}",
                      format_percent(r.p_model), "—" if greedy else format_percent(r.p_temperature),
                      format_percent(r.p_final) if r.kept else "out")
            for j, text in enumerate(values):
                item = QTableWidgetItem(text)
                if j in (1, 2):
                    item.setToolTip(f"{(r.logit, r.scaled)[j - 1]:.4f}")
                if j:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if not r.kept:
                    item.setForeground(QBrush(th.muted))
                if r.token_id == chosen:
                    item.setBackground(QBrush(th.highlight))
                    item.setForeground(QBrush(text_on(th.highlight)))
                    item.setFont(bold)
                self.table.setItem(i, j, item)
            if r.kept:
                self.table.item(i, 5).setToolTip(f"its stretch of the line: [{r.low:.4f}, {r.high:.4f})")
        others = pipe.vocab_size - len(rows)
        values = ("… others", "", "", format_percent(pipe.others_model),
                  "—" if greedy else format_percent(pipe.others_temperature), format_percent(pipe.others_final))
        for j, text in enumerate(values):
            item = QTableWidgetItem(text)
            item.setForeground(QBrush(th.muted))
            if j:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setToolTip(f"the other {others:,} tokens of the vocabulary, together")
            self.table.setItem(len(rows), j, item)
        t = pipe.settings.temperature
        self._headers([*COLUMNS[:4], COLUMNS[4] if greedy else f"p\nT = {t:g}", COLUMNS[5]])
        self._fit_table_height()

    def _fit_table_height(self) -> None:
        """All the rows show: the page around the view scrolls instead."""
        t = self.table
        t.setFixedHeight(t.horizontalHeader().sizeHint().height() + 2 * t.frameWidth()
                         + t.rowCount() * t.verticalHeader().defaultSectionSize()
                         + t.horizontalScrollBar().sizeHint().height() + 4)

    def _headers(self, labels: list[str]) -> None:
        self.table.setHorizontalHeaderLabels(labels)
        for j, tip in enumerate(HEADER_TIPS):
            self.table.horizontalHeaderItem(j).setToolTip(tip)

    # -- looks -------------------------------------------------------------------------------
    def table_text(self) -> list[list[str]]:
        """The table's cells as shown (for tests and copying)."""
        return [[self.table.item(i, j).text() for j in range(self.table.columnCount())]
                for i in range(self.table.rowCount())]

    def needed_width(self) -> int:
        """The width the table needs to show all its columns, with the view's margins."""
        t = self.table
        header = t.horizontalHeader()  # what each column needs, not what it has (the last one stretches)
        columns = sum(max(t.sizeHintForColumn(j), header.sectionSizeHint(j)) for j in range(t.columnCount()))
        return columns + t.verticalScrollBar().sizeHint().width() + 2 * t.frameWidth() + 16

    def set_theme(self, theme: Theme) -> None:
        self.theme = self.line.theme = theme
        apply_widget_palette(self, theme)
        if self.pipe is not None and self._texts is not None:  # the rows' colours follow the theme
            self._show(self.pipe, self.drawn, self._texts, self.heading.text())
        self.line.update()

    def set_zoom(self, factor: float) -> None:
        self.zoom = self.line.zoom = factor
        self._apply_fonts()
        self.line.updateGeometry()
        self.line.update()

    def _apply_fonts(self) -> None:
        f = QFont(self.font())
        f.setPointSizeF(BASE_PT * self.zoom)
        for w in (self.settings_label, self.steps):
            w.setFont(f)
        small = QFont(f)  # six columns in the side panel's width
        small.setPointSizeF(BASE_PT * TABLE_SCALE * self.zoom)
        self.table.setFont(small)
        self.table.horizontalHeader().setFont(small)
        h = QFont(f)
        h.setBold(True)
        h.setPointSizeF(BASE_PT * 1.25 * self.zoom)
        self.heading.setFont(h)
        self.table.verticalHeader().setDefaultSectionSize(int(QFontMetricsF(small).height() * 1.35))
        self._fit_table_height()

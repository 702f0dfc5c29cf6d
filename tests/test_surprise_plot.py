"""SurprisePlot: bits per token along the document, its summary, clicks and spans."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from lmdesk.ui.surprise_plot import SurprisePlot, format_perplexity, sliding_mean, summary_line
from lmdesk.ui.theme import DARK, HIGH_CONTRAST, LIGHT


@pytest.fixture
def plot(qtbot):
    w = SurprisePlot(theme=LIGHT)
    qtbot.addWidget(w)
    w.resize(900, 220)
    return w


def shown(qtbot, w):
    w.show()
    qtbot.waitExposed(w)
    qtbot.wait(20)
    return w


def viewport_point(w: SurprisePlot, x: float, y: float) -> QPoint:
    return w.plot_widget.mapFromScene(w.view_box.mapViewToScene(QPointF(x, y)))


def test_summary_of_the_document(plot):
    assert plot.summary_text() == "—"
    plot.set_bits([None, 1.0, 3.0, 2.0])
    text = plot.summary_text()
    assert text == "3 tokens · 6.0 bits · 2.00 bits/token · perplexity 4.00"
    assert "3 tokens" in text and "6.0 bits" in text and "2.00 bits/token" in text and "perplexity 4.00" in text


def test_empty_until_a_token_is_scored(plot):
    assert plot.is_empty() and plot.point_count() == 0
    plot.set_bits([None])  # one token: nothing predicted it
    assert plot.is_empty() and plot.summary_text() == "—"
    plot.set_bits([None, 0.5])
    assert not plot.is_empty() and plot.point_count() == 1


def test_summary_formats():
    assert summary_line([None, 2.5]) == "1 token · 2.5 bits · 2.50 bits/token · perplexity 5.66"
    assert summary_line([None]) == "—"
    long = summary_line([None] + [3.28] * 312)
    assert long.startswith("312 tokens · 1,023.4 bits · 3.28 bits/token · perplexity 9.71")
    assert format_perplexity(4.0) == "4.00"
    assert format_perplexity(12.345) == "12.3"
    assert format_perplexity(1234.5) == "1,234"


def test_sliding_mean_skips_missing_values():
    values = np.array([np.nan, 1.0, 3.0, 2.0, 6.0])
    mean = sliding_mean(values, 2)  # centred: positions i-1 and i
    assert np.isnan(mean[0])
    assert mean[1:] == pytest.approx([1.0, 2.0, 2.5, 4.0])


def test_click_emits_the_nearest_index(plot, qtbot):
    plot.set_bits([None, 1.0, 3.0, 2.0, 0.5])
    shown(qtbot, plot)
    viewport = plot.plot_widget.viewport()
    with qtbot.waitSignal(plot.pointClicked, timeout=1000) as blocker:
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=viewport_point(plot, 2.0, 3.0))
    assert blocker.args == [2]
    # near x = 3 but far below its point: the x decides
    with qtbot.waitSignal(plot.pointClicked, timeout=1000) as blocker:
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=viewport_point(plot, 3.3, 0.2))
    assert blocker.args == [3]
    # on the first token, which has no point: the nearest scored one
    with qtbot.waitSignal(plot.pointClicked, timeout=1000) as blocker:
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=viewport_point(plot, 0.0, 1.0))
    assert blocker.args == [1]


def test_selection_shows_a_region_without_a_signal(plot, qtbot):
    plot.set_bits([None, 1.0, 3.0, 2.0, 0.5, 4.0])
    assert plot.region_bounds() is None
    with qtbot.assertNotEmitted(plot.spanChanged):
        plot.set_selection(2, 5)
    assert plot.region_bounds() == pytest.approx((1.5, 4.5))  # tokens 2, 3, 4
    assert plot.selection() == (2, 5)
    assert plot.selection_text() == "3 tokens · 1.83 bits/token"
    plot.set_selection(None, None)
    assert plot.region_bounds() is None and plot.selection_text() == ""


def test_dragging_on_the_plot_selects_a_span(plot, qtbot):
    plot.set_bits([None] + [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    shown(qtbot, plot)
    viewport = plot.plot_widget.viewport()
    a, b = viewport_point(plot, 2.1, 1.0), viewport_point(plot, 5.8, 1.0)
    with qtbot.waitSignal(plot.spanChanged, timeout=1000) as blocker:
        QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
        for k in range(1, 6):
            QTest.mouseMove(viewport, a + (b - a) * k / 5)
        QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    assert blocker.args == [2, 7]  # tokens 2 … 6, stop exclusive
    assert plot.region_bounds() == pytest.approx((1.5, 6.5))


def test_dragging_the_region_emits_the_new_span(plot, qtbot):
    plot.set_bits([None] + [1.0] * 20)
    plot.set_selection(3, 6)
    shown(qtbot, plot)
    viewport = plot.plot_widget.viewport()
    a, b = viewport_point(plot, 4.0, 0.5), viewport_point(plot, 9.0, 0.5)
    with qtbot.waitSignal(plot.spanChanged, timeout=1000) as blocker:
        QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
        for k in range(1, 6):
            QTest.mouseMove(viewport, a + (b - a) * k / 5)
        QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    assert blocker.args == [8, 11]  # moved by 5 tokens, snapped to whole tokens
    assert plot.region_bounds() == pytest.approx((7.5, 10.5))


def test_y_range_and_current_marker(plot):
    plot.set_bits([None, 1.0, 3.0, 2.0])
    (x0, x1), (y0, y1) = plot.view_box.viewRange()
    assert y1 == pytest.approx(3.3)
    assert x0 <= 0 and x1 >= 3
    plot.set_bits([None, 0.1, 0.2])
    assert plot.view_box.viewRange()[1][1] == pytest.approx(1.0)
    plot.set_current(2)
    assert plot.current_index() == 2
    plot.set_current(None)
    assert plot.current_index() is None


def test_five_thousand_points(plot, qtbot):
    rng = np.random.default_rng(0)
    bits = [None] + [float(b) for b in rng.gamma(1.5, 2.0, 4999)]
    shown(qtbot, plot)
    t0 = time.perf_counter()
    plot.set_bits(bits)
    qtbot.wait(1)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0
    total = sum(bits[1:])
    assert plot.summary_text().startswith(f"4,999 tokens · {total:,.1f} bits")
    # more points than pixel columns: in each run of tokens sharing a column, the lowest and highest
    b = plot.bucket()
    assert b > 1 and 4999 / b <= plot.view_box.boundingRect().width() < 3 * 5000 / b
    want = set()
    for start in range(0, 5000, b):
        run = [(bits[i], i) for i in range(start, min(start + b, 5000)) if bits[i] is not None]
        want |= {min(run)[1], max(run)[1]}
    assert plot.drawn_indices() == sorted(want)
    assert plot.nearest_index(4999.4) == 4999
    assert plot.view_box.viewRange()[1][1] == pytest.approx(max(bits[1:]) * 1.1)
    # a later update of the tail only gives the same result as a full one
    bits2 = bits[:4000] + [1.0] * 1001
    plot.set_bits(bits2, first_changed=4000)
    full = SurprisePlot(theme=LIGHT)
    qtbot.addWidget(full)
    full.resize(900, 220)
    shown(qtbot, full)
    full.set_bits(bits2)
    assert plot.summary_text() == full.summary_text()
    assert plot.drawn_indices() == full.drawn_indices()
    # growing one token at a time draws what drawing it all at once does
    for k in range(5001, 5040):
        bits2.append(2.0 + (k % 8))  # each higher than the last: a column's old highest point gives way
        plot.set_bits(bits2, first_changed=k)
    full.set_bits(bits2)
    assert plot.drawn_indices() == full.drawn_indices()


def test_while_the_document_grows_the_x_axis_widens_in_steps_and_fits_it_again_at_the_end(plot, qtbot):
    """A new x range redraws the axes and every point: at each token of 8,000 that held the
    window up 3-4 ms more while the model wrote."""
    shown(qtbot, plot)
    bits = [None] + [1.0 + (i % 5) for i in range(1, 60)]
    plot.set_bits(bits)
    assert plot.view_box.viewRange()[0] == pytest.approx([-0.5, 59.5])
    rights, sizes = [], []
    for n in range(61, 700):
        bits.append(2.0)
        plot.set_bits(bits, first_changed=n - 1, growing=True)
        right = plot.view_box.viewRange()[0][1]
        assert n - 0.5 <= right <= n - 0.5 + 2 * max(16, n // 8)  # every token shown, with room to spare
        rights.append(right)
        sizes.append(plot.point_size())
    assert 2 <= len(set(rights)) <= len(rights) / 12  # widened now and then, not at each token
    assert rights == sorted(rights)
    # the points shrink as they crowd, with the span: a new size re-made every point at each token
    assert sizes[0] > sizes[-1] and len(set(sizes)) <= len(set(rights))
    plot.set_bits(bits, first_changed=len(bits))  # the work is over
    assert plot.view_box.viewRange()[0] == pytest.approx([-0.5, 698.5])
    # the points are where they are without the room
    assert plot.nearest_index(698.2) == 698 and plot.drawn_indices()[-1] == 698


def test_no_current_token_set_again_does_not_repaint_the_plot(plot, qtbot):
    """The chart sets "no current token" on the plot each time it shows the end of the
    document; that redrew the whole plot (4-7 ms with thousands of points) for nothing."""
    from PySide6.QtCore import QEvent, QObject

    class Paints(QObject):
        count = 0

        def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
            if event.type() == QEvent.Type.Paint:
                self.count += 1
            return False

    shown(qtbot, plot)
    plot.set_bits([None] + [1.0 + (i % 5) for i in range(1, 300)])
    plot.set_current(40)
    qtbot.wait(30)
    paints = Paints()
    plot.plot_widget.viewport().installEventFilter(paints)
    plot.set_current(None)  # the ring goes: repainted
    qtbot.waitUntil(lambda: paints.count > 0)
    qtbot.wait(30)
    seen = paints.count
    plot.set_current(None)
    plot.set_current(None)
    qtbot.wait(50)
    assert paints.count == seen
    assert plot.current_index() is None


@pytest.mark.parametrize("theme", [LIGHT, DARK, HIGH_CONTRAST])
def test_themes_and_zoom_keep_the_content(plot, theme):
    plot.set_bits([None, 1.0, 3.0, 2.0])
    plot.set_selection(1, 3)
    plot.set_theme(theme)
    plot.set_zoom(1.5)
    assert plot.summary_text() == "3 tokens · 6.0 bits · 2.00 bits/token · perplexity 4.00"
    assert plot.region_bounds() == pytest.approx((0.5, 2.5))

"""DistributionView: the next-token bars, their labels, clicks and animation."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor

from lmdesk.ui.distribution_view import EMPTY_TEXT, MARKER, DistributionView, format_percent, format_percent_fine
from lmdesk.ui.theme import DARK, HIGH_CONTRAST, LIGHT

ENTRIES = [
    (3681, "·Paris", 0.951),
    (260, "·the", 0.03),
    (2117, "·a", 0.0152),
    (4412, "·France", 0.0003),
    (198, "\\n", 0.00004),
]
SAMPLED = {3681: 0.99, 260: 0.008, 2117: 0.002, 4412: 0.0, 198: 0.0}


@pytest.fixture
def view(qtbot):
    w = DistributionView(theme=LIGHT)
    qtbot.addWidget(w)
    w.resize(480, 420)
    return w


def shown(qtbot, w):
    w.show()
    qtbot.waitExposed(w)
    qtbot.wait(20)  # let the layout settle
    return w


def viewport_point(w: DistributionView, x: float, row: float) -> QPoint:
    """Where the view coordinates (probability x, row) are on the plot's viewport."""
    scene = w.view_box.mapViewToScene(QPointF(x, row))
    return w.plot_widget.mapFromScene(scene)


def test_percent_formats():
    assert format_percent(0.951) == "95.1 %"
    assert format_percent(0.0003) == "0.03 %"
    assert format_percent(0.00004) == "<0.01 %"
    assert format_percent(0.0) == "0 %"
    assert format_percent(1.0) == "100.0 %"
    assert format_percent_fine(0.0000123) == "0.0012 %"
    assert format_percent_fine(0.5) == "50.0 %"


def test_labels_in_order_with_percentages(view):
    view.set_animated(False)
    view.set_distribution(ENTRIES, title="Next token")
    assert view.labels() == ["·Paris  95.1 %", "·the  3.0 %", "·a  1.5 %", "·France  0.03 %", "\\n  <0.01 %"]
    assert view.ids() == [3681, 260, 2117, 4412, 198]
    assert view.title() == "Next token"
    assert not view.is_empty()


def test_bar_values_are_the_probabilities(view):
    view.set_animated(False)
    view.set_distribution(ENTRIES)
    assert view.bar_values() == pytest.approx([0.951, 0.03, 0.0152, 0.0003, 0.00004])
    assert view.back_values() == []
    assert "model's own" in view.legend_text() and "after sampling" not in view.legend_text()


def test_sampled_in_front_original_behind(view):
    view.set_animated(False)
    view.set_distribution(ENTRIES, sampled=SAMPLED)
    assert view.bar_values() == pytest.approx([0.99, 0.008, 0.002, 0.0, 0.0])
    assert view.back_values() == pytest.approx([0.951, 0.03, 0.0152, 0.0003, 0.00004])
    assert view.labels()[0] == "·Paris  99.0 %"
    assert view.labels()[3] == "·France  0 %"
    assert "after sampling settings" in view.legend_text() and "model's own" in view.legend_text()


def test_click_bar_emits_the_rows_id(view, qtbot):
    view.set_animated(False)
    view.set_distribution(ENTRIES)
    with qtbot.waitSignal(view.candidateClicked, timeout=500) as blocker:
        view.click_bar(2)
    assert blocker.args == [2117]
    with pytest.raises(IndexError):
        view.click_bar(5)


def test_mouse_click_on_a_bar_and_on_a_label(view, qtbot):
    view.set_animated(False)
    view.set_distribution(ENTRIES)
    shown(qtbot, view)
    viewport = view.plot_widget.viewport()
    # the middle of the second bar
    with qtbot.waitSignal(view.candidateClicked, timeout=1000) as blocker:
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=viewport_point(view, 0.015, 1))
    assert blocker.args == [260]
    # the first bar, near its end
    with qtbot.waitSignal(view.candidateClicked, timeout=1000) as blocker:
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=viewport_point(view, 0.9, 0))
    assert blocker.args == [3681]
    # the label of the fourth row (left of x = 0, where the token text is)
    label_x = view.view_box.mapSceneToView(view.view_box.sceneBoundingRect().topLeft()).x() / 2
    assert label_x < 0
    with qtbot.waitSignal(view.candidateClicked, timeout=1000) as blocker:
        qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=viewport_point(view, label_x, 3))
    assert blocker.args == [4412]


def test_hover_shows_pointing_hand_and_a_tooltip(view, qtbot):
    view.set_animated(False)
    view.set_distribution(ENTRIES, sampled=SAMPLED)
    shown(qtbot, view)
    scene_pt = view.view_box.mapViewToScene(QPointF(0.01, 1))
    items = view.plot_widget.scene().items(scene_pt)
    with_tip = [it for it in items if it.toolTip()]
    assert with_tip, "no tooltip on the bar's row"
    tip = with_tip[0].toolTip()
    assert "token id 260" in tip and "3.0 %" in tip and "after sampling settings: 0.80 %" in tip
    assert any(it.hasCursor() and it.cursor().shape() == Qt.CursorShape.PointingHandCursor for it in items)


def test_highlight_marks_the_actual_token(view):
    view.set_animated(False)
    view.set_distribution(ENTRIES, highlight=2117, title="At position 12: what the model predicted before ·a")
    labels = view.labels()
    assert labels[2] == f"·a  1.5 %  {MARKER}"
    assert [MARKER in label for label in labels] == [False, False, True, False, False]
    assert "actual next token" in view.legend_text()


def test_bar_colours_on_screen(view, qtbot):
    view.set_animated(False)
    view.set_distribution(ENTRIES[:3], highlight=260)
    shown(qtbot, view)
    image = view.plot_widget.grab().toImage()
    dpr = image.devicePixelRatio()

    def pixel(x: float, row: int) -> QColor:
        p = viewport_point(view, x, row)
        return image.pixelColor(round(p.x() * dpr), round(p.y() * dpr))

    assert pixel(0.5, 0).name() == LIGHT.bar.name()  # a candidate: the theme's bar colour
    assert pixel(0.015, 1).name() == LIGHT.highlight.name()  # the actual token: highlighted
    assert pixel(0.5, 1).name() != LIGHT.bar.name()  # past the end of a short bar: no bar


def test_extra_line_for_an_actual_token_outside_the_list(view, qtbot):
    view.set_animated(False)
    view.set_distribution(ENTRIES, highlight=9123, extra=(9123, "·Caf", 0.0000123, 7399))
    labels = view.labels()
    assert len(labels) == 6
    assert labels[-1] == f"… rank 7,399: ·Caf  0.0012 %  {MARKER}"
    assert not any(MARKER in label for label in labels[:-1])
    assert view.ids()[-1] == 9123
    with qtbot.waitSignal(view.candidateClicked, timeout=500) as blocker:
        view.click_bar(5)
    assert blocker.args == [9123]
    # an "extra" that is in the list after all is not repeated below it
    view.set_distribution(ENTRIES, highlight=260, extra=(260, "·the", 0.03, 2))
    assert len(view.labels()) == 5


def test_extra_line_is_clickable_with_the_mouse(view, qtbot):
    view.set_animated(False)
    view.set_distribution(ENTRIES, highlight=9123, extra=(9123, "·Caf", 0.0000123, 7399))
    shown(qtbot, view)
    with qtbot.waitSignal(view.candidateClicked, timeout=1000) as blocker:
        qtbot.mouseClick(view.plot_widget.viewport(), Qt.MouseButton.LeftButton, pos=viewport_point(view, 0.3, 5))
    assert blocker.args == [9123]


def test_bars_animate_from_old_to_new(view, qtbot):
    view.set_animated(False)
    view.set_distribution([(1, "a", 0.6), (2, "b", 0.3), (3, "c", 0.1)])
    view.set_animated(True)
    new = [(2, "b", 0.7), (1, "a", 0.2), (4, "d", 0.1)]
    view.set_distribution(new)
    start = view.bar_values()
    # kept tokens start from their old bars (matched by id, though their rows changed); new ones from 0
    assert start == pytest.approx([0.3, 0.6, 0.0])
    assert start != pytest.approx([0.7, 0.2, 0.1])
    qtbot.wait(100)
    middle = view.bar_values()
    assert 0.3 < middle[0] < 0.7 and 0.2 < middle[1] < 0.6
    qtbot.wait(400)
    assert view.bar_values() == pytest.approx([0.7, 0.2, 0.1])


def test_set_animated_false_jumps(view, qtbot):
    view.set_distribution([(1, "a", 0.6), (2, "b", 0.4)])
    assert view.bar_values() == pytest.approx([0.0, 0.0])  # animating from nothing
    view.set_animated(False)  # stops the running animation at its end
    assert view.bar_values() == pytest.approx([0.6, 0.4])
    view.set_distribution([(1, "a", 0.1), (2, "b", 0.9)])
    assert view.bar_values() == pytest.approx([0.1, 0.9])


def test_empty_shows_the_placeholder(view):
    assert view.is_empty()
    assert view.placeholder.text() == EMPTY_TEXT == "No prediction yet: the document is empty."
    assert not view.placeholder.isHidden()
    view.set_animated(False)
    view.set_distribution(ENTRIES)
    assert view.placeholder.isHidden()
    view.set_distribution([])
    assert not view.placeholder.isHidden()
    assert view.labels() == [] and view.bar_values() == []


def test_footer(view):
    assert view.entropy_text() == ""
    view.set_footer("entropy 5.17 bits · temperature 0.7")
    assert view.entropy_text() == "entropy 5.17 bits · temperature 0.7"


def test_zoom_scales_the_label_font(view, qtbot):
    view.set_animated(False)
    view.set_distribution(ENTRIES[:3])
    shown(qtbot, view)
    view.set_zoom(1.0)
    small = view.label_font().pointSizeF()
    view.set_zoom(1.5)
    big = view.label_font().pointSizeF()
    assert big == pytest.approx(small * 1.5)


def test_crowded_rows_shrink_the_labels(view, qtbot):
    view.set_animated(False)
    view.set_zoom(1.5)
    view.set_distribution(ENTRIES[:3])
    shown(qtbot, view)
    roomy = view.label_font().pointSizeF()
    view.set_distribution([(i, f"t{i}", 1 / 40) for i in range(40)])
    assert view.label_font().pointSizeF() < roomy


@pytest.mark.parametrize("theme", [LIGHT, DARK, HIGH_CONTRAST])
def test_themes_keep_the_content(view, theme):
    view.set_animated(False)
    view.set_distribution(ENTRIES, sampled=SAMPLED, highlight=260)
    before = view.labels()
    view.set_theme(theme)
    assert view.labels() == before
    assert view.bar_values() == pytest.approx([0.99, 0.008, 0.002, 0.0, 0.0])


@pytest.mark.parametrize("width", [480, 300, 220])
def test_the_extra_line_fits_a_narrow_chart(view, qtbot, width):
    """"… rank 3,015: … ◀ actual" shortens to fit the chart's width instead of
    being cut off at its edge (the rank and the token stay readable)."""
    view.set_animated(False)
    view.resize(width, 420)
    shown(qtbot, view)
    view.set_distribution(ENTRIES, highlight=9123, extra=(9123, "·Photosynthesis", 0.0000123, 3015))
    qtbot.wait(20)
    drawn = view.extra_text_width()
    room = view.plot_widget.viewport().width()
    assert 0 < drawn <= room
    html = view._extra_item.textItem.toHtml()
    assert "3,015" in html  # the rank is never dropped
    if width == 480:
        assert "… rank 3,015:" in html and MARKER in html  # with room, the whole line


def test_a_new_distribution_sets_fonts_only_on_rows_whose_font_changes(view, qtbot, monkeypatch):
    """While the model writes, a new distribution comes five times a second; setting a
    label's font again lays its text out again, so only a change of font sets one."""
    import pyqtgraph as pg

    view.set_animated(False)
    shown(qtbot, view)
    view.set_distribution(ENTRIES, highlight=260)
    calls = []
    real = pg.TextItem.setFont
    monkeypatch.setattr(pg.TextItem, "setFont", lambda item, font: (calls.append(font.bold()), real(item, font)))
    view.set_distribution([(i + 1000, f"·w{i}", p) for i, (_, _, p) in enumerate(ENTRIES)], highlight=1001)
    # the highlight moves from row 1 to row 1 (another token, same row): no font changes
    assert calls == []
    view.set_distribution(ENTRIES, highlight=2117)  # from row 1 to row 2: its name and percentage, both ways
    assert sorted(calls) == [False, False, True, True]
    rows = [(view._name_items[r].textItem.font().bold(), view._pct_items[r].textItem.font().bold())
            for r in range(len(ENTRIES))]
    assert rows == [(False, False), (False, False), (True, True), (False, False), (False, False)]


def test_rows_made_beforehand_are_used_by_the_first_distribution(view, qtbot):
    view.set_animated(False)
    shown(qtbot, view)
    view.prepare_rows(len(ENTRIES) + 1)
    before = len(view.view_box.addedItems)
    assert view.labels() == []  # made, not shown
    view.set_distribution(ENTRIES, extra=(77, "·far", 0.0001, 900))
    assert len(view.view_box.addedItems) == before  # no item made at the first drawing
    assert len(view.labels()) == len(ENTRIES) + 1 and view.labels()[0].startswith("·Paris")

"""The Sampling tab: how the next token is chosen, and the draw that chose it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmdesk.ui.distribution_view import format_percent
from window_driver import end_turn, idle, open_window, run_op, tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory, "sampling")


@pytest.fixture
def win(qtbot, tiny_dir):
    w = open_window(qtbot, tiny_dir)
    yield w
    w.close()


def test_the_tab_shows_the_pipeline_of_the_next_token(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    win.right_tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: win.sampling_view.pipe is not None, timeout=10_000)
    rows = win.sampling_view.table_text()
    nxt = win.state.next  # the chart's own numbers, from the statistics of the document
    shown = len(win.sampling_view.pipe.rows)
    assert [r[0] for r in rows[:shown]] == [win.texts(i).display for i in nxt.ids[:shown]]
    assert [r[3] for r in rows[:shown]] == [format_percent(p) for p in nxt.probs[:shown]]
    assert rows[-1][0] == "… others" and win.sampling_view.table.item(len(rows) - 1, 0).toolTip().startswith(
        f"the other {win.info.vocab_size - shown:,} tokens")
    # temperature 0.7: every logit divided by 0.7
    table = win.sampling_view.table
    logits = [float(table.item(i, 1).toolTip()) for i in range(shown)]  # 4 decimals; the cells show 1
    assert all(float(r[1]) == pytest.approx(x, abs=0.05) for r, x in zip(rows, logits))
    assert all(float(table.item(i, 2).toolTip()) == pytest.approx(x / 0.7, abs=2e-4) for i, x in enumerate(logits))
    assert logits == sorted(logits, reverse=True)
    # a new temperature is shown at once
    win.temperature.setValue(2.0)
    qtbot.waitUntil(lambda: win.sampling_view.pipe.settings.temperature == 2.0, timeout=10_000)
    assert "flattens" in win.sampling_view.steps.text()
    win.temperature.setValue(0.5)
    qtbot.waitUntil(lambda: win.sampling_view.pipe.settings.temperature == 0.5, timeout=10_000)
    assert "sharpens" in win.sampling_view.steps.text()


def test_sample_one_token_shows_the_number_drawn_and_steps_like_generate(qtbot, win) -> None:
    """With a fixed seed the k-th token of the reply takes the seed stream's
    k-th number, whether sampled step by step or by Generate."""
    end_turn(qtbot, win, "hi")
    start = len(win.state.tokens)
    win.seed.setValue(5)
    win.fixed_seed.setChecked(True)
    idle(qtbot, win)
    stream = np.random.default_rng(5).random(4)
    stepped = []
    for k in range(4):
        run_op(qtbot, win, win.sample_step.click, "step")
        drawn = win.sampling_view.drawn
        assert win.right_tabs.currentIndex() == 1  # the draw is on show
        assert drawn is not None and drawn.r == stream[k] and drawn.seed == 5 and drawn.step == k + 1
        assert drawn.low <= drawn.r < drawn.high
        assert win.state.tokens[-1].id == drawn.token_id
        assert f"r = {stream[k]:.4f}" in win.sampling_view.steps.text()
        stepped.append(drawn.token_id)
    run_op(qtbot, win, win.reset_response.click, "reset_response")
    assert len(win.state.tokens) == start
    win.max_tokens.setValue(4)
    idle(qtbot, win)
    run_op(qtbot, win, win.generate.click, "generate")
    assert [t.id for t in win.state.tokens[start:]] == stepped


def test_the_table_gets_the_room_it_needs_once(qtbot, win) -> None:
    """The side panel widens until the Sampling table's columns show, and
    stays that wide however often the table is filled again."""
    win.resize(1280, 800)
    end_turn(qtbot, win, "hi")
    win.right_tabs.setCurrentIndex(1)
    qtbot.waitUntil(lambda: win.sampling_view.pipe is not None, timeout=10_000)
    qtbot.wait(50)
    table = win.sampling_view.table
    first = win.split.sizes()
    assert table.viewport().width() >= sum(table.sizeHintForColumn(j) for j in range(table.columnCount()))
    for t in (1.1, 1.2, 1.3):
        win.temperature.setValue(t)
        qtbot.waitUntil(lambda t=t: win.sampling_view.pipe.settings.temperature == t, timeout=10_000)
        qtbot.wait(20)
    assert win.split.sizes() == first


def test_a_clicked_token_shows_what_the_settings_would_have_done_there(qtbot, win) -> None:
    """For a chip, the pipeline of the prediction that chose it: its first
    candidates are those of the chart at that position, the chip's own token marked."""
    end_turn(qtbot, win, "hello there, how are you")
    win.right_tabs.setCurrentIndex(1)
    i = len(win.state.tokens) - 8
    win.on_token_clicked(i)
    view = win.sampling_view
    qtbot.waitUntil(lambda: view.pipe is not None and view.actual == win.state.tokens[i].id, timeout=20_000)
    st = win.state.tokens[i].stats  # the decoder's own statistics at that position
    shown = len(view.pipe.rows)
    assert [r.token_id for r in view.pipe.rows] == list(st.top_ids[:shown])
    assert [r.p_model for r in view.pipe.rows] == pytest.approx(list(st.top_probs[:shown]), abs=1e-5)
    assert f"How token {i:,} would be chosen" in view.heading.text()
    assert f"The document has ‘{win.texts(win.state.tokens[i].id).display}’ here" in view.steps.text()
    win.temperature.setValue(1.5)  # new settings: the same position again, under them
    qtbot.waitUntil(lambda: view.pipe.settings.temperature == 1.5 and view.actual is not None, timeout=20_000)

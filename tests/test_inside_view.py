"""The Inside tab: the logit lens and the attention of the clicked token,
checked against the document's own statistics (computed by the decoder,
not the inspection graph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lmdesk.ui.inside_view import short_percent
from window_driver import end_turn, idle, open_window, tiny_model


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory, "inside")


@pytest.fixture
def win(qtbot, tiny_dir):
    w = open_window(qtbot, tiny_dir)
    yield w
    w.close()


def shown_position(win) -> int | None:
    shown = win.inside_view.shown
    return None if shown is None else shown.inspection.position


def test_the_lens_at_the_end_is_the_next_token_distribution(qtbot, win) -> None:
    end_turn(qtbot, win, "The capital of France is Paris.")
    n = len(win.state.tokens)
    win.right_tabs.setCurrentIndex(2)
    qtbot.waitUntil(lambda: shown_position(win) == n, timeout=20_000)
    rows = win.inside_view.lens_text()
    n_layer = win.inside_view.inspection.layers[-1].layer
    assert len(rows) == n_layer and rows[0][0] == f"{n_layer} out" and rows[-1][0] == "1"
    nxt = win.state.next
    want = [f"{win.texts(i).display} {short_percent(p)}" for i, p in zip(nxt.ids[:5], nxt.probs[:5])]
    assert rows[0][1:6] == want  # the output layer's lens is the model's own next-token distribution


def test_a_clicked_token_shows_its_rank_and_the_attention_on_the_chips(qtbot, win) -> None:
    end_turn(qtbot, win, "The capital of France is Paris.")
    win.right_tabs.setCurrentIndex(2)
    i = len(win.state.tokens) - 6
    win.on_token_clicked(i)
    qtbot.waitUntil(lambda: shown_position(win) == i, timeout=20_000)
    tok = win.state.tokens[i]
    rows = win.inside_view.lens_text()
    assert rows[0][-1] == f"#{tok.stats.rank:,} {short_percent(tok.stats.prob)}"  # the decoder's own rank of it
    assert f"predicting ‘{win.texts(tok.id).display}’ (token {i})" in win.inside_view.heading.text()
    query, weights, label = win.doc_view.attention()
    assert query == i - 1 and weights.shape == (i,) and abs(weights.sum() - 1) < 1e-5
    assert label == "layer 1, average of 4 heads"
    win.inside_view.layer.setValue(2)
    win.inside_view.head.setCurrentIndex(2)  # head 2
    query, weights2, label = win.doc_view.attention()
    assert label == "layer 2, head 2" and not np.allclose(weights, weights2) and abs(weights2.sum() - 1) < 1e-5
    assert "attends to it with weight" in win.doc_view.tooltip_text(0)
    win.right_tabs.setCurrentIndex(0)  # the tint belongs to the Inside tab
    assert win.doc_view.attention() is None
    win.on_token_clicked(0)
    win.right_tabs.setCurrentIndex(2)
    assert "nothing predicted it" in win.inside_view.heading.text()
    idle(qtbot, win)

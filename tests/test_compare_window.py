"""The compare window: a second model scores the document's text, both lined
up word by word; checked against each model's own statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmdesk.convert.gguf_import import import_gguf
from lmdesk.ui.intents import LoadText
from window_driver import idle, open_window, run_op
from tiny_gguf import write_tiny_gguf
from tiny_vocab import write_tiny_spm_gguf


OTHER_TEMPLATE = ("{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}"
                  "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("compare")
    import_gguf(write_tiny_gguf(tmp / "a.gguf", ctx=128, seed=3), tmp / "a")
    # the second model writes conversations in another format (Gemma's markers, as plain text)
    import_gguf(write_tiny_spm_gguf(tmp / "b.gguf", seed=2), tmp / "b", chat_template=OTHER_TEMPLATE)
    return tmp / "a", tmp / "b"


def test_a_second_model_scores_the_text_and_can_be_closed(qtbot, models) -> None:
    first, second = models
    win = open_window(qtbot, first)
    try:
        run_op(qtbot, win, lambda: win.send(LoadText("the cat sat on the mat. the dog ran.")), "load_text")
        win.act_compare.trigger()
        assert win.compare_window.isVisible()
        run_op(qtbot, win, lambda: win.compare_view.loadRequested.emit(str(second)), "load_second")
        qtbot.waitUntil(lambda: win._compared is not None, timeout=20_000)
        c = win._compared
        a, b = c.figures
        # A's figures are the document's own: the sum of its tokens' bits
        own = sum(t.stats.bits for t in win.state.tokens if t.stats is not None)
        assert a.total_bits == pytest.approx(own, rel=1e-9)
        # each model's word bits add up to its own total
        assert c.alignment.bits[:, 0].sum() == pytest.approx(a.total_bits, rel=1e-9)
        assert c.alignment.bits[:, 1].sum() == pytest.approx(b.total_bits, rel=1e-9)
        assert "".join(w.text for w in c.alignment.words) == "the cat sat on the mat. the dog ran."
        assert win.compare_view.close_button.isEnabled()
        # the document moves on: the window says the comparison is of the text before
        win.dist.click_bar(0)
        idle(qtbot, win)
        assert "has changed since" in win.compare_view.status.text()
        run_op(qtbot, win, win.compare_view.close_button.click, "close_second")
        qtbot.waitUntil(lambda: win._compared is None, timeout=5_000)  # the window hears of it
        assert win.client.worker.second is None
        assert not win.compare_view.close_button.isEnabled()
    finally:
        win.close()


def test_a_conversation_is_compared_on_its_messages_each_model_in_its_own_format(qtbot, models) -> None:
    from lmdesk.engine.document import CONTENT
    from window_driver import end_turn

    first, second = models
    win = open_window(qtbot, first)
    try:
        win.system_edit.setPlainText("")
        end_turn(qtbot, win, "the cat sat on the mat")
        win.act_compare.trigger()
        run_op(qtbot, win, lambda: win.compare_view.loadRequested.emit(str(second)), "load_second")
        qtbot.waitUntil(lambda: win._compared is not None, timeout=20_000)
        c = win._compared
        assert c.markup_bits is not None and "own chat format" in win.compare_view.status.text()
        assert "".join(w.text for w in c.alignment.words) == "the cat sat on the mat"
        a, b = c.figures
        # A's bits on the message are those of its own content tokens, from the document's statistics
        tokens, segments = win.state.tokens, win.state.segments
        own = sum(t.stats.bits for t in tokens
                  if t.kind == CONTENT and segments[t.segment].role == "user" and t.stats is not None)
        assert a.total_bits == pytest.approx(own, rel=1e-9)
        whole = sum(t.stats.bits for t in tokens if t.stats is not None)
        assert c.markup_bits[0] == pytest.approx(whole - own, rel=1e-9)
        assert c.alignment.bits[:, 1].sum() == pytest.approx(b.total_bits, rel=1e-9) and b.total_bits > 0
    finally:
        win.close()


def test_a_broken_second_model_is_a_sentence_in_the_compare_window(qtbot, models, tmp_path) -> None:
    first, _ = models
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json", encoding="utf-8")
    win = open_window(qtbot, first)
    try:
        run_op(qtbot, win, lambda: win.send(LoadText("some text")), "load_text")
        win.act_compare.trigger()
        run_op(qtbot, win, lambda: win.compare_view.loadRequested.emit(str(broken)), "load_second")
        qtbot.waitUntil(lambda: win.compare_view.status.text().startswith("⚠ "), timeout=5_000)
        assert win.client.worker.second is None and win._compared is None
        assert len(win.state.tokens) > 0  # the document is as it was
    finally:
        win.close()

"""The explorer window, driven as a student would (pytest-qt, offscreen)."""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Slot
from tiny_gguf import write_tiny_gguf

from lmdesk.engine.document import CONTENT, MARKUP
from lmdesk.convert.gguf_import import import_gguf
from lmdesk.ui.intents import AppendToken, LoadModel, LoadText, Truncate
from window_driver import TIMEOUT, end_turn, idle, open_window, run_op  # noqa: F401 - other tests import them here


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ui")
    import_gguf(write_tiny_gguf(tmp / "tiny.gguf", ctx=128, seed=3), tmp / "model")
    return tmp / "model"


@pytest.fixture
def win(qtbot, tiny_dir):
    w = open_window(qtbot, tiny_dir)
    yield w
    w.close()


def test_end_turn_renders_the_markers(qtbot, win) -> None:
    end_turn(qtbot, win, "hi there")
    toks = win.state.tokens
    segs = win.state.segments
    assert toks[0].special and toks[0].kind == MARKUP  # <|im_start|>
    roles = [segs[t.segment].role for t in toks]
    assert roles[0] == "user" and roles[-1] == "assistant"
    content = [t.id for t in toks if t.kind == CONTENT]
    assert win.info.tokenizer.decode(content) == "hi there"
    assert win.message.toPlainText() == ""
    # the chips are drawn: one rectangle per token, in reading order
    rects = [win.doc_view.chip_rect(i) for i in range(len(toks))]
    assert all(r.width() > 0 for r in rects)
    assert win.state.next is not None and len(win.dist.labels()) == win.k_spin.value()
    assert win.windowTitle().startswith(f"{win.info.name} — lmdesk ")  # which model, at a glance


def test_clicking_a_bar_appends_that_token(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    n = len(win.state.tokens)
    wanted = win.state.next.ids[2]  # the third candidate, not the first
    before = list(win.dist.labels())
    win.dist.click_bar(2)
    qtbot.waitUntil(lambda: len(win.state.tokens) == n + 1, timeout=TIMEOUT)
    idle(qtbot, win)
    assert win.state.tokens[-1].id == wanted
    assert win.state.tokens[-1].stats.rank == 3
    assert win.dist.labels() != before  # the chart shows the new next-token distribution


def test_clicking_a_chip_shows_its_distribution(qtbot, win) -> None:
    end_turn(qtbot, win, "the cat sat on the mat")
    i = 5
    tok = win.state.tokens[i]
    qtbot.mouseClick(win.doc_view.canvas(), pytest.importorskip("PySide6.QtCore").Qt.MouseButton.LeftButton,
                     pos=win.doc_view.chip_rect(i).center())
    qtbot.waitUntil(lambda: win.position == i, timeout=TIMEOUT)
    labels = win.dist.labels()
    assert labels and f"(position {i})" in win.dist_title.text() and win.dist.title() == f"Position {i}"
    shown = win.texts(tok.id).display
    if tok.id in tok.stats.top_ids[: win.k_spin.value()]:
        row = list(tok.stats.top_ids).index(tok.id)
        assert shown in labels[row] and "actual" in labels[row]
    else:
        assert any(f"rank {tok.stats.rank:,}" in lab for lab in labels)
    # a bar at an earlier position replaces that token; the rest is dropped
    other = next(t for t in tok.stats.top_ids if t != tok.id)
    row = list(tok.stats.top_ids).index(other)
    win.dist.click_bar(row)
    qtbot.waitUntil(lambda: len(win.state.tokens) == i + 1, timeout=TIMEOUT)
    assert win.state.tokens[i].id == other


def test_a_span_shows_the_sum_of_its_bits(qtbot, win) -> None:
    end_turn(qtbot, win, "the cat sat on the mat")
    a, b = 3, 9
    win.doc_view.spanSelected.emit(a, b)
    bits = [t.stats.bits for t in win.state.tokens[a:b]]
    total = sum(bits)  # by hand, not with lmdesk's summarize that the window uses
    per = total / len(bits)
    text = win.span_label.text()
    assert f"Selected {b - a} tokens" in text
    assert f"{total:,.1f} bits" in text and f"{per:.2f} bits/token" in text
    assert f"perplexity {2.0 ** per:,.2f}" in text


def test_undo_reset_and_force(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    opened = len(win.state.tokens)
    win.greedy_step.click()
    qtbot.waitUntil(lambda: len(win.state.tokens) == opened + 1, timeout=TIMEOUT)
    idle(qtbot, win)
    assert win.state.tokens[-1].stats.rank == 1
    win.force_edit.setText(" the dog")
    win.force.click()
    qtbot.waitUntil(lambda: win.info.tokenizer.decode([t.id for t in win.state.tokens[opened + 1:]]) == " the dog",
                    timeout=TIMEOUT)
    idle(qtbot, win)
    win.undo.click()
    qtbot.waitUntil(lambda: len(win.state.tokens) == opened + 1, timeout=TIMEOUT)
    idle(qtbot, win)
    assert win.reset_response.isEnabled()
    win.reset_response.click()
    qtbot.waitUntil(lambda: len(win.state.tokens) == opened, timeout=TIMEOUT)
    idle(qtbot, win)
    assert not win.reset_response.isEnabled()


def test_generate_streams_and_stop_stops(qtbot, win) -> None:
    from PySide6.QtCore import Qt

    end_turn(qtbot, win, "hi")
    start = len(win.state.tokens)
    win.temperature.setValue(1.5)
    win.seed.setValue(1)
    win.fixed_seed.setChecked(True)  # seed 1 runs past 60 tokens on this tiny model
    win.max_tokens.setValue(60)
    idle(qtbot, win)

    # Stop at once (what the Stop button calls): whether the worker has begun or not,
    # the generation ends long before its limit (it runs to 60 without Stop, below)
    def generate_and_stop() -> None:
        win.generate.click()
        win.client.stop()

    run_op(qtbot, win, generate_and_stop, "generate")
    assert len(win.state.tokens) - start < 30
    win.client.send(Truncate(start))
    idle(qtbot, win)

    # Stop after the third token: asked from the worker's own thread, so the
    # moment is exact however busy the machine is
    written: list[int] = []

    def stop_at_three(st) -> None:
        written.append(len(st.tokens))
        if len(st.tokens) == start + 3:
            win.client.stop()

    win.client.worker.stateChanged.connect(stop_at_three, Qt.ConnectionType.DirectConnection)
    seen = run_op(qtbot, win, win.generate.click, "generate")
    win.client.worker.stateChanged.disconnect(stop_at_three)
    assert len(win.state.tokens) == start + 3
    assert sorted(set(n for n in written if n > start)) == [start + 1, start + 2, start + 3]  # the worker: token by token
    shown = [n for *_, n in seen]
    assert shown == sorted(shown) and shown[-1] == start + 3  # the window: the newest, in order, the last one too

    # without Stop the same seed runs to the limit; the window draws it as it grows
    # (at most once a frame: this tiny model writes faster than a screen shows)
    win.undo.click()
    idle(qtbot, win)
    slow_down(win, 0.02)  # 60 tokens: at least 1.2 s, some 36 frames
    seen = run_op(qtbot, win, win.generate.click, "generate")
    assert len(win.state.tokens) - start == 60
    during = sorted({n for busy, *_, n in seen if busy and start < n < start + 60})
    assert len(during) >= 10, during


def slow_down(win, seconds: float) -> None:
    """Make each forward pass of the window's model take ``seconds`` more
    (the tiny test model writes a token in about a millisecond, faster than
    any screen shows: a real model takes 20–60 ms)."""
    model = win.client.worker.session.model
    forward = model.forward

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return forward(*args, **kwargs)

    model.forward = slow


def test_generating_works_out_the_next_distribution_a_few_times_a_second_and_for_the_last_token(qtbot, win) -> None:
    from PySide6.QtCore import Qt

    end_turn(qtbot, win, "hi")
    start = len(win.state.tokens)
    win.max_tokens.setValue(60)
    win.seed.setValue(1)
    win.fixed_seed.setChecked(True)
    idle(qtbot, win)
    slow_down(win, 0.02)  # 60 tokens: over a second
    states, charted = [], []
    win.client.worker.stateChanged.connect(states.append, Qt.ConnectionType.DirectConnection)
    shown = win.dist.set_distribution

    def chart(*args, **kwargs):
        charted.append(win.busy)
        shown(*args, **kwargs)

    win.dist.set_distribution = chart
    t0 = time.monotonic()
    run_op(qtbot, win, win.generate.click, "generate")
    seconds = time.monotonic() - t0
    win.client.worker.stateChanged.disconnect(states.append)
    during = [st for st in states if start < len(st.tokens) < start + 60]
    assert len(during) >= 45
    with_next = [st for st in during if st.next is not None]
    assert 1 <= len(with_next) <= 2 + seconds / 0.2, (len(with_next), seconds)
    assert charted.count(True) >= 2, charted  # the chart follows the writing, a few times a second
    # the window ends on the distribution after the last token, against numpy's softmax of the model's logits
    last = win.state
    assert len(last.tokens) == start + 60 and last.next is not None
    logits = win.client.worker.session.next_logits().astype(np.float64)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = np.argsort(-p, kind="stable")[:5]
    assert list(last.next.ids[:5]) == top.tolist()
    assert np.allclose(last.next.probs[:5], p[top], rtol=1e-9, atol=0)
    assert win.dist_title.text() == "What the model expects after the last token"


def test_controls_wait_while_busy(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    win.max_tokens.setValue(40)
    win.seed.setValue(1)
    win.fixed_seed.setChecked(True)
    idle(qtbot, win)
    slow_down(win, 0.02)
    seen = run_op(qtbot, win, win.generate.click, "generate")
    during = [v for v in seen if v[0]]
    assert len(during) >= 10
    # while the model writes, what would conflict is disabled and Stop is offered
    assert all(not gen and not turn and stop for _, gen, turn, stop, _n in during)
    assert win.generate.isEnabled() and not win.stop.isEnabled()


def test_a_bar_clicked_while_busy_is_refused_with_a_sentence(qtbot, win) -> None:
    """The chart cannot be greyed out bar by bar: a click on it while the
    model writes is refused out loud, and nothing is sent to the worker."""
    end_turn(qtbot, win, "hi")
    win.max_tokens.setValue(200)
    idle(qtbot, win)
    seen: list[tuple] = []

    class ClickWhileBusy(QObject):  # lives in the UI thread: its slot runs there, after the window's own
        @Slot(bool, str)
        def on_busy(self, busy: bool, what: str) -> None:
            if busy and what == "generate" and not seen:
                sent = win.client._sent
                win.dist.click_bar(0)
                seen.append((win.busy, win.client._sent - sent, win.banner.isVisible(), win.banner.text()))

    clicker = ClickWhileBusy()
    win.client.worker.busyChanged.connect(clicker.on_busy)
    win.generate.click()
    qtbot.waitUntil(lambda: bool(seen), timeout=TIMEOUT)
    idle(qtbot, win)
    busy, new_requests, shown, text = seen[0]
    assert busy and new_requests == 0
    assert shown and "busy" in text, (shown, text)


def test_zoom_changes_sizes(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    h1 = win.doc_view.chip_rect(1).height()
    win.act_zoom_in.trigger()
    win.act_zoom_in.trigger()
    qtbot.wait(50)
    h2 = win.doc_view.chip_rect(1).height()
    assert h2 > h1 * 1.2
    win.act_zoom_reset.trigger()
    qtbot.wait(50)
    assert abs(win.doc_view.chip_rect(1).height() - h1) <= 1


def test_the_model_runs_only_on_the_worker_thread(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    win.greedy_step.click()
    idle(qtbot, win)
    seen = win.client.worker.threads_seen
    assert seen and threading.get_ident() not in seen


def test_errors_are_sentences_and_keep_the_document(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    before = win.state.tokens
    win.message.setPlainText("   ")
    win.end_turn.click()
    assert win.banner.isVisible() and "empty" in win.banner.text()
    # a message far past the tiny model's 128-token context
    win.message.setPlainText("the cat sat on the mat. " * 100)
    win.end_turn.click()
    qtbot.waitUntil(lambda: win.banner.isVisible() and "at most 128" in win.banner.text(), timeout=TIMEOUT)
    idle(qtbot, win)
    assert win.state.tokens == before
    assert win.message.toPlainText() == "the cat sat on the mat. " * 100  # the message is not lost


def test_a_stopped_end_turn_gives_the_message_back(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    before = win.state.tokens
    win.client.worker.stop_before = 10**9  # as if Stop were pressed before the model read a token
    try:
        win.message.setPlainText("a question the student typed carefully")
        win.end_turn.click()
        assert win.message.toPlainText() == ""
        qtbot.waitUntil(lambda: win.message.toPlainText() != "", timeout=TIMEOUT)
        idle(qtbot, win)
    finally:
        win.client.worker.stop_before = 0
    assert win.message.toPlainText() == "a question the student typed carefully"
    assert win.state.tokens == before


def test_a_returned_message_goes_before_what_was_typed_since(qtbot, win) -> None:
    win.message.setPlainText("typed meanwhile")
    win.on_text_returned("message", "the refused message")
    assert win.message.toPlainText() == "the refused message\ntyped meanwhile"


def test_forced_text_that_does_not_fit_comes_back(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    before = win.state.tokens
    win.force_edit.setText(" and so on" * 60)  # far past the tiny model's 128-token context
    win.force.click()
    qtbot.waitUntil(lambda: win.banner.isVisible() and "at most 128" in win.banner.text(), timeout=TIMEOUT)
    idle(qtbot, win)
    assert win.state.tokens == before
    assert win.force_edit.text() == " and so on" * 60


def test_missing_model_offers_what_to_do(qtbot, tmp_path, monkeypatch) -> None:
    from lmdesk.engine import default_model
    from lmdesk.ui.main_window import MainWindow

    monkeypatch.setattr(default_model, "find_default_model", lambda: None)
    win = MainWindow(model_folder=None, threads=1)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.missing.isVisible(), timeout=TIMEOUT)
    assert "not on this computer" in win.missing_text.text()
    assert win.prepare_button.isEnabled() and win.import_button.isEnabled()
    assert not win.end_turn.isEnabled()
    win.close()


def test_a_broken_model_folder_is_a_sentence(qtbot, tmp_path) -> None:
    from lmdesk.ui.main_window import MainWindow

    (tmp_path / "manifest.json").write_text("{ not json")
    win = MainWindow(model_folder=str(tmp_path), threads=1)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.banner.isVisible(), timeout=TIMEOUT)
    assert "damaged" in win.banner.text()
    win.close()


@pytest.mark.realmodel
def test_real_lab_flow(qtbot, real_model_dir) -> None:
    """The classroom lab on SmolLM2: end turn, pick candidates, generate, inspect, measure."""
    win = open_window(qtbot, real_model_dir)
    end_turn(qtbot, win, "What is the capital of France?")
    assert win.info.tokenizer.decode([t.id for t in win.state.tokens], skip_special_tokens=False).endswith(
        "<|im_start|>assistant\n")
    start = len(win.state.tokens)
    for n in range(3):  # three greedy picks by clicking the top bar
        win.dist.click_bar(0)
        qtbot.waitUntil(lambda n=n: len(win.state.tokens) == start + n + 1, timeout=TIMEOUT)
        idle(qtbot, win)
    assert win.info.tokenizer.decode([t.id for t in win.state.tokens[start:]]) == "The capital of"
    win.temperature.setValue(0.0)
    win.max_tokens.setValue(20)
    idle(qtbot, win)
    run_op(qtbot, win, win.generate.click, "generate")
    reply = win.info.tokenizer.decode([t.id for t in win.state.tokens[start:]])
    assert reply.startswith("The capital of France is Paris")
    paris = next(i for i in range(start, len(win.state.tokens)) if win.texts(win.state.tokens[i].id).display == "·Paris")
    win.on_token_clicked(paris)
    assert "actual" in win.dist.labels()[0] and "Paris" in win.dist.labels()[0]
    win.doc_view.spanSelected.emit(start, len(win.state.tokens))
    assert "Selected" in win.span_label.text()
    win.close()


def test_closing_mid_generation_is_clean(qtbot, tiny_dir) -> None:
    win = open_window(qtbot, tiny_dir)
    end_turn(qtbot, win, "hi")
    win.max_tokens.setValue(100)
    win.seed.setValue(1)
    win.fixed_seed.setChecked(True)
    idle(qtbot, win)
    start = len(win.state.tokens)
    worker = win.client.worker
    paused = threading.Event()

    def hold_at_three(st) -> None:  # in the worker's thread: it waits there until the window closes
        if len(st.tokens) == start + 3 and not paused.is_set():
            paused.set()
            deadline = time.monotonic() + TIMEOUT / 1000
            while not worker._should_cancel() and time.monotonic() < deadline:
                time.sleep(0.001)

    from PySide6.QtCore import Qt

    worker.stateChanged.connect(hold_at_three, Qt.ConnectionType.DirectConnection)
    win.generate.click()
    qtbot.waitUntil(paused.is_set, timeout=TIMEOUT)
    win.close()  # the worker is mid-generation, 3 of at most 100 tokens written
    assert win.client.thread.isFinished()
    assert len(worker.session.doc) == start + 3  # close stopped it at its next token


def test_emoji_and_non_latin_messages(qtbot, win) -> None:
    text = "Привет 👋🏽 你好 — café"
    end_turn(qtbot, win, text)
    content = [t.id for t in win.state.tokens if t.kind == CONTENT]
    assert win.info.tokenizer.decode(content) == text
    shown = "".join(win.texts(i).display for i in content)
    # the tiny vocabulary has no non-ASCII tokens: every piece shows as its bytes, never as mojibake
    assert "<0xF0>" in shown and "Ã" not in shown and "Ð" not in shown


def test_a_twenty_page_paste_is_refused_whole(qtbot, win) -> None:
    end_turn(qtbot, win, "hi")
    before = win.state.tokens
    win.message.setPlainText("Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 2000)
    win.end_turn.click()
    qtbot.waitUntil(lambda: win.banner.isVisible(), timeout=TIMEOUT)
    idle(qtbot, win)
    assert "at most 128" in win.banner.text()
    assert win.state.tokens == before
    assert win.message.toPlainText().startswith("Lorem ipsum") and len(win.message.toPlainText()) > 100_000


def test_switching_models_keeps_the_conversation(qtbot, win, tmp_path) -> None:
    end_turn(qtbot, win, "the cat sat")
    win.greedy_step.click()
    idle(qtbot, win)
    before = win.info.tokenizer.decode([t.id for t in win.state.tokens], skip_special_tokens=False)
    other = tmp_path / "other"
    import_gguf(write_tiny_gguf(tmp_path / "other.gguf", ctx=128, seed=11, n_layer=1), other)
    seen = run_op(qtbot, win, lambda: win.send(LoadModel(str(other))), "load_model")
    assert seen and win.info.folder == str(other)
    after = win.info.tokenizer.decode([t.id for t in win.state.tokens], skip_special_tokens=False)
    assert after == before  # same template and vocabulary here: the very same document
    assert "same conversation" in win.status.text()


def test_save_and_open_a_conversation(qtbot, win, tmp_path, monkeypatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    end_turn(qtbot, win, "the cat sat")
    win.dist.click_bar(4)  # an unlikely pick, to come back exactly
    qtbot.waitUntil(lambda: win.state.tokens[-1].stats.rank == 5, timeout=TIMEOUT)
    idle(qtbot, win)
    saved_ids = [t.id for t in win.state.tokens]
    target = tmp_path / "my lab"  # the window adds the suffix
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    win.act_save_conv.trigger()
    path = tmp_path / "my lab.lmdesk.json"
    qtbot.waitUntil(path.exists, timeout=TIMEOUT)
    idle(qtbot, win)
    assert "Saved" in win.status.text()

    win.new_conv.click()
    qtbot.waitUntil(lambda: not win.state.tokens, timeout=TIMEOUT)
    idle(qtbot, win)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    win.act_open_conv.trigger()
    qtbot.waitUntil(lambda: [t.id for t in win.state.tokens] == saved_ids, timeout=TIMEOUT)
    idle(qtbot, win)
    assert "exactly" in win.status.text()
    assert win.state.tokens[-1].stats.rank == 5

    # a damaged file: one sentence in the window, and the document stays
    bad = tmp_path / "bad.lmdesk.json"
    bad.write_text('{"format": "lmdesk-conversation", "version": 1, "tok', encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    win.act_open_conv.trigger()
    qtbot.waitUntil(lambda: win.banner.isVisible(), timeout=TIMEOUT)
    idle(qtbot, win)
    assert "damaged" in win.banner.text() and "\n" not in win.banner.text()
    assert [t.id for t in win.state.tokens] == saved_ids


def test_saving_an_empty_document_is_refused(qtbot, win, monkeypatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    def no_dialog(*_a, **_k):
        raise AssertionError("no dialog for an empty document")

    monkeypatch.setattr(QFileDialog, "getSaveFileName", no_dialog)
    win.act_save_conv.trigger()
    assert win.banner.isVisible() and "nothing to save" in win.banner.text()


def test_closing_keeps_the_document_for_next_time(qtbot, tiny_dir, tmp_path) -> None:
    from lmdesk.ui.main_window import MainWindow

    kept = tmp_path / "data" / "last-conversation.lmdesk.json"
    win = MainWindow(model_folder=str(tiny_dir), threads=1, keep_last=kept)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.info is not None, timeout=TIMEOUT)
    idle(qtbot, win)
    assert not win.act_reopen_last.isVisible()  # nothing kept yet
    end_turn(qtbot, win, "the cat sat")
    win.max_tokens.setValue(200)
    idle(qtbot, win)
    closed: list[bool] = []

    class CloseWhileBusy(QObject):  # in the UI thread, as a person's click would be
        @Slot(bool, str)
        def on_busy(self, busy: bool, what: str) -> None:
            if busy and what == "generate" and not closed:
                closed.append(True)
                win.close()  # mid-generation: the worker stops, then the document is written

    closer = CloseWhileBusy()
    win.client.worker.busyChanged.connect(closer.on_busy)
    win.generate.click()
    qtbot.waitUntil(lambda: bool(closed), timeout=TIMEOUT)
    assert not win.client.thread.isRunning()
    assert kept.is_file()
    saved = json.loads(kept.read_text(encoding="utf-8"))
    assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["the cat sat"]
    ids = [t[0] for t in saved["tokens"]]

    again = MainWindow(model_folder=str(tiny_dir), threads=1, keep_last=kept)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitUntil(lambda: again.info is not None, timeout=TIMEOUT)
    idle(qtbot, again)
    assert again.state.tokens == ()  # offered, not imposed: the next student starts clean
    assert again.act_reopen_last.isVisible() and "last time" in again.status.text()
    again.act_reopen_last.trigger()
    qtbot.waitUntil(lambda: [t.id for t in again.state.tokens] == ids, timeout=TIMEOUT)
    again.close()


def test_open_model_imports_once_and_never_writes_over_a_folder(qtbot, win, tiny_dir, tmp_path, monkeypatch) -> None:
    """File → Open model… with a GGUF file: imported into a new folder (a folder
    of that name, even the one in use, is left as it was), opened from there;
    the same file again opens that folder instead of importing it twice.
    File → Models on this computer lists both, the one in use checked."""
    from PySide6.QtWidgets import QFileDialog

    places = tmp_path / "models"
    monkeypatch.setenv("LMDESK_MODELS_DIR", str(places))
    src = write_tiny_gguf(tmp_path / "lab.gguf", ctx=128, seed=5, n_layer=1)
    taken = places / "lab"
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text("a teacher's notes", encoding="utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(src), ""))
    run_op(qtbot, win, win.act_import.trigger, "import_gguf")
    assert win.info.folder == str(places / "lab-2")
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    run_op(qtbot, win, win.act_import.trigger, "import_gguf")
    assert win.info.folder == str(places / "lab-2")
    assert sorted(p.name for p in places.iterdir()) == ["lab", "lab-2"]
    assert "imported before" in win.status.text()

    win.fill_models_menu()
    entries = [(a.text(), a.isChecked()) for a in win.models_menu.actions()]
    assert (f"tiny-llama-1L-64d-seed5  (llama) — {places / 'lab-2'}", True) in entries  # the one in use
    assert [checked for _, checked in entries].count(True) == 1
    assert not any(text.endswith(str(places / "lab")) for text, _ in entries)  # the teacher's folder is no model
    # a file inside a model folder opens that folder
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(tiny_dir / "manifest.json"), ""))
    run_op(qtbot, win, win.act_import.trigger, "load_model")
    assert win.info.folder == str(tiny_dir)


def test_a_model_without_a_chat_template_gets_its_family_format_in_one_click(qtbot, tmp_path) -> None:
    """A GGUF without a template (as Gemma 3 270M's) reads plain text, says so,
    and offers its family's chat format; one click and End Turn wraps the
    message in the family's markers, and the folder keeps the format."""
    from lmdesk.engine.model import LoadedModel

    folder = tmp_path / "base"
    import_gguf(write_tiny_gguf(tmp_path / "base.gguf", ctx=128, seed=4, chat_template=None), folder)
    assert not (folder / "chat_template.jinja").exists()
    win = open_window(qtbot, folder)
    try:
        assert not win.info.has_template
        assert win.template_button.isVisible()
        assert win.template_button.text() == "Use the ChatML (Qwen, SmolLM) chat format"
        assert "has no chat template, so it reads plain text" in win.status.text()
        run_op(qtbot, win, win.template_button.click, "use_family_template")
        assert win.info.has_template and not win.template_button.isVisible()
        assert "kept with the model" in win.status.text()
        end_turn(qtbot, win, "hi there")
        shown = win.info.tokenizer.decode([t.id for t in win.state.tokens], skip_special_tokens=False)
        assert shown == "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    finally:
        win.close()
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["files"]["chat_template"] == "chat_template.jinja"
    assert "ChatML" in manifest["chat_template_origin"]
    assert LoadedModel(folder, threads=1).chat_template == (folder / "chat_template.jinja").read_text(encoding="utf-8")


def test_family_formats_are_offered_by_architecture_and_vocabulary() -> None:
    from lmdesk.engine.chat_template import ChatTemplate, Message
    from lmdesk.engine.family_templates import suggest

    gemma_vocab = {"<bos>", "<start_of_turn>", "<end_of_turn>"}
    family = suggest("gemma3", gemma_vocab.__contains__)
    assert family is not None and family.name == "gemma"
    assert suggest("llama", gemma_vocab.__contains__).name == "gemma"  # the vocabulary decides in the end
    assert suggest("gemma3", {"<bos>"}.__contains__) is None  # markers missing: nothing to offer
    text = ChatTemplate(family.source, bos_token="<bos>").render(
        [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!")],
        add_generation_prompt=False)
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"


def test_the_window_fits_the_screen(qtbot, win) -> None:
    """On a screen smaller than 1280 x 800 (a 1024 x 768 projector) the window
    takes the free area instead of running off it."""
    free = win.screen().availableGeometry()
    assert win.width() <= free.width() and win.height() <= free.height()
    assert win.width() == min(1280, free.width())


def test_a_follow_up_message_after_clicking_a_chip_never_replaces_it(qtbot, win) -> None:
    """The lab's trap: click an early chip, type a second message, End Turn,
    click the top bar. The chart is back at the end after End Turn, so the
    click appends; the first message and its reply are all still there."""
    end_turn(qtbot, win, "the cat sat")
    win.greedy_step.click()
    idle(qtbot, win)
    win.on_token_clicked(3)
    assert win.position == 3
    after = len(win.state.tokens) - 4
    assert win.dist.entropy_text().endswith(f"click a bar to replace token 3 and drop the {after} tokens after it")
    before = [t.id for t in win.state.tokens]
    win.message.setPlainText("and then?")
    win.end_turn.click()
    qtbot.waitUntil(lambda: len(win.state.tokens) > len(before) and not win.busy, timeout=TIMEOUT)
    idle(qtbot, win)
    assert win.position is None
    assert win.dist_title.text() == "What the model expects after the last token"
    n = len(win.state.tokens)
    run_op(qtbot, win, lambda: win.dist.click_bar(0), "append_token")
    assert len(win.state.tokens) == n + 1
    assert [t.id for t in win.state.tokens[: len(before)]] == before  # nothing earlier was replaced


def test_after_end_turn_the_keyboard_is_still_in_the_message_box(qtbot, win) -> None:
    """Clicking End Turn with the mouse, then typing: the letters go into the
    message box, never into Temperature."""
    from PySide6.QtCore import Qt as QtKeys
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    win.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=TIMEOUT)
    win.message.setFocus()
    win.message.setPlainText("the cat sat")
    temperature = win.temperature.value()
    QTest.mouseClick(win.end_turn, QtKeys.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(win.state.tokens) > 0 and not win.busy, timeout=TIMEOUT)
    idle(qtbot, win)
    assert QApplication.focusWidget() is win.message
    QTest.keyClicks(QApplication.focusWidget(), "0")
    assert win.message.toPlainText() == "0" and win.temperature.value() == temperature


def test_no_stale_numbers_stay_on_screen(qtbot, win, tmp_path) -> None:
    """After New conversation no figure of the old document is left; a chip
    clicked after a span is one chip, not the span; a status line about an
    earlier action goes with the next one."""
    end_turn(qtbot, win, "the cat sat")
    win.greedy_step.click()
    idle(qtbot, win)
    assert win.span_label.text().count("Whole document") == 1
    win.doc_view.spanSelected.emit(1, 6)
    assert "Selected 5 tokens" in win.span_label.text()
    win.on_token_clicked(3)
    assert "Selected" not in win.span_label.text() and win.span is None
    win.client.worker.notice.emit("Opened lab.lmdesk.json.")
    qtbot.waitUntil(lambda: "Opened" in win.status.text(), timeout=TIMEOUT)
    run_op(qtbot, win, win.new_conv.click, "new_conversation")
    assert not win.state.tokens
    assert "Whole document" not in win.span_label.text() and "bits" not in win.span_label.text()
    assert win.dist.entropy_text() == ""
    assert "Opened" not in win.status.text()


def test_the_way_back_after_new_conversation_is_said_and_works(qtbot, win) -> None:
    end_turn(qtbot, win, "the cat sat")
    before = [t.id for t in win.state.tokens]
    run_op(qtbot, win, win.new_conv.click, "new_conversation")
    assert f"The one before ({len(before)} tokens) is one Undo (Ctrl+Z) away." in win.status.text()
    run_op(qtbot, win, win.undo.click, "undo")
    assert [t.id for t in win.state.tokens] == before


def test_an_error_with_a_word_of_thousands_of_digits_keeps_the_window_on_the_screen(qtbot, win) -> None:
    win.show_error("There is no token " + "9" * 4000 + " in this model's vocabulary.")
    qtbot.wait(50)
    assert len(win.banner.text()) < 200 and "…" in win.banner.text()
    assert win.width() <= win.screen().availableGeometry().width()


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT", "SIGHUP"])
def test_a_signal_closes_the_window_like_its_close_button(tiny_dir, tmp_path, signame: str) -> None:
    """A kill, Ctrl+C or a closed terminal: the app closes the window (the
    document is kept by closeEvent), exits 0 and prints no traceback."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", XDG_DATA_HOME=str(tmp_path), HOME=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "lmdesk", "--model", str(tiny_dir), "--threads", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "lmdesk" / "lmdesk.log"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.is_file() and "starting" in log.read_text()):
        time.sleep(0.2)
    time.sleep(2)  # the window and the model are up
    proc.send_signal(getattr(signal, signame))
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "closing the window" in log.read_text()


def test_ctrl_c_copies_the_selected_tokens_as_text_and_as_a_table(qtbot, win) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication

    end_turn(qtbot, win, "the cat sat on the mat")
    n = len(win.state.tokens)
    a, b = n - 6, n - 1
    win.on_span(a, b)
    win.doc_view.canvas().setFocus()
    qtbot.keyClick(win.doc_view.canvas(), Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    ids = [t.id for t in win.state.tokens[a:b]]
    # the characters the tokens make, read with the tokenizer itself
    assert QGuiApplication.clipboard().text() == win.info.tokenizer.decode(ids, skip_special_tokens=False)
    qtbot.keyClick(win.doc_view.canvas(), Qt.Key.Key_C,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    rows = QGuiApplication.clipboard().text().strip("\r\n").splitlines()
    assert len(rows) == 1 + (b - a)  # a header, then one row per token
    header = rows[0].split("\t")
    for i, row in zip(range(a, b), rows[1:]):
        cells = dict(zip(header, row.split("\t")))
        st = win.state.tokens[i].stats
        assert int(cells["position"]) == i
        assert abs(float(cells["bits"]) - (-math.log2(st.prob))) < 1e-4 * max(1.0, st.bits)
        assert int(cells["rank"]) == st.rank
    # nothing selected: a sentence, and the clipboard keeps what it had
    win.on_selection_cleared()
    win.show_position(None)
    before = QGuiApplication.clipboard().text()
    qtbot.keyClick(win.doc_view.canvas(), Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier)
    assert win.banner.isVisible() and "select" in win.banner.text().lower()
    assert QGuiApplication.clipboard().text() == before


def kept_window(qtbot, tiny_dir, kept):
    from lmdesk.ui.main_window import MainWindow

    win = MainWindow(model_folder=str(tiny_dir), threads=1, keep_last=kept)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.info is not None, timeout=TIMEOUT)
    idle(qtbot, win)
    return win


def test_closing_while_the_model_reads_a_message_keeps_the_message(qtbot, tiny_dir, tmp_path) -> None:
    kept = tmp_path / "last.lmdesk.json"
    win = kept_window(qtbot, tiny_dir, kept)
    end_turn(qtbot, win, "the cat sat")
    first = [t.id for t in win.state.tokens]
    win.client.worker.session.chunk_size = 2  # a long read, in many steps, each a checkpoint for Stop
    slow_down(win, 0.05)
    pasted = "a long pasted message about the dog and the mat " * 2
    closed: list[bool] = []

    class CloseWhileReading(QObject):
        @Slot(float, str)
        def on_progress(self, _fraction: float, _message: str) -> None:
            if not closed:
                closed.append(True)
                win.close()

    closer = CloseWhileReading()
    win.client.worker.progress.connect(closer.on_progress)
    win.message.setPlainText(pasted)
    win.message.setFocus()
    win.end_turn.click()
    win.message.setPlainText("and a second thought")  # typed while the model reads
    qtbot.waitUntil(lambda: bool(closed), timeout=TIMEOUT)
    saved = json.loads(kept.read_text(encoding="utf-8"))
    assert [t[0] for t in saved["tokens"]] == first  # no half a message in the document
    assert saved["draft"] == pasted + "\nand a second thought"

    again = kept_window(qtbot, tiny_dir, kept)
    again.act_reopen_last.trigger()
    qtbot.waitUntil(lambda: [t.id for t in again.state.tokens] == first, timeout=TIMEOUT)
    idle(qtbot, again)
    assert again.message.toPlainText() == pasted + "\nand a second thought"


def test_closing_while_the_worker_cannot_stop_keeps_what_was_drawn(qtbot, tiny_dir, tmp_path) -> None:
    kept = tmp_path / "last.lmdesk.json"
    win = kept_window(qtbot, tiny_dir, kept)
    end_turn(qtbot, win, "the cat sat")
    drawn = [t.id for t in win.state.tokens]
    release = threading.Event()
    model = win.client.worker.session.model
    forward = model.forward

    def stuck(*args, **kwargs):  # one step of the model that does not end soon
        release.wait(TIMEOUT / 1000)
        return forward(*args, **kwargs)

    model.forward = stuck
    win.SHUTDOWN_WAIT_MS = 200
    win.greedy_step.click()
    qtbot.waitUntil(lambda: win.busy, timeout=TIMEOUT)
    win.close()
    try:
        assert win.client.thread.isRunning()  # it did not stop in time ...
        saved = json.loads(kept.read_text(encoding="utf-8"))
        assert [t[0] for t in saved["tokens"]] == drawn  # ... and the document was kept all the same
        assert [m["content"] for m in saved["messages"] if m["role"] == "user"] == ["the cat sat"]
    finally:
        release.set()
        win.client.thread.wait(TIMEOUT)


def test_generate_at_the_context_limit_says_why_nothing_came(qtbot, win) -> None:
    limit = win.info.context_length
    ids = win.info.tokenizer.encode("the cat sat on the mat " * 200, add_special_tokens=False).ids
    win.send(LoadText(win.info.tokenizer.decode(ids[: limit - 8])))
    idle(qtbot, win)
    while len(win.state.tokens) < limit:  # the last few one by one, to the very limit
        win.send(AppendToken(win.state.next.ids[0]))
        idle(qtbot, win)
    assert len(win.state.tokens) == limit
    win.generate.click()
    qtbot.waitUntil(lambda: win.banner.isVisible(), timeout=TIMEOUT)
    idle(qtbot, win)
    assert f"{limit:,} tokens long" in win.banner.text() and "no room" in win.banner.text()
    assert "Generated 0 tokens" not in win.status.text()
    assert len(win.state.tokens) == limit


def test_projector_mode_gives_the_document_the_room_and_gives_everything_back(qtbot, win) -> None:
    from lmdesk.ui import theme as themes

    end_turn(qtbot, win, "the cat sat on the mat")
    win.showNormal()
    win.resize(1024, 768)
    qtbot.wait(50)
    sizes = win.split.sizes()
    before = (win.zoom, win.theme, sizes[1] / sum(sizes))
    assert win.theme is not themes.HIGH_CONTRAST
    win.act_projector.setChecked(True)
    qtbot.wait(100)
    left, centre, right = win.split.sizes()
    assert win.split.widget(0).isHidden() and left == 0  # the controls fold away ...
    # ... and the document has the room: 60 % of the width, or all the chart leaves it (offscreen, the
    # "full screen" is 800 pixels wide, and the chart's controls need their width)
    total = left + centre + right
    assert centre >= min(0.6 * total, total - win.split.widget(2).minimumSizeHint().width()) - 2
    assert win.theme is themes.HIGH_CONTRAST and win.zoom >= 1.3
    # high contrast draws the borders of inputs and check boxes in the text colour
    assert "QCheckBox::indicator" in QApplication_style()
    win.act_zoom_reset.trigger()
    assert win.zoom == pytest.approx(1.3)  # Ctrl+0 in projector mode: projector size, not smaller
    win.act_controls.trigger()  # F9: the controls come back for typing a message
    qtbot.wait(50)
    assert not win.split.widget(0).isHidden() and win.split.sizes()[0] > 0
    win.act_controls.trigger()
    win.act_projector.setChecked(False)
    qtbot.wait(100)
    assert (win.zoom, win.theme) == before[:2]  # the desktop's own theme again, not the dark one
    assert not win.split.widget(0).isHidden()
    assert QApplication_style() == ""


def QApplication_style() -> str:  # noqa: N802 - reads like Qt's
    from PySide6.QtWidgets import QApplication

    return QApplication.instance().styleSheet()


def test_the_last_state_of_a_long_run_is_drawn_whole(qtbot, win, monkeypatch) -> None:
    """While the model writes, frames leave the plot and the chart out; when
    the work ends, the chart and the plot show the very last token."""
    from PySide6.QtCore import Qt

    from lmdesk.ui import main_window

    end_turn(qtbot, win, "hi")
    win.max_tokens.setValue(12)
    win.seed.setValue(1)
    win.fixed_seed.setChecked(True)
    idle(qtbot, win)
    monkeypatch.setattr(main_window, "SLOW_PARTS_S", 1e9)  # while busy, every frame a light one

    def linger(_state) -> None:  # in the worker's thread: each state is drawn before the next signal
        time.sleep(0.08)

    win.client.worker.stateChanged.connect(linger, Qt.ConnectionType.DirectConnection)
    run_op(qtbot, win, win.generate.click, "generate")
    win.client.worker.stateChanged.disconnect(linger)
    n = len(win.state.tokens)
    assert win.surprise.point_count() == n - 1  # every predicted token has its point
    nxt = win.state.next
    k = min(win.k_spin.value(), len(nxt.ids))
    assert win.dist.ids()[:k] == list(nxt.ids[:k])  # the chart is the distribution after the last token


def test_generate_says_the_settings_it_used(qtbot, win) -> None:
    """Generate's first settings are a story's (temperature 0.7, top-p 0.9),
    and the status line names the settings and the seed every time."""
    assert (win.temperature.value(), win.top_p.value(), win.top_k.value()) == (0.7, 0.9, 0)
    end_turn(qtbot, win, "hi")
    assert "bars after temperature 0.7, top-k off, top-p 0.9" in win.dist.entropy_text()
    win.max_tokens.setValue(5)
    win.seed.setValue(3)
    win.fixed_seed.setChecked(True)
    idle(qtbot, win)
    run_op(qtbot, win, win.generate.click, "generate")
    assert "(temperature 0.7, top-k off, top-p 0.9, seed 3)" in win.status.text()
    win.temperature.setValue(0.0)
    idle(qtbot, win)
    run_op(qtbot, win, win.generate.click, "generate")
    assert "(greedy)" in win.status.text()


def test_the_lab_questions_go_to_their_tokens(qtbot, win) -> None:
    """Most surprising / most confident / most uncertain, in the whole
    document or in the replies only; asked again, the next one."""
    win.system_edit.setPlainText("be brief")
    end_turn(qtbot, win, "the cat sat on the mat")
    win.max_tokens.setValue(12)
    win.seed.setValue(2)
    win.fixed_seed.setChecked(True)
    idle(qtbot, win)
    run_op(qtbot, win, win.generate.click, "generate")
    tokens = win.state.tokens
    bits = {i: t.stats.bits for i, t in enumerate(tokens) if t.stats is not None}
    win.find_buttons["surprising"].click()
    assert win.position == max(bits, key=bits.get)  # the whole document's most surprising
    win.find_buttons["surprising"].click()
    second = sorted(bits, key=bits.get, reverse=True)[1]
    assert win.position == second and "2 of" in win.status.text()
    win.scope.setCurrentIndex(1)  # the replies only
    replies = [i for i, t in enumerate(tokens)
               if t.kind == CONTENT and win.state.segments[t.segment].role == "assistant" and t.stats]
    assert replies and all(i > len(tokens) - 14 for i in replies)
    win.find_buttons["confident"].click()
    assert win.position == min(replies, key=lambda i: bits[i])
    win.find_buttons["uncertain"].click()
    assert win.position == max(replies, key=lambda i: tokens[i].stats.entropy)
    # the figures and the plot follow the scope
    total = sum(bits[i] for i in replies)
    assert f"The replies: {len(replies):,} predicted tokens · {total:,.1f} bits" in win.span_label.text()
    assert win.surprise.point_count() == len(replies)
    assert "a fair coin is 1 bit" in win.span_label.text() and "nats a token" in win.span_label.text()
    win.scope.setCurrentIndex(0)
    assert win.surprise.point_count() == len(bits)


def test_the_window_opens_at_the_size_it_had(qtbot, tiny_dir, tmp_path) -> None:
    """Closed at 1000 x 700, it opens at 1000 x 700 the next time (within the
    screen); a damaged size file is the usual size."""
    kept = tmp_path / "data" / "last.lmdesk.json"
    win = kept_window(qtbot, tiny_dir, kept)
    free = win.screen().availableGeometry()
    want = (min(700, free.width()), min(500, free.height()))
    win.showNormal()
    win.resize(*want)
    qtbot.wait(20)
    win.close()
    again = kept_window(qtbot, tiny_dir, kept)
    assert (again.width(), again.height()) == want
    again.close()
    (kept.parent / "window-size.json").write_text("{nonsense", encoding="utf-8")
    third = kept_window(qtbot, tiny_dir, kept)
    assert third.width() == min(1280, free.width())
    third.close()


def test_a_long_new_stretch_of_chips_is_laid_out_a_part_a_turn(qtbot, win) -> None:
    """Reading a document of 8,000 tokens laid out all its chips in one turn (23-31 ms of the
    window's time): they now come a part a turn (2,500 chips; 15 here, for the tiny model).
    What ends on screen is the layout of the whole document at once."""
    from PySide6.QtCore import QTimer

    win.chips_per_turn = 15
    turn = [0]
    ticker = QTimer()
    ticker.timeout.connect(lambda: turn.__setitem__(0, turn[0] + 1))
    ticker.start(0)
    given: list[tuple[int, int]] = []  # (chips given to the view, turn)
    real = win.doc_view.set_document

    def record(tokens, *args, **kwargs):
        given.append((len(tokens), turn[0]))
        return real(tokens, *args, **kwargs)

    win.doc_view.set_document = record
    try:
        win.send(LoadText("the cat sat on the mat and looked at the dog " * 5))
        idle(qtbot, win)
    finally:
        ticker.stop()
        win.doc_view.set_document = real
    n = len(win.state.tokens)
    assert n > 45
    grown = [b - a for (a, _), (b, _) in zip(given, given[1:]) if b > a]
    assert grown and max(grown) <= 15 and given[-1][0] == n, given
    assert len({t for _, t in given}) == len(given)  # each part in a turn of its own
    in_parts = [win.doc_view.chip_rect(i) for i in range(n)], win.doc_view.labelled_parts()
    win.doc_view.set_document(win.state.tokens, win.state.segments, win.texts, 0)  # all at once, from the start
    assert in_parts == ([win.doc_view.chip_rect(i) for i in range(n)], win.doc_view.labelled_parts())
    assert not in_parts[0][-1].isNull()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_the_model_works_at_a_lower_priority_than_the_window(qtbot, win) -> None:
    """With a core busy elsewhere, the model's thread and the window's shared the other core
    and the window waited its turn (91 ms): the model's thread now yields to it."""
    idle(qtbot, win)
    model_thread = win.client.worker.native_id
    assert model_thread is not None and model_thread != threading.get_native_id()
    window = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert os.getpriority(os.PRIO_PROCESS, model_thread) == max(10, window)
    # and what the model computes does not change: a token still gets its statistics
    end_turn(qtbot, win, "hi")
    assert win.state.tokens[-1].stats is not None


def test_while_the_model_writes_the_plot_and_chart_come_in_turns_apart_from_the_chips(qtbot, win) -> None:
    """While the model wrote 8,000 tokens' worth of document, the plot's frame drew the chips
    and the plot together (20-25 ms of the window's time, twice that with a core busy elsewhere).
    The plot, kept from each state's first change, still ends on every reply token's bits."""
    from PySide6.QtCore import QTimer

    end_turn(qtbot, win, "hi")
    win.scope.setCurrentIndex(1)  # the replies only: the plot leaves the rest out
    win.max_tokens.setValue(40)
    win.seed.setValue(3)
    win.fixed_seed.setChecked(True)
    idle(qtbot, win)
    slow_down(win, 0.03)  # 40 tokens: over a second, several frames of each part
    turn = [0]
    ticker = QTimer()
    ticker.timeout.connect(lambda: turn.__setitem__(0, turn[0] + 1))
    ticker.start(0)
    drawn: list[tuple[str, int, bool]] = []
    for name, obj, attr in (("chips", win.doc_view, "set_document"), ("plot", win.surprise, "set_bits"),
                            ("chart", win.dist, "set_distribution")):
        real = getattr(obj, attr)

        def record(*args, _real=real, _name=name, **kwargs):
            drawn.append((_name, turn[0], win.busy))
            return _real(*args, **kwargs)

        setattr(obj, attr, record)
    try:
        run_op(qtbot, win, win.generate.click, "generate")
        idle(qtbot, win)
    finally:
        ticker.stop()
    during = [(name, t) for name, t, busy in drawn if busy]
    chip_turns = {t for name, t in during if name == "chips"}
    slow = [(name, t) for name, t in during if name != "chips"]
    assert {name for name, _ in slow} == {"plot", "chart"}, drawn
    assert not [t for _, t in slow if t in chip_turns], drawn
    # the plot ends on the bits of the reply's words, from the tokens themselves
    tokens, segments = win.state.tokens, win.state.segments
    replies = [i for i, t in enumerate(tokens) if t.kind == CONTENT and segments[t.segment].role == "assistant"
               and t.stats is not None]
    assert len(replies) >= 30
    assert win.surprise.drawn_indices() == replies
    total = sum(tokens[i].stats.bits for i in replies)
    assert win.surprise.summary_text().startswith(f"{len(replies):,} tokens · {total:,.1f} bits")
    assert f"The replies: {len(replies):,} predicted tokens · {total:,.1f} bits" in win.span_label.text()


def test_at_the_end_of_work_the_chips_plot_and_chart_are_drawn_in_turns_of_their_own(qtbot, win) -> None:
    """After a long document's work, the chips, the surprise plot and the chart drawn in one go
    held the window up 60-110 ms: each now comes in an event-loop turn of its own, so a key or a
    click waits for one of them at most. What ends on screen is the same."""
    from PySide6.QtCore import QTimer

    text = "the cat sat on the mat and looked at the dog " * 3
    turn = [0]
    ticker = QTimer()
    ticker.timeout.connect(lambda: turn.__setitem__(0, turn[0] + 1))
    ticker.start(0)  # once every turn of the event loop
    drawn: list[tuple[str, int]] = []
    for name, obj, attr in (("chips", win.doc_view, "set_document"), ("plot", win.surprise, "set_bits"),
                            ("chart", win.dist, "set_distribution")):
        real = getattr(obj, attr)

        def record(*args, _real=real, _name=name, **kwargs):
            drawn.append((_name, turn[0]))
            return _real(*args, **kwargs)

        setattr(obj, attr, record)
    try:
        win.send(LoadText(text))
        idle(qtbot, win)
    finally:
        ticker.stop()
    last = {name: t for name, t in drawn}  # the turn of each one's last drawing
    assert set(last) == {"chips", "plot", "chart"}
    assert last["chips"] < last["plot"] < last["chart"], drawn
    # and they show the document as it ended: a point for every token the model predicted
    scored = [i for i, tok in enumerate(win.state.tokens) if tok.stats is not None]
    assert len(scored) > 20
    assert win.surprise.point_count() == len(scored)
    assert win.surprise.drawn_indices() == scored
    top = win.state.next
    assert top is not None and win.dist.labels()[0].startswith(win.texts(top.ids[0]).display)

"""Tests for lmdesk.ui.document_view: the document as token chips.

Documents are built by hand (DocToken / Segment / TokenStats and a fake
``texts`` table of TokenText objects), plus one conversation tokenized by the
tiny GGUF tokenizer through a real TokenTextTable. Rendering is checked on
grabbed images; interaction with real mouse and key events on the canvas.

Set LMDESK_SCREENSHOTS=/some/folder to keep the screenshots of
``test_screenshots`` (they go to pytest's tmp_path otherwise).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QObject, QPoint, QRect, Qt
from PySide6.QtGui import QColor, QImage
from tokenizers import Tokenizer

from lmdesk.engine.document import CONTENT, MARKUP, TOOL_CALL, DocToken, Segment
from lmdesk.convert.gguf_tokenizer import tokenizer_from_gguf
from lmdesk.engine.stats import TokenStats
from lmdesk.engine.token_text import NEWLINE_MARK, SPACE_MARK, TokenText, TokenTextTable
from lmdesk.ui.document_view import DocumentView, format_prob
from lmdesk.ui.theme import DARK, HIGH_CONTRAST, LIGHT, surprise_color
from tiny_gguf import write_tiny_gguf

# ---------------------------------------------------------------------------
# hand-made documents
# ---------------------------------------------------------------------------


def make_text(text: str, *, special: bool = False) -> TokenText:
    """A TokenText as TokenTextTable would give it for plain ASCII text."""
    if special:
        return TokenText(text.encode(), text, text, True, False, "\n" in text, ())
    display, marks = [], []
    for pos, ch in enumerate(text):
        if ch in " \n":
            display.append(SPACE_MARK if ch == " " else NEWLINE_MARK)
            if marks and marks[-1][1] == pos:
                marks[-1] = (marks[-1][0], pos + 1)
            else:
                marks.append((pos, pos + 1))
        else:
            display.append(ch)
    return TokenText(text.encode(), text, "".join(display), False, False, "\n" in text, tuple(marks))


def stats(bits: float, rank: int = 1, entropy: float = 2.0) -> TokenStats:
    p = 2.0 ** -bits
    return TokenStats(prob=p, logprob=math.log(p), bits=bits, rank=rank, entropy=entropy,
                      top_ids=(1, 2), top_probs=(0.5, 0.25))


class Vocab:
    """A fake ``texts`` table: one id per distinct (text, special); records every look-up."""

    def __init__(self) -> None:
        self.by_id: dict[int, TokenText] = {}
        self.ids: dict[tuple[str, bool], int] = {}
        self.calls: list[int] = []

    def id_of(self, text: str, special: bool = False) -> int:
        key = (text, special)
        if key not in self.ids:
            new = 100 + len(self.ids)
            self.ids[key] = new
            self.by_id[new] = make_text(text, special=special)
        return self.ids[key]

    def __call__(self, token_id: int) -> TokenText:
        self.calls.append(token_id)
        return self.by_id[token_id]


def build(pieces, vocab: Vocab | None = None, bits=None):
    """Tokens from ``pieces``: (text, segment, kind, special) or just text (segment 0, content).

    ``bits(i)`` gives the surprise of token i (token 0 has no stats)."""
    vocab = vocab or Vocab()
    tokens = []
    for i, piece in enumerate(pieces):
        text, seg, kind, special = (piece, 0, CONTENT, False) if isinstance(piece, str) else piece
        st = None if i == 0 else stats(bits(i) if bits else 1.0 + (i % 7))
        tokens.append(DocToken(vocab.id_of(text, special), st, seg, kind, special))
    return tokens, vocab


WORDS = [" the", " quick", " brown", " fox", " jumps", " over", " a", " lazy", " dog", "."]


@pytest.fixture
def view(qtbot):
    v = DocumentView()
    qtbot.addWidget(v)
    v.set_theme(LIGHT)
    v.resize(420, 300)
    v.show()
    qtbot.waitExposed(v)
    return v


def plain_doc(n: int = 40):
    tokens, vocab = build(["Once"] + [WORDS[i % len(WORDS)] for i in range(n - 1)])
    return tokens, [Segment("text", None)], vocab


def center(rect: QRect) -> QPoint:
    return rect.center()


# ---------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------


def test_chips_flow_left_to_right_then_wrap(view) -> None:
    tokens, segments, vocab = plain_doc(40)
    view.set_document(tokens, segments, vocab)
    rects = [view.chip_rect(i) for i in range(len(tokens))]
    assert all(not r.isNull() for r in rects)
    assert view.chip_rect(len(tokens)).isNull()
    width = view.canvas().width()
    wraps = 0
    for a, b in zip(rects, rects[1:]):
        assert b.height() == a.height()
        if b.top() == a.top():
            assert b.left() > a.right()  # same line: strictly to the right, no overlap
        else:
            assert b.top() > a.bottom()  # next line: below, back at the left edge
            assert b.left() == rects[0].left()
            wraps += 1
    assert wraps >= 3  # 40 words do not fit in 420 px
    assert all(r.right() < width for r in rects)
    # a chip wider than the text would fit is never needed here, and lines are filled:
    # the first chip of each new line would not have fitted on the line before
    for a, b in zip(rects, rects[1:]):
        if b.top() != a.top():
            assert a.right() + b.width() > width - 30


def test_resize_relays_out(view, qtbot) -> None:
    tokens, segments, vocab = plain_doc(40)
    view.set_document(tokens, segments, vocab)
    narrow_bottom = view.chip_rect(39).bottom()
    view.resize(900, 300)
    qtbot.waitUntil(lambda: view.canvas().width() > 800)
    assert view.chip_rect(39).bottom() < narrow_bottom
    assert view.chip_rect(39).right() < view.canvas().width()


def test_newline_token_ends_the_line(view) -> None:
    tokens, vocab = build(["Hello", " world", "\n", "Next", " line"])
    view.set_document(tokens, [Segment("text", None)], vocab)
    r = [view.chip_rect(i) for i in range(5)]
    assert r[0].top() == r[1].top() == r[2].top()  # the ↵ chip stays at the end of its line
    assert r[3].top() > r[2].bottom()
    assert r[3].left() == r[0].left()
    assert r[4].top() == r[3].top()
    # the same tokens without the newline stay on one line
    tokens, vocab = build(["Hello", " world", " ", "Next", " line"])
    view.set_document(tokens, [Segment("text", None)], vocab)
    assert len({view.chip_rect(i).top() for i in range(5)}) == 1


def chat_doc():
    segments = [Segment("user", 0), Segment("assistant", 1)]
    pieces = [
        ("<|im_start|>", 0, MARKUP, True), ("user", 0, MARKUP, False), ("\n", 0, MARKUP, False),
        ("Hi", 0, CONTENT, False), ("!", 0, CONTENT, False), ("<|im_end|>", 0, MARKUP, True),
        ("<|im_start|>", 1, MARKUP, True), ("assistant", 1, MARKUP, False), ("\n", 1, MARKUP, False),
        ("Hello", 1, CONTENT, False), (" there", 1, CONTENT, False),
    ]
    tokens, vocab = build(pieces)
    return tokens, segments, vocab


def test_new_segment_starts_a_new_line_below_its_role_header(view) -> None:
    tokens, segments, vocab = chat_doc()
    view.set_document(tokens, segments, vocab)
    r = [view.chip_rect(i) for i in range(len(tokens))]
    assert r[5].top() == r[4].top()  # <|im_end|> ends the user's line ...
    assert r[6].left() == r[0].left()  # ... and the assistant's segment starts a new one
    gap_in_segment = r[3].top() - r[2].bottom()  # an ordinary line break (after "\n")
    gap_between = r[6].top() - r[5].bottom()  # a segment break, with room for the "assistant" header
    assert gap_in_segment > 0
    assert gap_between > gap_in_segment + r[0].height() // 2
    # the first segment has its header above it too
    assert r[0].top() > 10
    # compact: no headers, so the segment break shrinks and the chips get smaller
    view.set_compact(True)
    c = [view.chip_rect(i) for i in range(len(tokens))]
    assert c[6].top() - c[5].bottom() < gap_between
    assert c[0].top() < r[0].top()
    assert c[0].height() < r[0].height()
    assert c[6].left() == c[0].left() and c[6].top() > c[5].bottom()


def test_show_ids_makes_room_under_chips(view) -> None:
    tokens, segments, vocab = chat_doc()
    view.set_document(tokens, segments, vocab)
    line_gap_before = view.chip_rect(3).top() - view.chip_rect(2).bottom()
    height_before = view.chip_rect(3).height()
    view.set_show_ids(True)
    assert view.chip_rect(3).height() == height_before  # the id is under the chip, not in it
    line_gap_after = view.chip_rect(3).top() - view.chip_rect(2).bottom()
    assert line_gap_after > line_gap_before + 5  # the id line sits between them


def test_zoom_scales_chips_and_canvas(view) -> None:
    tokens, segments, vocab = plain_doc(30)
    view.set_document(tokens, segments, vocab)
    h1 = view.chip_rect(0).height()
    w1 = view.chip_rect(1).width()
    hint1 = view.canvas().sizeHint().height()
    view.set_zoom(2.0)
    h2 = view.chip_rect(0).height()
    w2 = view.chip_rect(1).width()
    assert abs(h2 - 2 * h1) <= 2, (h1, h2)
    assert abs(w2 - 2 * w1) <= 3, (w1, w2)
    assert view.canvas().sizeHint().height() > 1.8 * hint1
    view.set_zoom(1.0)
    assert view.chip_rect(0).height() == h1


def test_incremental_layout_keeps_earlier_chips_and_only_measures_the_rest(view) -> None:
    vocab = Vocab()
    # every token its own id, so the look-ups tell which positions were laid out again
    pieces = [f" w{i}" for i in range(200)]
    tokens, _ = build(pieces, vocab)
    segments = [Segment("text", None)]
    view.set_document(tokens[:150], segments, vocab)
    before = [view.chip_rect(i) for i in range(150)]
    # change token 120 on, and add 50 more
    changed = tokens[:120] + [DocToken(vocab.id_of(" CHANGED-AND-LONGER"), stats(3.0), 0, CONTENT, False)] + tokens[121:]
    vocab.calls.clear()
    view.set_document(changed, segments, vocab, first_changed=120)
    looked_up = set(vocab.calls)
    assert all(tokens[i].id not in looked_up for i in range(119))  # nothing before 119 was touched
    assert [view.chip_rect(i) for i in range(120)] == before[:120]
    # and the result equals a layout from scratch
    fresh = DocumentView()
    fresh.resize(view.size())
    fresh.set_theme(LIGHT)
    fresh.show()
    fresh.set_document(changed, segments, vocab)
    assert fresh.viewport().width() == view.viewport().width()
    assert [fresh.chip_rect(i) for i in range(200)] == [view.chip_rect(i) for i in range(200)]
    fresh.close()
    # a shorter document drops the chips past its end
    view.set_document(changed[:10], segments, vocab, first_changed=10)
    assert view.chip_rect(9) == before[9] and view.chip_rect(10).isNull()


def test_the_parts_worked_out_from_the_first_change_equal_those_worked_out_anew(view) -> None:
    vocab = Vocab()
    segs = [Segment("system", 0), Segment("user", 1), Segment("assistant", 2), Segment("tool", 3, name="add"),
            Segment("assistant", 4)]
    pieces = ([("<s>", 0, MARKUP, True)] + [(w, 0, CONTENT, False) for w in WORDS[:3]]
              + [(w, 1, CONTENT, False) for w in WORDS] + [(" ok", 2, CONTENT, False), ('{"a":1}', 2, TOOL_CALL, False)]
              + [(" 2", 3, CONTENT, False)] + [(w, 4, CONTENT, False) for w in WORDS[:4]])
    tokens, _ = build(pieces, vocab)

    def anew(toks):
        fresh = DocumentView()
        fresh.set_document(toks, segs, vocab)
        parts = fresh.labelled_parts()
        fresh.deleteLater()
        return parts

    # token by token, as the model writes
    for n in range(1, len(tokens) + 1):
        view.set_document(tokens[:n], segs, vocab, first_changed=n - 1)
        assert view.labelled_parts() == anew(tokens[:n])
    assert view.labelled_parts() == [(0, 4, "system"), (4, 14, "user"), (14, 16, "assistant · tool call"),
                                     (16, 17, "tool result · add"), (17, 21, "assistant")]
    # the tool call replaced by text (an edit in the middle), then the document cut inside a part
    edited = tokens[:15] + [DocToken(vocab.id_of(" fine"), stats(2.0), 2, CONTENT, False)] + tokens[16:]
    view.set_document(edited, segs, vocab, first_changed=15)
    assert view.labelled_parts() == anew(edited)
    assert view.labelled_parts()[2] == (14, 16, "assistant")
    view.set_document(edited[:9], segs, vocab, first_changed=9)
    assert view.labelled_parts() == anew(edited[:9]) == [(0, 4, "system"), (4, 9, "user")]


def test_large_document_lays_out(view, qtbot) -> None:
    vocab = Vocab()
    pieces = [WORDS[i % len(WORDS)] + ("\n" if i % 97 == 96 else "") for i in range(3000)]
    segs = [Segment("user", 0), Segment("assistant", 1)]
    tokens, _ = build([(p, 0 if i < 1500 else 1, CONTENT, False) for i, p in enumerate(pieces)], vocab)
    view.set_document(tokens, segs, vocab)
    last = view.chip_rect(2999)
    assert not last.isNull()
    assert view.canvas().height() >= last.bottom()
    view.scroll_to_end()
    bar = view.verticalScrollBar()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    view.canvas().repaint()
    # growing by one token lays out only the new one
    vocab.calls.clear()
    more = tokens + [DocToken(vocab.id_of(" end"), stats(2.0), 1, CONTENT, False)]
    view.set_document(more, segs, vocab, first_changed=3000)
    assert len(vocab.calls) <= 3
    assert view.chip_rect(3000).top() >= last.top()


def test_empty_document_shows_the_placeholder(view) -> None:
    view.set_document([], [], Vocab())
    assert view.chip_rect(0).isNull()
    img = view.canvas().grab().toImage()
    muted = LIGHT.muted
    found = sum(
        1
        for y in range(0, img.height(), 2)
        for x in range(0, img.width(), 2)
        if color_close(QColor(img.pixel(x, y)), muted, 40)
    )
    assert found > 10  # some text in the muted colour, somewhere in the middle
    assert color_close(QColor(img.pixel(2, 2)), LIGHT.window, 2)


# ---------------------------------------------------------------------------
# mouse and keys
# ---------------------------------------------------------------------------


def record(signal) -> list:
    got: list = []
    signal.connect(lambda *args: got.append(args))
    return got


def test_click_emits_token_clicked(view, qtbot) -> None:
    tokens, segments, vocab = plain_doc(12)
    view.set_document(tokens, segments, vocab)
    clicked, spans, cleared = record(view.tokenClicked), record(view.spanSelected), record(view.selectionCleared)
    qtbot.mouseClick(view.canvas(), Qt.MouseButton.LeftButton, pos=center(view.chip_rect(3)))
    assert clicked == [(3,)]
    assert spans == [] and cleared == []
    assert view.selected_token() == 3


def test_drag_selects_a_span(view, qtbot) -> None:
    tokens, segments, vocab = plain_doc(12)
    view.set_document(tokens, segments, vocab)
    clicked, spans = record(view.tokenClicked), record(view.spanSelected)
    canvas = view.canvas()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=center(view.chip_rect(2)))
    qtbot.mouseMove(canvas, pos=center(view.chip_rect(4)))
    assert view.selected_span() == (2, 5)  # live while dragging
    qtbot.mouseMove(canvas, pos=center(view.chip_rect(5)))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=center(view.chip_rect(5)))
    assert spans == [(2, 6)]
    assert clicked == []
    assert view.selected_span() == (2, 6)
    # dragging backwards gives the same kind of span
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=center(view.chip_rect(7)))
    qtbot.mouseMove(canvas, pos=center(view.chip_rect(1)))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=center(view.chip_rect(1)))
    assert spans[-1] == (1, 8)


def test_a_drag_ending_in_the_gap_after_a_chip_ends_at_that_chip(view, qtbot) -> None:
    """Released between two chips, a drag takes the chips it passed over, not
    the one after the gap (it used to take one token more than aimed at)."""
    tokens, segments, vocab = plain_doc(12)
    view.set_document(tokens, segments, vocab)
    spans = record(view.spanSelected)
    canvas = view.canvas()
    a, b = view.chip_rect(5), view.chip_rect(6)
    assert a.top() == b.top() and b.left() - a.right() >= 2  # a gap between 5 and 6 on one row
    gap = QPoint((a.right() + b.left()) // 2, a.center().y())
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=center(view.chip_rect(2)))
    qtbot.mouseMove(canvas, pos=center(view.chip_rect(4)))
    qtbot.mouseMove(canvas, pos=gap)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=gap)
    assert spans == [(2, 6)]  # chips 2 … 5
    # backwards into the same gap: from chip 9 back to chip 6
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=center(view.chip_rect(9)))
    qtbot.mouseMove(canvas, pos=center(view.chip_rect(7)))
    qtbot.mouseMove(canvas, pos=gap)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=gap)
    assert spans[-1] == (6, 10)


def test_shift_click_selects_from_the_last_clicked_chip(view, qtbot) -> None:
    tokens, segments, vocab = plain_doc(12)
    view.set_document(tokens, segments, vocab)
    clicked, spans = record(view.tokenClicked), record(view.spanSelected)
    canvas = view.canvas()
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=center(view.chip_rect(6)))
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                     pos=center(view.chip_rect(2)))
    assert clicked == [(6,)]
    assert spans == [(2, 7)]
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier,
                     pos=center(view.chip_rect(9)))
    assert spans[-1] == (6, 10)  # still from the last plain click
    assert view.selected_span() == (6, 10)


def test_click_on_empty_space_clears(view, qtbot) -> None:
    tokens, segments, vocab = plain_doc(6)  # one short line: the rest of the canvas is empty
    view.set_document(tokens, segments, vocab)
    clicked, cleared = record(view.tokenClicked), record(view.selectionCleared)
    canvas = view.canvas()
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=center(view.chip_rect(1)))
    view.select_span(0, 3)
    empty = QPoint(view.chip_rect(5).right() + 40, view.chip_rect(5).center().y())
    assert view.index_at(empty) is None
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=empty)
    assert cleared == [()]
    assert clicked == [(1,)]
    assert view.selected_token() is None and view.selected_span() is None
    below = QPoint(view.chip_rect(0).center().x(), view.chip_rect(0).bottom() + 60)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=below)
    assert len(cleared) == 2


def test_keys_escape_and_arrows(view, qtbot) -> None:
    tokens, segments, vocab = plain_doc(8)
    view.set_document(tokens, segments, vocab)
    clicked, cleared = record(view.tokenClicked), record(view.selectionCleared)
    canvas = view.canvas()
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=center(view.chip_rect(3)))
    qtbot.keyClick(canvas, Qt.Key.Key_Right)
    qtbot.keyClick(canvas, Qt.Key.Key_Right)
    qtbot.keyClick(canvas, Qt.Key.Key_Left)
    assert clicked == [(3,), (4,), (5,), (4,)]
    assert view.selected_token() == 4
    qtbot.keyClick(canvas, Qt.Key.Key_Escape)
    assert cleared == [()]
    assert view.selected_token() is None
    # at the ends the selection stays put
    view.select_token(7)
    qtbot.keyClick(canvas, Qt.Key.Key_Right)
    assert clicked[-1] == (7,)


def test_programmatic_selection_emits_nothing_and_scrolls_into_view(view, qtbot) -> None:
    tokens, segments, vocab = plain_doc(600)
    view.set_document(tokens, segments, vocab)
    signals = record(view.tokenClicked) + record(view.spanSelected) + record(view.selectionCleared)
    bar = view.verticalScrollBar()
    assert bar.value() == 0
    view.select_token(590)
    assert view.selected_token() == 590
    r = view.chip_rect(590)
    assert bar.value() > 0
    assert bar.value() <= r.top() and r.bottom() <= bar.value() + view.viewport().height()
    view.select_span(5, 9)
    assert view.selected_span() == (5, 9)
    assert bar.value() <= view.chip_rect(5).top()
    view.clear_selection()
    assert view.selected_token() is None and view.selected_span() is None
    assert signals == []


# ---------------------------------------------------------------------------
# tooltip
# ---------------------------------------------------------------------------


def test_tooltip_text(qtbot) -> None:
    vocab = Vocab()
    st = TokenStats(prob=0.152, logprob=math.log(0.152), bits=-math.log2(0.152), rank=3, entropy=4.1,
                    top_ids=(5,), top_probs=(0.4,))
    tiny = TokenStats(prob=3.4e-6, logprob=math.log(3.4e-6), bits=-math.log2(3.4e-6), rank=812, entropy=0.25,
                      top_ids=(5,), top_probs=(0.9,))
    tokens = [
        DocToken(vocab.id_of("The"), None, 0, CONTENT, False),
        DocToken(vocab.id_of(" cat"), st, 0, CONTENT, False),
        DocToken(vocab.id_of(" zebra"), tiny, 0, CONTENT, False),
        DocToken(vocab.id_of("<|im_end|>", True), stats(0.5), 0, MARKUP, True),
    ]
    v = DocumentView()
    qtbot.addWidget(v)
    v.set_document(tokens, [Segment("user", 0)], vocab)
    first = v.tooltip_text(0)
    assert "first token: nothing predicted it" in first
    assert "p =" not in first
    tip = v.tooltip_text(1)
    assert tip.splitlines()[0] == f"{SPACE_MARK}cat"
    assert f"id {vocab.id_of(' cat')}" in tip
    assert "p = 0.152" in tip and "15.2 %" in tip
    assert "surprise = 2.72 bits" in tip
    assert "rank 3" in tip
    assert "entropy = 4.10 bits" in tip
    small = v.tooltip_text(2)
    assert "p = 3.40e-06" in small and "rank 812" in small and "entropy = 0.25 bits" in small
    assert "18.17 bits" in small
    assert "special token" in v.tooltip_text(3)
    assert v.tooltip_text(4) == ""
    assert format_prob(0.5) == "0.500" and format_prob(0.0004) == "4.00e-04"


# ---------------------------------------------------------------------------
# colours
# ---------------------------------------------------------------------------


def color_close(a: QColor, b: QColor, tol: int = 6) -> bool:
    return abs(a.red() - b.red()) <= tol and abs(a.green() - b.green()) <= tol and abs(a.blue() - b.blue()) <= tol


def pixel(img: QImage, x: int, y: int) -> QColor:
    return QColor(img.pixel(x, y))


def left_padding(rect: QRect) -> tuple[int, int]:
    return rect.left() + 2, rect.center().y()


def colour_doc():
    segments = [Segment("user", 0)]
    pieces = ["First", " low", " high", ("<|im_end|>", 0, MARKUP, True), ("\n", 0, MARKUP, False), " mid"]
    bits = {1: 0.3, 2: 14.0, 3: 9.0, 4: 12.0, 5: 6.0}
    tokens, vocab = build(pieces, bits=lambda i: bits[i])
    return tokens, segments, vocab


def test_chip_colours_follow_surprise(view) -> None:
    tokens, segments, vocab = colour_doc()
    view.set_document(tokens, segments, vocab)
    img = view.canvas().grab().toImage()
    low, high = view.chip_rect(1), view.chip_rect(2)
    assert color_close(pixel(img, *left_padding(low)), surprise_color(0.3))
    assert color_close(pixel(img, *left_padding(high)), surprise_color(14.0))
    assert not color_close(surprise_color(0.3), surprise_color(14.0), 40)  # the check can fail
    # the first token: nothing predicted it, panel colour
    assert color_close(pixel(img, *left_padding(view.chip_rect(0))), LIGHT.panel)
    # the special token: special fill, with its surprise as a strip along the bottom
    special = view.chip_rect(3)
    assert color_close(pixel(img, *left_padding(special)), LIGHT.special_fill)
    assert color_close(pixel(img, special.center().x(), special.bottom() - 1), surprise_color(9.0), 10)
    # markup (the "\n" after it): not filled with its surprise, but has the strip
    markup = view.chip_rect(4)
    assert not color_close(pixel(img, *left_padding(markup)), surprise_color(12.0), 30)
    assert color_close(pixel(img, markup.center().x(), markup.bottom() - 1), surprise_color(12.0), 10)


def test_color_by_surprise_off_uses_panel(view) -> None:
    tokens, segments, vocab = colour_doc()
    view.set_document(tokens, segments, vocab)
    view.set_color_by_surprise(False)
    img = view.canvas().grab().toImage()
    for i in (0, 1, 2, 5):
        assert color_close(pixel(img, *left_padding(view.chip_rect(i))), LIGHT.panel)
    assert color_close(pixel(img, *left_padding(view.chip_rect(3))), LIGHT.special_fill)


def test_dark_theme_colours(view) -> None:
    tokens, segments, vocab = colour_doc()
    view.set_document(tokens, segments, vocab)
    view.set_theme(DARK)
    img = view.canvas().grab().toImage()
    assert color_close(pixel(img, 1, 1), DARK.window)
    assert color_close(pixel(img, *left_padding(view.chip_rect(2))), surprise_color(14.0))
    assert color_close(pixel(img, *left_padding(view.chip_rect(3))), DARK.special_fill)


def test_selection_and_highlight_are_drawn(view) -> None:
    tokens, segments, vocab = plain_doc(12)
    view.set_document(tokens, segments, vocab)
    r3 = view.chip_rect(3)
    gap = QPoint(r3.right() + 2, r3.center().y())  # between chips 3 and 4
    before = pixel(view.canvas().grab().toImage(), gap.x(), gap.y())
    assert color_close(before, LIGHT.window)
    view.select_span(2, 6)
    after = pixel(view.canvas().grab().toImage(), gap.x(), gap.y())
    assert not color_close(after, LIGHT.window, 10)
    assert after.red() > after.blue() + 20  # orange tint of the selection
    view.clear_selection()
    view.select_token(8)
    r8 = view.chip_rect(8)
    img = view.canvas().grab().toImage()
    ring = pixel(img, r8.center().x(), r8.top() - 2)
    assert color_close(ring, LIGHT.highlight, 40)


def test_marks_are_drawn_unlike_real_text(qtbot) -> None:
    """A space mark '·' and a real '·' in the same chip are drawn in different colours."""
    vocab = Vocab()
    real_dot = TokenText(" \u00b7".encode(), " \u00b7", "\u00b7\u00b7", False, False, False, ((0, 1),))
    vocab.by_id[7] = real_dot
    tokens = [DocToken(1, None, 0, CONTENT, False), DocToken(7, stats(15.0), 0, CONTENT, False)]
    vocab.by_id[1] = make_text("x")
    v = DocumentView()
    qtbot.addWidget(v)
    v.resize(500, 200)
    v.set_theme(LIGHT)
    v.set_zoom(3.0)
    v.set_document(tokens, [Segment("text", None)], vocab)
    img = v.canvas().grab().toImage()
    r = v.chip_rect(1)

    def darkest(x0: int, x1: int) -> int:
        return min(
            QColor(img.pixel(x, y)).lightness()
            for x in range(x0, x1)
            for y in range(r.top() + 3, r.bottom() - 3)
        )

    mid = r.center().x()
    mark, real = darkest(r.left() + 3, mid), darkest(mid, r.right() - 3)
    assert real < 40  # the real '·' in black on the yellow of high surprise
    assert mark > real + 50  # the space mark muted


# ---------------------------------------------------------------------------
# a real tokenizer, and screenshots
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    path = write_tiny_gguf(tmp_path_factory.mktemp("docview") / "tiny.gguf")
    info = tokenizer_from_gguf(gguf.GGUFReader(path))
    tokenizer = Tokenizer.from_str(info.tokenizer_json)
    return tokenizer, TokenTextTable(tokenizer)


def tiny_chat(tokenizer, table):
    messages = [
        ("system", "You are a helpful assistant."),
        ("user", "What is the capital of France?\nAnswer  in one word ·"),
        ("assistant", "Paris, of course. Tab\there — done."),
        ("user", "And you? 東京 🗾"),
    ]
    tokens, segments = [], []
    for m, (role, content) in enumerate(messages):
        segments.append(Segment(role, m))
        for part, kind in (("<|im_start|>", MARKUP), (role + "\n", MARKUP), (content, CONTENT),
                           ("<|im_end|>", MARKUP), ("\n", MARKUP)):
            for tid in tokenizer.encode(part, add_special_tokens=False).ids:
                bits = ((len(tokens) * 37) % 160) / 10.0
                st = None if not tokens else stats(bits, rank=1 + int(bits), entropy=bits / 2 + 0.5)
                tokens.append(DocToken(tid, st, m, kind, table(tid).is_special))
    return tokens, segments


def test_real_tokenizer_document(view, tiny_table) -> None:
    tokenizer, table = tiny_table
    tokens, segments = tiny_chat(tokenizer, table)
    assert any(t.special for t in tokens) and any(table(t.id).partial_utf8 for t in tokens)
    view.set_document(tokens, segments, table)
    rects = [view.chip_rect(i) for i in range(len(tokens))]
    assert all(not r.isNull() for r in rects)
    for i in range(1, len(tokens)):
        if tokens[i].segment != tokens[i - 1].segment or table(tokens[i - 1].id).has_newline:
            assert rects[i].top() > rects[i - 1].bottom() and rects[i].left() == rects[0].left()
    specials = [i for i, t in enumerate(tokens) if t.special]
    img = view.canvas().grab().toImage()
    for i in specials[:3]:
        assert color_close(pixel(img, *left_padding(rects[i])), LIGHT.special_fill)
    assert "<|im_start|>" in view.tooltip_text(0)


def test_screenshots(qtbot, tiny_table, tmp_path) -> None:
    """Renders the themes, a zoom and compact mode; kept in $LMDESK_SCREENSHOTS if set."""
    tokenizer, table = tiny_table
    tokens, segments = tiny_chat(tokenizer, table)
    out = Path(os.environ.get("LMDESK_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    cases = [
        ("light", LIGHT, 1.0, False), ("dark", DARK, 1.0, False), ("high_contrast", HIGH_CONTRAST, 1.0, False),
        ("zoom16", LIGHT, 1.6, False), ("compact", LIGHT, 1.0, True),
    ]
    for name, theme, zoom, compact in cases:
        v = DocumentView()
        qtbot.addWidget(v)
        v.resize(760, 560)
        v.set_theme(theme)
        v.set_zoom(zoom)
        v.set_compact(compact)
        v.set_document(tokens, segments, table)
        v.show()
        qtbot.waitExposed(v)
        v.select_token(5)
        v.select_span(20, 26)
        img = v.grab().toImage()
        path = out / f"docview_{name}.png"
        assert img.save(str(path))
        colours = {img.pixel(x, y) for x in range(0, img.width(), 7) for y in range(0, img.height(), 7)}
        assert len(colours) > 20  # chips in many colours, not a blank window
        assert color_close(QColor(img.pixel(img.width() - 20, img.height() - 3)), theme.window, 3)
        v.close()


def test_scroll_to_end_follows_re_layouts_until_scrolled_away(view, qtbot) -> None:
    tokens, segments, vocab = plain_doc(800)
    view.set_document(tokens, segments, vocab)
    bar = view.verticalScrollBar()
    view.scroll_to_end()
    assert bar.maximum() > 0 and bar.value() == bar.maximum()
    view.resize(300, 300)  # narrower: more lines, a longer canvas
    qtbot.waitUntil(lambda: view.viewport().width() < 300)
    assert bar.value() == bar.maximum()
    view.set_zoom(1.5)
    assert bar.value() == bar.maximum()
    # the reader scrolls up: a re-layout now keeps the chip at the top where it was
    bar.triggerAction(bar.SliderAction.SliderPageStepSub)
    bar.triggerAction(bar.SliderAction.SliderPageStepSub)
    y = bar.value()
    i = next(i for i in range(800) if view.chip_rect(i).bottom() >= y)
    offset = view.chip_rect(i).top() - y
    view.set_zoom(1.0)
    assert bar.value() < bar.maximum()
    assert view.chip_rect(i).top() - bar.value() == offset


def test_hover_shows_the_tooltip(view, qtbot) -> None:
    from PySide6.QtCore import QEvent
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QApplication, QToolTip

    tokens, segments, vocab = plain_doc(8)
    view.set_document(tokens, segments, vocab)
    canvas = view.canvas()
    pos = view.chip_rect(2).center()
    QApplication.sendEvent(canvas, QHelpEvent(QEvent.Type.ToolTip, pos, canvas.mapToGlobal(pos)))
    qtbot.waitUntil(QToolTip.isVisible)
    assert "surprise = 3.00 bits" in QToolTip.text()
    assert "rank 1" in QToolTip.text()
    empty = QPoint(pos.x(), view.chip_rect(7).bottom() + 50)
    assert view.index_at(empty) is None
    QApplication.sendEvent(canvas, QHelpEvent(QEvent.Type.ToolTip, empty, canvas.mapToGlobal(empty)))
    qtbot.waitUntil(lambda: not QToolTip.isVisible())


def test_the_probability_shown_gives_the_bits_shown_by_hand() -> None:
    """p = 0.012 on the screen gave 6.38 bits by hand where 6.33 was shown:
    every p shown now gives its bits, to the two decimals shown."""
    rng = np.random.default_rng(0)
    for bits in np.r_[rng.uniform(0, 25, 2000), 6.33, 0.07, 9.97]:
        p = 2.0 ** -bits
        shown = format_prob(p, bits)
        assert f"{-math.log2(float(shown)):.2f}" == f"{bits:.2f}", (bits, shown)
    assert format_prob(2.0 ** -6.33, 6.33) == "0.0124"


def test_a_byte_chip_says_which_character_it_helps_make(qtbot) -> None:
    """中 in three byte tokens: each chip's tooltip names the character and
    the chips that make it; a chip's surprise is also put as '1 chance in N'."""
    vocab = Vocab()
    zhong = "中".encode()
    ids = []
    for raw in (zhong[:1], zhong[1:2], zhong[2:]):
        new = 900 + len(ids)
        vocab.by_id[new] = TokenText(raw, "", f"<0x{raw[0]:02X}>", False, True, False, ())
        ids.append(new)
    tokens = [DocToken(vocab.id_of("The"), None, 0, CONTENT, False)]
    tokens += [DocToken(i, stats(6.0), 0, CONTENT, False) for i in ids]
    v = DocumentView()
    qtbot.addWidget(v)
    v.set_document(tokens, [Segment("user", 0)], vocab)
    for index in (1, 2, 3):
        assert "tokens 1–3 together make ‘中’ (U+4E2D)" in v.tooltip_text(index)
    assert "together make" not in v.tooltip_text(0)
    assert "1 chance in 64" in v.tooltip_text(2)  # 6 bits: p = 1/64


class PaintedRects(QObject):
    """Records the rectangles of the paint events a widget gets."""

    def __init__(self, widget) -> None:
        super().__init__()
        self.rects: list[QRect] = []
        widget.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.Paint:
            self.rects.append(QRect(event.rect()))
        return False

    def covers(self, rect: QRect) -> bool:
        return any(r.contains(rect) for r in self.rects)


def test_selecting_a_chip_repaints_only_the_chips_whose_outline_changes(view, qtbot) -> None:
    """The window sets "no chip selected" after every token the model writes: that
    repainted the whole view (7-10 ms with a full page of chips) for nothing."""
    tokens, segments, vocab = plain_doc(120)
    view.set_document(tokens, segments, vocab)
    view.select_token(30)
    qtbot.wait(30)
    painted = PaintedRects(view.canvas())
    view.select_token(None)
    view.select_token(None)
    qtbot.waitUntil(lambda: bool(painted.rects), timeout=2000)
    qtbot.wait(30)
    ring = view.chip_rect(30).adjusted(-3, -3, 3, 3)  # the outline drawn around it, which must go
    assert painted.covers(ring)
    visible = view.viewport().rect().translated(0, view.verticalScrollBar().value())
    area = sum(r.width() * r.height() for r in painted.rects)
    assert area < visible.width() * visible.height() / 4
    painted.rects.clear()
    view.select_token(None)  # nothing changes: nothing is painted
    view.clear_selection()
    qtbot.wait(50)
    assert painted.rects == []
    view.select_token(31)  # in view already: no scrolling
    qtbot.waitUntil(lambda: bool(painted.rects), timeout=2000)
    qtbot.wait(30)
    assert painted.covers(view.chip_rect(31).adjusted(-3, -3, 3, 3))
    assert sum(r.width() * r.height() for r in painted.rects) < visible.width() * visible.height() / 4

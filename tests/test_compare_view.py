"""Tests for lmdesk.ui.compare_view: two models' surprise on one text, word by word.

The comparisons are built by the engine's own ``align`` and ``figures`` from
:class:`Scored` texts made by hand: tokens, the characters they cover and the
bits they carry chosen here, each token's bits spread evenly over its
characters by hand. What the view shows is checked against numbers worked
out by hand below (and colours against the theme's scale for those numbers).

Set LMDESK_SCREENSHOTS=/some/folder to keep the screenshots of
``test_screenshots`` (they go to pytest's tmp_path otherwise).
"""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QRect, Qt
from PySide6.QtGui import QColor, QHelpEvent, QImage
from PySide6.QtWidgets import QApplication, QFileDialog, QToolTip

from lmdesk.engine import compare
from lmdesk.engine.compare import Scored
from lmdesk.engine.document import CONTENT, DocToken
from lmdesk.engine.stats import SpanSummary, TokenStats
from lmdesk.ui.compare_view import OTHER_FOLDER, CompareView, covering_tokens
from lmdesk.ui.theme import HIGH_CONTRAST, LIGHT, surprise_color

# ---------------------------------------------------------------------------
# hand-made comparisons
# ---------------------------------------------------------------------------

TEXT = "The cat sat."  # words: "The" 0-3, " cat" 3-7, " sat" 7-11, "." 11-12
# model A: a GPT-2-style tokenizer, one token a word
A_TOKENS = [(0, 3, None), (3, 7, 3.0), (7, 11, 2.0), (11, 12, 1.0)]
# model B: a start token covering nothing, "Th", "e c" straddling two words, "at", " sat."
B_TOKENS = [(0, 0, None), (0, 2, 4.0), (2, 5, 6.0), (5, 7, 2.0), (7, 12, 0.5)]
# by hand: B's "e c" gives 2 bits to each of e, space, c; " sat." 0.1 to each character
A_WORDS = [0.0, 3.0, 2.0, 1.0]
B_WORDS = [4.0 + 2.0, 2.0 + 2.0 + 2.0, 0.4, 0.1]


def stats(bits: float) -> TokenStats:
    p = 2.0 ** -bits
    return TokenStats(prob=p, logprob=math.log(p), bits=bits, rank=1, entropy=2.0, top_ids=(1,), top_probs=(p,))


def make_scored(model: str, text: str, tokens: list[tuple[int, int, float | None]],
                parameters: int | None = None) -> Scored:
    """A Scored by hand: each token's bits shared evenly by its characters."""
    char_bits = np.zeros(len(text))
    for a, b, bits in tokens:
        if bits is not None:
            if b > a:
                char_bits[a:b] += bits / (b - a)
            else:
                char_bits[min(a, len(text) - 1)] += bits
    predicted = [bits for _, _, bits in tokens if bits is not None]
    total = sum(predicted)
    per = total / len(predicted)
    return Scored(
        model=model, text=text,
        tokens=tuple(DocToken(id=k, stats=None if bits is None else stats(bits), segment=0, kind=CONTENT,
                              special=False) for k, (_, _, bits) in enumerate(tokens)),
        spans=tuple((a, b) for a, b, _ in tokens), char_bits=char_bits,
        summary=SpanSummary(tokens=len(predicted), total_bits=total, bits_per_token=per, perplexity=2.0 ** per),
        parameters=parameters,
    )


def show(view: CompareView, text: str, scored: list[Scored]) -> None:
    alignment = compare.align(text, scored)
    view.set_result(alignment, [compare.figures(s) for s in scored], scored)


@pytest.fixture
def view(qtbot) -> CompareView:
    w = CompareView(theme=LIGHT)
    qtbot.addWidget(w)
    w.resize(1100, 700)
    w.set_models("SmolA", "GemmaB", [("SmolA", "/models/a"), ("GemmaB", "/models/b")])
    show(w, TEXT, [make_scored("SmolA", TEXT, A_TOKENS, 134_515_008), make_scored("GemmaB", TEXT, B_TOKENS)])
    w.show()
    qtbot.waitExposed(w)
    return w


def center(rect: QRect) -> QPoint:
    return rect.center()


def canvas_image(view: CompareView) -> QImage:
    return view.canvas().grab().toImage()


def pixel(image: QImage, x: float, y: float) -> QColor:
    dpr = image.devicePixelRatio()
    return image.pixelColor(round(x * dpr), round(y * dpr))


def close(c1: QColor, c2: QColor, tol: int = 3) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(c1.getRgb()[:3], c2.getRgb()[:3]))


def band_points(view: CompareView, index: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """The middle of the top band (A) and of the bottom band (B) of a chip."""
    r = view.chip_rect(index)
    m = view.flow.m
    return ((r.center().x(), r.top() + m.text_h + m.band_h / 2),
            (r.center().x(), r.top() + m.text_h + 1.5 * m.band_h))


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------


def test_the_figures_table_shows_each_models_figures_bits_per_character_first(view) -> None:
    # by hand: A 6 bits over 3 predicted tokens, B 12.5 over 4; 12 characters, 4 words
    assert view.figures_text() == [
        ["A", "SmolA (135M)", "0.500", "1.50", "6.0", "3", "2.000", "4.00"],
        ["B", "GemmaB", f"{12.5 / 12:.3f}", f"{12.5 / 4:.2f}", "12.5", "4", "3.125", f"{2 ** 3.125:.2f}"],
    ]
    assert view.table.horizontalHeaderItem(2).text() == "bits per\ncharacter"


def test_the_reading_says_how_many_bits_per_character_b_needs_more_or_fewer(view) -> None:
    # 12.5/12 - 0.5 = 0.5417 bits per character more, +108 % of A's 0.5
    assert view.reading_label.text().startswith("GemmaB needs 0.54 bits per character more than SmolA (+108 %).")
    fewer = "The cat sat."
    b = [(0, 3, None), (3, 12, 1.8)]  # 1.8 bits in all: 0.15 per character, 0.35 fewer (−70 %)
    show(view, fewer, [make_scored("SmolA", fewer, A_TOKENS), make_scored("GemmaB", fewer, b)])
    assert view.reading_label.text().startswith("GemmaB needs 0.35 bits per character fewer than SmolA (\u221270 %).")


# ---------------------------------------------------------------------------
# the chips
# ---------------------------------------------------------------------------


def test_a_words_tooltip_gives_both_models_exact_bits_and_the_difference(view) -> None:
    tip = view.word_tooltip(1).split("\n")
    assert tip[0] == "·cat"
    assert "SmolA: 3.0000 bits (0.7500 per character)" in tip
    assert "GemmaB: 6.0000 bits (1.5000 per character)" in tip
    assert "GemmaB − SmolA: +3.0000 bits (GemmaB more surprised than SmolA)" in tip
    tip = view.word_tooltip(2).split("\n")
    assert "GemmaB: 0.4000 bits (0.1000 per character)" in tip
    assert "GemmaB − SmolA: \u22121.6000 bits (GemmaB less surprised than SmolA)" in tip


def test_each_chip_shows_a_on_top_and_b_below_in_the_surprise_colour_of_its_bits(view) -> None:
    image = canvas_image(view)
    for i, (a_bits, b_bits) in enumerate(zip(A_WORDS, B_WORDS)):
        top, bottom = band_points(view, i)
        assert close(pixel(image, *top), surprise_color(a_bits)), (i, pixel(image, *top).name())
        assert close(pixel(image, *bottom), surprise_color(b_bits)), (i, pixel(image, *bottom).name())


def test_hovering_a_chip_shows_its_tooltip(qtbot, view) -> None:
    canvas = view.canvas()
    pos = center(view.chip_rect(1))
    event = QHelpEvent(QEvent.Type.ToolTip, pos, canvas.mapToGlobal(pos))
    QApplication.sendEvent(canvas, event)
    qtbot.waitUntil(lambda: QToolTip.isVisible())
    assert "GemmaB: 6.0000 bits" in QToolTip.text() and "SmolA: 3.0000 bits" in QToolTip.text()
    QToolTip.hideText()


def test_per_character_colours_each_word_by_its_bits_divided_by_its_characters(view) -> None:
    view.set_per_character(True)
    image = canvas_image(view)
    top, bottom = band_points(view, 1)  # " cat": 4 characters
    assert close(pixel(image, *top), surprise_color(3.0 / 4))
    assert close(pixel(image, *bottom), surprise_color(6.0 / 4))
    assert view.per_char_box.isChecked()


def hue_sign(c: QColor) -> int:
    """+1 for an orange colour (red over blue), −1 for a blue one, 0 for grey."""
    if abs(c.red() - c.blue()) <= 12:
        return 0
    return 1 if c.red() > c.blue() else -1


def test_difference_mode_colours_more_surprise_orange_less_blue_and_none_grey(qtbot, view) -> None:
    qtbot.mouseClick(view.diff_button, Qt.MouseButton.LeftButton)
    assert view.mode() == "difference"
    image = canvas_image(view)
    signs = [hue_sign(pixel(image, view.chip_rect(i).center().x(), view.chip_rect(i).bottom() - 3))
             for i in range(4)]
    assert signs == [1, 1, -1, -1]  # B − A: +6, +3, −1.6, −0.9
    # the same model twice: every word grey
    same = make_scored("SmolA", TEXT, A_TOKENS)
    show(view, TEXT, [same, same])
    image = canvas_image(view)
    assert [hue_sign(pixel(image, view.chip_rect(i).center().x(), view.chip_rect(i).bottom() - 3))
            for i in range(4)] == [0, 0, 0, 0]


def test_a_larger_difference_is_further_from_grey(view) -> None:
    view.set_mode("difference")
    image = canvas_image(view)
    def distance(i: int) -> int:
        c = pixel(image, view.chip_rect(i).center().x(), view.chip_rect(i).bottom() - 3)
        return abs(c.red() - c.blue())
    assert distance(0) > distance(1)  # +6 bits against +3
    assert distance(2) > distance(3)  # −1.6 against −0.9


def test_white_space_is_visible_and_a_new_line_starts_a_new_row(view) -> None:
    text = "One two.\nThree"
    a = [(0, 3, None), (3, 7, 1.0), (7, 8, 1.0), (8, 14, 2.0)]
    show(view, text, [make_scored("SmolA", text, a), make_scored("GemmaB", text, a)])
    assert view.word_tooltip(1).split("\n")[0] == "·two"
    assert view.word_tooltip(3).split("\n")[0] == "↵Three"
    assert view.chip_rect(3).left() == view.chip_rect(0).left()
    assert view.chip_rect(3).top() > view.chip_rect(2).bottom()
    assert view.chip_rect(1).top() == view.chip_rect(0).top()


# ---------------------------------------------------------------------------
# a word clicked, the most different words
# ---------------------------------------------------------------------------


def test_clicking_a_word_selects_it_and_shows_both_models_covering_tokens(qtbot, view) -> None:
    with qtbot.waitSignal(view.wordSelected) as signal:
        qtbot.mouseClick(view.canvas(), Qt.MouseButton.LeftButton, pos=center(view.chip_rect(1)))
    assert signal.args == [1]
    assert view.selected_word() == 1
    text = view.details_text()
    assert "‘·cat’" in text
    assert "GemmaB − SmolA: +3.00 bits" in text
    a_part, b_part = text.split("SmolA's tokens on it:")[1].split("GemmaB's tokens on it:")
    assert "#1 ‘·cat’ 3.00 bits · all of it here" in a_part
    assert "#2 ‘e·c’ 6.00 bits · straddles words: 2 of its 3 characters here → 4.00 bits" in b_part
    assert "#3 ‘at’ 2.00 bits · all of it here" in b_part
    assert "#1" not in b_part and "#4" not in b_part
    # the first word: B's start token covers no character, "Th" and a third of "e c"
    qtbot.mouseClick(view.canvas(), Qt.MouseButton.LeftButton, pos=center(view.chip_rect(0)))
    b_part = view.details_text().split("GemmaB's tokens on it:")[1]
    assert "#0 no prediction (the first token) · covers no character (a start token)" in b_part
    assert "straddles words: 1 of its 3 characters here → 2.00 bits" in b_part
    assert "SmolA's first token lies here and nothing predicted it" in view.details_text()
    assert "first token lies here" not in (view.select_word(1) or view.details_text())


def test_the_covering_tokens_bits_add_up_to_the_words_bits(view) -> None:
    al = view._alignment
    for m, want in ((0, A_WORDS), (1, B_WORDS)):
        for i, bits in enumerate(want):
            got = sum(t.bits_here or 0.0 for t in covering_tokens(al, view._scored[m], m, i))
            assert got == pytest.approx(bits)


def test_tokens_holding_pieces_of_one_character_say_so(view) -> None:
    text = "x 中"  # a byte-level model: "中" is three bytes, cut into two tokens of 2.5 and 1.5 bits
    a = [(0, 1, None), (1, 3, 2.5), (2, 3, 1.5)]
    b = [(0, 1, None), (1, 3, 4.0)]
    show(view, text, [make_scored("SmolA", text, a), make_scored("GemmaB", text, b)])
    view.select_word(1)
    a_part, b_part = view.details_text().split("SmolA's tokens on it:")[1].split("GemmaB's tokens on it:")
    assert "#1 ‘·中’ (some of its bytes) 2.50 bits · all of it here" in a_part
    assert "#2 ‘中’ (some of its bytes) 1.50 bits · all of it here" in a_part
    assert "#1 ‘·中’ 4.00 bits · all of it here" in b_part
    assert "SmolA: 4.0000 bits" in view.word_tooltip(1)


def test_scoring_the_same_text_again_keeps_the_selected_word(view) -> None:
    view.select_word(2)
    b = [(0, 0, None), (0, 12, 24.0)]  # B scored again: 2 bits a character
    show(view, TEXT, [make_scored("SmolA", TEXT, A_TOKENS), make_scored("GemmaB", TEXT, b)])
    assert view.selected_word() == 2
    assert "GemmaB: 8.00 bits (2.00 per character)" in view.details_text()
    assert "straddles words: 4 of its 12 characters here → 8.00 bits" in view.details_text()
    other = "A dog."
    show(view, other, [make_scored("SmolA", other, [(0, 1, None), (1, 6, 5.0)]),
                       make_scored("GemmaB", other, [(0, 1, None), (1, 6, 2.0)])])
    assert view.selected_word() is None  # another text: nothing selected


def test_arrow_keys_move_the_selected_word(qtbot, view) -> None:
    qtbot.mouseClick(view.canvas(), Qt.MouseButton.LeftButton, pos=center(view.chip_rect(1)))
    qtbot.keyClick(view.canvas(), Qt.Key.Key_Right)
    assert view.selected_word() == 2
    qtbot.keyClick(view.canvas(), Qt.Key.Key_Left)
    qtbot.keyClick(view.canvas(), Qt.Key.Key_Left)
    qtbot.keyClick(view.canvas(), Qt.Key.Key_Left)
    assert view.selected_word() == 0


def test_the_most_different_line_lists_the_extremes_and_selects_one(qtbot, view) -> None:
    line = view.most_different_text()
    # "The" (+6) is left out: A's first token lies on it and nothing predicted that token
    assert ("GemmaB more surprised: ‘cat’ +3.0 · "
            "GemmaB less surprised: ‘sat’ \u22121.6, ‘.’ \u22120.9") in line
    assert line.endswith("left out: ‘The’ (a first token, with no prediction)")
    href = re.search(r"href='([^']+)'[^>]*>‘sat’", view.different_label.text()).group(1)
    view.different_label.linkActivated.emit(href)
    assert view.selected_word() == 2
    assert "‘·sat’" in view.details_text()


# ---------------------------------------------------------------------------
# three models, clearing, models, busy
# ---------------------------------------------------------------------------


def test_three_models_all_in_the_table_two_in_the_chips_chosen_by_the_pickers(view) -> None:
    c = [(0, 6, None), (6, 12, 9.0)]  # C: 9 bits on "at sat.": " cat" gets 1.5, " sat" 6, "." 1.5
    show(view, TEXT, [make_scored("SmolA", TEXT, A_TOKENS), make_scored("GemmaB", TEXT, B_TOKENS),
                      make_scored("C", TEXT, c)])
    assert [row[:2] for row in view.figures_text()] == [["A", "SmolA"], ["B", "GemmaB"], ["", "C"]]
    assert view.pickers.isVisibleTo(view)
    view.set_pair(0, 2)
    assert [row[0] for row in view.figures_text()] == ["A", "", "B"]
    assert "C: 6.0000 bits (1.5000 per character)" in view.word_tooltip(2).split("\n")
    image = canvas_image(view)
    _, bottom = band_points(view, 2)
    assert close(pixel(image, *bottom), surprise_color(6.0))
    assert view.reading_label.text().startswith("C needs 0.25 bits per character more than SmolA (+50 %).")


def test_two_models_need_no_pickers(view) -> None:
    assert not view.pickers.isVisibleTo(view)


def test_clear_shows_the_message_and_nothing_else(view) -> None:
    view.clear("Load a second model to compare.")
    assert view.figures_text() == []
    assert view.chip_rect(0).isNull()
    assert not view.table.isVisibleTo(view)
    assert view.message == "Load a second model to compare."


def test_load_emits_the_chosen_folder_and_other_folder_asks_for_one(qtbot, view, monkeypatch) -> None:
    assert [view.combo.itemText(i) for i in range(view.combo.count())] == ["SmolA", "GemmaB", OTHER_FOLDER]
    view.combo.setCurrentIndex(1)
    with qtbot.waitSignal(view.loadRequested) as signal:
        qtbot.mouseClick(view.load_button, Qt.MouseButton.LeftButton)
    assert signal.args == ["/models/b"]
    view.combo.setCurrentIndex(2)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: "/elsewhere/Qwen3-0.6B"))
    with qtbot.waitSignal(view.loadRequested) as signal:
        qtbot.mouseClick(view.load_button, Qt.MouseButton.LeftButton)
    assert signal.args == ["/elsewhere/Qwen3-0.6B"]
    assert view.combo.currentText() == "Qwen3-0.6B"  # kept in the list
    view.combo.setCurrentIndex(view.combo.count() - 1)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: ""))
    with qtbot.assertNotEmitted(view.loadRequested):
        qtbot.mouseClick(view.load_button, Qt.MouseButton.LeftButton)


def test_close_emits_close_requested_and_is_off_without_a_second_model(qtbot, view) -> None:
    with qtbot.waitSignal(view.closeRequested):
        qtbot.mouseClick(view.close_button, Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(view.compareRequested):
        qtbot.mouseClick(view.again_button, Qt.MouseButton.LeftButton)
    view.set_models("SmolA", None, [("GemmaB", "/models/b")])
    assert not view.close_button.isEnabled()
    assert not view.again_button.isEnabled()
    assert view.load_button.isEnabled()


def test_busy_disables_the_controls_that_start_work_and_keeps_the_chips(qtbot, view) -> None:
    view.set_busy(True, "Scoring with GemmaB…")
    assert view.status.text() == "Scoring with GemmaB…"
    for w in (view.load_button, view.close_button, view.again_button, view.combo):
        assert not w.isEnabled()
    assert view.canvas().isEnabled()
    qtbot.mouseClick(view.canvas(), Qt.MouseButton.LeftButton, pos=center(view.chip_rect(2)))
    assert view.selected_word() == 2  # still readable while the worker works
    view.set_busy(False)
    assert view.load_button.isEnabled() and view.close_button.isEnabled()
    assert view.status.text() == ""


# ---------------------------------------------------------------------------
# looks: zoom, themes, a long text
# ---------------------------------------------------------------------------


def test_zoom_grows_the_fonts_and_the_chips(view) -> None:
    chip, table_pt, pt = view.chip_rect(1).height(), view.table.font().pointSizeF(), view.font_point_size()
    view.set_zoom(2.0)
    assert view.font_point_size() == pytest.approx(2 * pt)
    assert view.table.font().pointSizeF() == pytest.approx(2 * table_pt)
    assert view.details.font().pointSizeF() == pytest.approx(2 * table_pt)
    assert view.chip_rect(1).height() > 1.8 * chip


def test_high_contrast_paints_on_black(view) -> None:
    view.set_theme(HIGH_CONTRAST)
    image = canvas_image(view)
    assert close(pixel(image, 2, 2), QColor("#000000"))
    view.set_mode("difference")
    image = canvas_image(view)
    same = make_scored("SmolA", TEXT, A_TOKENS)
    show(view, TEXT, [same, same])
    image = canvas_image(view)
    c = pixel(image, view.chip_rect(1).center().x(), view.chip_rect(1).bottom() - 3)
    assert c.lightness() < 100  # the neutral middle is dark on a dark window: no glare


def test_two_thousand_words_show_quickly(qtbot, view) -> None:
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "because", "it", "was", "warm,", "and", "then"]
    text = " ".join(words[k] for k in rng.integers(0, len(words), 1_850)) + "."
    cuts = [0, *[m.start() for m in re.finditer(" ", text)], len(text)]
    a = [(x, y, None if k == 0 else float(rng.uniform(0, 12))) for k, (x, y) in enumerate(zip(cuts, cuts[1:]))]
    b_cuts = sorted(set(range(0, len(text), 3)) | {len(text)})
    b = [(x, y, None if k == 0 else float(rng.uniform(0, 6))) for k, (x, y) in enumerate(zip(b_cuts, b_cuts[1:]))]
    scored = [make_scored("SmolA", text, a), make_scored("GemmaB", text, b)]
    alignment = compare.align(text, scored)
    figs = [compare.figures(s) for s in scored]
    assert len(alignment.words) >= 2_000
    start = time.perf_counter()
    view.set_result(alignment, figs, scored)
    view.canvas().repaint()
    elapsed = time.perf_counter() - start
    print(f"set_result + first paint, {len(alignment.words):,} words: {elapsed * 1000:.0f} ms")
    assert elapsed < 1.5
    last = view.chip_rect(len(alignment.words) - 1)
    assert last.bottom() > view.flow.viewport().height()  # the flow scrolls


def test_screenshots(qtbot, view, tmp_path) -> None:
    """The view with a paragraph, at 1280 × 800 and at projector zoom (looked at by hand)."""
    folder = Path(os.environ.get("LMDESK_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    text = ("Once upon a time, a small fox lived at the edge of a quiet forest. Every morning she walked to the "
            "river to drink, and every morning the old heron told her the same story about the winter the river "
            "froze.\nOne day the heron was gone.")
    words = compare.split_words(text)
    rng = np.random.default_rng(3)
    a = [(w.start, w.end, None if k == 0 else float(rng.gamma(1.5, 2.0))) for k, w in enumerate(words)]
    b = [(w.start, w.end, None if k == 0 else max(0.0, a[k][2] + float(rng.normal(0, 2.0))))
         for k, w in enumerate(words)]
    show(view, text, [make_scored("SmolLM2-135M-Instruct", text, a, 134_515_008),
                      make_scored("gemma-3-270m", text, b, 268_098_176)])
    view.resize(1280, 800)
    view.select_word(5)
    qtbot.wait(20)  # the layouts settle
    view.grab().save(str(folder / "compare_both.png"))
    view.set_mode("difference")
    view.grab().save(str(folder / "compare_difference.png"))
    view.set_theme(HIGH_CONTRAST)
    view.set_zoom(1.8)
    qtbot.wait(20)
    view.grab().save(str(folder / "compare_projector.png"))
    assert (folder / "compare_projector.png").stat().st_size > 10_000

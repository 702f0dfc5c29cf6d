"""What changed between two documents: the window redraws from there."""

from __future__ import annotations

from lmdesk.engine.document import CONTENT, MARKUP, DocToken, Segment, first_difference
from lmdesk.engine.stats import TokenStats


def tok(i: int, seg: int = 0, kind: str = CONTENT, bits: float | None = 1.0, entropy: float = 1.0) -> DocToken:
    st = None if bits is None else TokenStats(prob=2 ** -bits, logprob=-bits * 0.6931471805599453, bits=bits, rank=1,
                                             entropy=entropy, top_ids=(i,), top_probs=(0.5,))
    return DocToken(i, st, seg, kind, False)


TEXT = [Segment("text", None)]


def test_the_same_ids_in_other_parts_or_kinds_are_a_change() -> None:
    a = [tok(1, bits=None), tok(2), tok(3), tok(4)]
    assert first_difference(a, TEXT, list(a), TEXT) == 4  # nothing changed
    assert first_difference(a, TEXT, a[:3] + [tok(9)], TEXT) == 3  # another id
    assert first_difference(a, TEXT, a[:2] + [tok(3, kind=MARKUP), a[3]], TEXT) == 2  # the same id, now markup
    assert first_difference(a, TEXT, a[:1] + [tok(2, bits=5.0)] + a[2:], TEXT) == 1  # the same id, other numbers
    # the same ids, the same segment numbers, but the parts are others (a text that became a chat)
    chat = [Segment("user", 0), Segment("assistant", 1)]
    b = [tok(1, 0, bits=None), tok(2, 0), tok(3, 1), tok(4, 1)]
    assert first_difference(b, chat, b, [Segment("user", 0), Segment("system", 1)]) == 2
    assert first_difference(b, chat, b, [Segment("system", 0), Segment("assistant", 1)]) == 0
    assert first_difference(a, TEXT, a + [tok(5)], TEXT) == 4  # appended: from the new token on


def test_the_replies_and_the_lab_questions() -> None:
    from lmdesk.engine.document import ranked, reply_positions

    chat = [Segment("system", 0), Segment("user", 1), Segment("assistant", 2)]
    bits = [None, 9.0, 1.0, 0.5, 4.0, 0.1, 6.0, 2.0]
    toks = [tok(1, 0, bits=bits[0]), tok(2, 0, bits=bits[1]), tok(3, 1, MARKUP, bits[2]), tok(4, 1, bits=bits[3]),
            tok(5, 2, MARKUP, bits[4]), tok(6, 2, bits=bits[5]), tok(7, 2, bits=bits[6]), tok(8, 2, bits=bits[7])]
    replies = reply_positions(toks, chat)
    assert replies == [5, 6, 7]  # the assistant's words, not its marker nor the system prompt's 9 bits
    assert ranked(toks, replies, "surprising") == [6, 7, 5]
    assert ranked(toks, replies, "confident") == [5, 7, 6]
    everything = list(range(len(toks)))
    assert ranked(toks, everything, "surprising")[0] == 1 and 0 not in ranked(toks, everything, "confident")
    unsure = [tok(1, bits=None), tok(2, entropy=0.2), tok(3, entropy=7.5), tok(4, entropy=3.0)]
    assert ranked(unsure, range(4), "uncertain") == [2, 3, 1]
    plain = [Segment("text", None)]
    assert reply_positions([tok(1, bits=None), tok(2)], plain) == [0, 1]

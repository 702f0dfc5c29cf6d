"""What changed between two documents: the window redraws from there."""

from __future__ import annotations

from lmdesk.engine.document import CONTENT, MARKUP, DocToken, Segment, first_difference
from lmdesk.engine.stats import TokenStats


def tok(i: int, seg: int = 0, kind: str = CONTENT, bits: float | None = 1.0) -> DocToken:
    st = None if bits is None else TokenStats(prob=2 ** -bits, logprob=-bits * 0.6931471805599453, bits=bits, rank=1,
                                             entropy=1.0, top_ids=(i,), top_probs=(0.5,))
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

"""Undo puts the document back as it was, the model's cache included, and
costs no more than the edit it undoes (issue 11: undoing a replace near the
start of a long document used to run the model over all of it again)."""

from __future__ import annotations

import numpy as np
import pytest
from reference import ReferenceModel
from tiny_gguf import write_tiny_gguf

from lmdesk.convert.gguf_import import import_gguf
from lmdesk.engine import session as session_module
from lmdesk.engine.model import LoadedModel
from lmdesk.engine.session import Session

TEXT = "the cat sat on the mat, then the dog sat on the cat. " * 4


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("undo")
    gguf = write_tiny_gguf(tmp / "tiny.gguf", n_layer=2, d_model=64, n_head=4, n_head_kv=2, ctx=512)
    import_gguf(gguf, tmp / "model")
    return LoadedModel(tmp / "model", threads=1), ReferenceModel(gguf)


class Counting:
    """Counts the positions the model is run over."""

    def __init__(self, model: LoadedModel) -> None:
        self.model, self.positions = model, 0
        self._forward = model.forward

    def __enter__(self):
        def counted(ids, cache):
            self.positions += len(ids)
            return self._forward(ids, cache)

        self.model.forward = counted
        return self

    def __exit__(self, *_exc) -> None:
        del self.model.forward  # the class's own again


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def check_against_reference(s: Session, ref: ReferenceModel) -> None:
    """The document's statistics and the next token's distribution are those
    of the float64 reference run over the same ids, and the cache behind them
    is right at every position: one more token appended must be predicted as
    the reference predicts it."""
    ids = s.ids
    lp = log_softmax(ref.forward(ids))
    got = log_softmax(s.next_logits()[None])[0]
    assert np.abs(got - lp[-1]).max() < 2e-3
    for i, tok in enumerate(s.doc.tokens[1:], start=1):
        assert abs(tok.stats.logprob - lp[i - 1, tok.id]) < 2e-3
    nxt = int(np.argmax(lp[-1]))
    s.append_token(nxt)
    assert abs(s.doc.tokens[-1].stats.logprob - lp[-1, nxt]) < 2e-3
    s.undo()


def test_undoing_a_replace_near_the_start_costs_what_the_replace_did(tiny) -> None:
    model, ref = tiny
    s = Session(model, chunk_size=64)
    s.load_text(TEXT)
    n = len(s.doc)
    assert n > 60
    with Counting(model) as replace:
        s.replace(3, s.doc.tokens[3].id + 1)
    assert len(s.doc) == 4
    with Counting(model) as undo:
        assert s.undo()
    assert undo.positions <= max(1, replace.positions)  # it was n - 3 positions before
    assert len(s.doc) == n
    check_against_reference(s, ref)


def test_a_chain_of_edits_undone_step_by_step_is_each_document_again(tiny) -> None:
    model, ref = tiny
    s = Session(model, chunk_size=16)
    s.load_text(TEXT)
    states = [s.ids]
    s.replace(10, 42)
    states.append(s.ids)
    s.append_text(" and then a bird flew over the house")
    states.append(s.ids)
    s.truncate(5)
    states.append(s.ids)
    s.append_text(" sat on the mat again and again")
    states.append(s.ids)
    s.reset()
    states.append(s.ids)
    s.load_text("a new text altogether, not like the first")
    with Counting(model) as counted:
        for want in reversed(states):
            assert s.undo()
            assert s.ids == want
            if want:
                check_against_reference(s, ref)
    # every document came back without running the model over more than its last token
    # (and the one appended and undone by each check): 2 positions a step at most
    assert counted.positions <= 2 * len(states) + len(states)


def test_beyond_the_memory_for_undo_it_computes_again_and_is_still_right(tiny, monkeypatch) -> None:
    model, ref = tiny
    # room for a few positions only: long edits cannot keep what they wrote over
    monkeypatch.setattr(session_module, "UNDO_CACHE_BYTES", 6 * 2 * 2 * 2 * 16 * 4)
    s = Session(model, chunk_size=16)
    s.load_text(TEXT)
    first = s.ids
    s.replace(2, 42)
    s.append_text(" and then a bird flew over the house and the tree")  # overwrites far more than the budget
    second = s.ids
    s.truncate(20)
    with Counting(model) as counted:
        assert s.undo() and s.ids == second
        assert s.undo() and s.ids[:3] == first[:2] + [42]
        assert s.undo() and s.ids == first
    assert counted.positions > 20  # some of it was computed again ...
    check_against_reference(s, ref)  # ... and it is right all the same


def test_an_undo_that_computes_again_can_be_stopped_and_asked_again(tiny, monkeypatch) -> None:
    from lmdesk.engine.errors import Cancelled

    model, ref = tiny
    monkeypatch.setattr(session_module, "UNDO_CACHE_BYTES", 0)  # every undo computes the document again
    s = Session(model, chunk_size=8)
    s.load_text(TEXT)
    whole = s.ids
    s.replace(2, 42)
    asked = []

    def stop_after_two() -> bool:
        asked.append(True)
        return len(asked) > 2

    with pytest.raises(Cancelled):
        s.undo(should_cancel=stop_after_two)
    assert 2 < len(s.doc) < len(whole) and s.ids == whole[: len(s.doc)]  # the part done so far
    assert [t.id for t in s.document_to_keep().tokens] == whole  # what closing now would keep
    assert s.undo() and s.ids == whole  # the same undo, asked again, finishes it
    assert s.document_to_keep() is s.doc
    check_against_reference(s, ref)


def test_clearing_the_system_prompt_takes_the_system_message_out(tmp_path) -> None:
    """Apply with an empty system prompt: the system message leaves the
    document (it used to stay); one undo brings it, and the prompt, back."""
    gguf = write_tiny_gguf(tmp_path / "chat.gguf", ctx=256, seed=5)
    import_gguf(gguf, tmp_path / "model")
    model = LoadedModel(tmp_path / "model", threads=1)
    s = Session(model)
    s.system_prompt = "be brief"
    s.end_turn("the cat sat")
    s.append_text(" on the mat")
    with_system = s.ids
    assert [m.role for m in s.messages()][0] == "system"
    s.set_system_prompt(None)
    assert "be brief" not in s.text() and s.system_prompt is None
    assert all(m.content != "be brief" for m in s.messages())
    assert [(m.role, m.content) for m in s.messages() if m.role != "system"] == [
        ("user", "the cat sat"), ("assistant", " on the mat")]
    assert s.undo()
    assert s.ids == with_system and s.system_prompt == "be brief"
    # a new system prompt, undone: the one before comes back with the document
    s.set_system_prompt("be kind")
    assert "be kind" in s.text()
    assert s.undo() and s.ids == with_system and s.system_prompt == "be brief"


def test_a_chunk_whose_statistics_fail_leaves_the_cache_with_the_document(tiny, monkeypatch) -> None:
    model, ref = tiny
    s = Session(model, chunk_size=8)
    real = session_module.position_stats
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise MemoryError("no room for the statistics")
        return real(*args, **kwargs)

    monkeypatch.setattr(session_module, "position_stats", failing)
    with pytest.raises(MemoryError):
        s.load_text(TEXT)
    monkeypatch.setattr(session_module, "position_stats", real)
    assert len(s.doc) == 16  # two chunks made it
    assert s._cache.length == len(s.doc)  # the cache did not run ahead of the document
    check_against_reference(s, ref)

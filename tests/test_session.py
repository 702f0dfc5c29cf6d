"""The core engine: documents of tokens, their statistics, edits, sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reference import ReferenceModel
from tiny_gguf import write_tiny_gguf

from lmdesk.engine.document import CONTENT, MARKUP, Segment
from lmdesk.convert.gguf_import import import_gguf
from lmdesk.engine.model import LoadedModel
from lmdesk.engine.sampling import SEED_LIMIT, SamplingSettings, transformed_probs
from lmdesk.engine.errors import Cancelled, LmdeskError
from lmdesk.engine.session import EditError, Session
from lmdesk.engine.stats import position_stats, summarize

TEXT = "the cat sat on the mat, then the dog sat on the cat. 123 + 456 = 579"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    return write_tiny_gguf(tmp / "tiny.gguf", n_layer=2, d_model=64, n_head=4, n_head_kv=2, ctx=128)


@pytest.fixture(scope="module")
def tiny_model(tiny_gguf) -> LoadedModel:
    import_gguf(tiny_gguf, tiny_gguf.parent / "model")
    return LoadedModel(tiny_gguf.parent / "model", threads=1)


@pytest.fixture(scope="module")
def tiny_reference(tiny_gguf) -> ReferenceModel:
    """The tiny model's float64 numpy forward pass, straight from its GGUF file
    (tests/reference.py: no lmdesk code, no onnxruntime)."""
    return ReferenceModel(tiny_gguf)


def full_pass(model: LoadedModel, ids: list[int]) -> np.ndarray:
    """The real model's logits from one uncached pass over ``ids`` (none of the
    session's chunks, cache reuse or edits; the pass itself is checked against
    tests/reference.py in test_gguf_import.py, too slow to repeat here)."""
    return model.forward(ids, model.empty_cache())[0].astype(np.float64)


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    x = np.asarray(logits, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def assert_stats_match(session: Session, ids: list[int], logits: np.ndarray, tol: float = 2e-4) -> None:
    """Every token's statistics and the next-token distribution equal those
    computed here in float64 from reference ``logits`` ([len(ids), vocab])."""
    assert session.ids == ids
    assert logits.shape[0] == len(ids)
    lp = log_softmax64(logits)
    assert session.doc.tokens[0].stats is None
    for j in range(1, len(ids)):
        st, row, t = session.doc.tokens[j].stats, lp[j - 1], ids[j]
        assert abs(st.logprob - row[t]) < tol, j
        assert abs(st.bits - -row[t] / math.log(2)) < tol / math.log(2), j
        p = np.exp(row)
        assert abs(st.entropy - -(p * row).sum() / math.log(2)) < tol * 10, j
        # the rank: 1 + the candidates more likely than the token; a candidate
        # within ``tol`` of it may count either way (float32 against float64)
        surely_above = int((row > row[t] + tol).sum())
        maybe_above = int((row > row[t] - tol).sum()) - 1
        assert 1 + surely_above <= st.rank <= 1 + maybe_above, (j, st.rank, surely_above, maybe_above)
        # the top list: the k most likely, most likely first (ties in either order)
        best = np.sort(row)[::-1][: len(st.top_ids)]
        assert np.abs(row[list(st.top_ids)] - best).max() < tol, j
        assert np.allclose(np.log(st.top_probs), best, atol=tol), j
    nxt = session.next_distribution(5)
    best = np.sort(lp[-1])[::-1][:5]
    assert np.allclose(np.log(nxt.probs), best, atol=tol)
    assert np.abs(lp[-1][list(nxt.ids)] - best).max() < tol


# -- statistics ----------------------------------------------------------------------

def test_position_stats_known_values() -> None:
    logits = np.log(np.array([[0.5, 0.25, 0.125, 0.125]], np.float32))
    st = position_stats(logits, [2], k=2)[0]
    assert st.prob == pytest.approx(0.125, abs=1e-6)
    assert st.bits == pytest.approx(3.0, abs=1e-5)
    assert st.rank == 3  # tied with token 3, which is not more likely
    assert st.entropy == pytest.approx(1.75, abs=1e-5)
    assert st.top_ids == (0, 1) and st.top_probs == pytest.approx((0.5, 0.25), abs=1e-6)


def test_position_stats_is_stable_for_huge_logits() -> None:
    logits = np.array([[1e4, 1e4 - 1.0, -1e4]], np.float32)
    st = position_stats(logits, [1], k=3)[0]
    assert st.logprob == pytest.approx(-1.0 - math.log1p(math.exp(-1.0)), abs=1e-5)
    assert math.isfinite(st.entropy)


def test_span_summary() -> None:
    s = summarize([1.0, 2.0, 3.0])
    assert (s.tokens, s.total_bits, s.bits_per_token) == (3, 6.0, 2.0)
    assert s.perplexity == pytest.approx(4.0)


# -- sampling -------------------------------------------------------------------------

def test_transforms() -> None:
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert transformed_probs(logits, SamplingSettings(greedy=True)).tolist() == [1, 0, 0, 0]
    assert transformed_probs(logits, SamplingSettings(temperature=0)).tolist() == [1, 0, 0, 0]
    assert transformed_probs(logits, SamplingSettings(top_k=2)) == pytest.approx([0.625, 0.375, 0, 0])
    assert transformed_probs(logits, SamplingSettings(top_p=0.8)) == pytest.approx([0.625, 0.375, 0, 0])
    assert transformed_probs(logits, SamplingSettings(top_p=0.81)) == pytest.approx([0.5, 0.3, 0.15, 0] / np.float64(0.95))
    hot = transformed_probs(logits, SamplingSettings(temperature=2.0))
    assert hot == pytest.approx(np.sqrt([0.5, 0.3, 0.15, 0.05]) / np.sqrt([0.5, 0.3, 0.15, 0.05]).sum())
    with pytest.raises(ValueError):
        SamplingSettings(top_p=0)


# -- edits on a tiny model ---------------------------------------------------------------

def test_statistics_equal_a_direct_computation(tiny_model: LoadedModel, tiny_reference: ReferenceModel) -> None:
    s = Session(tiny_model, chunk_size=7)  # several chunks
    s.load_text(TEXT)
    ids = tiny_model.tokenizer.encode(TEXT).ids
    assert_stats_match(s, ids, tiny_reference.forward(ids))
    ranks = [t.stats.rank for t in s.doc.tokens[1:]]
    assert len(set(ranks)) > 10 and max(ranks) > 100  # a random tiny model: ranks all over, so they are checked


def test_replace_equals_fresh_computation(tiny_model: LoadedModel, tiny_reference: ReferenceModel) -> None:
    s = Session(tiny_model)
    s.load_text(TEXT)
    ids = s.ids
    # the reference's 20th choice at position 10, clear of its neighbours
    row = log_softmax64(tiny_reference.forward(ids[:10])[-1])
    order = np.argsort(-row)
    forced = int(order[19])
    assert forced != ids[10] and min(row[order[18]] - row[forced], row[forced] - row[order[20]]) > 1e-2
    s.replace(10, forced)
    assert s.ids == ids[:10] + [forced]
    assert s.doc.tokens[10].stats.rank == 20
    s.append_token(ids[11])
    edited = ids[:10] + [forced, ids[11]]
    # the same tokens computed from nothing, in one go
    fresh = Session(tiny_model)
    fresh.load_document(edited, [Segment("text", None)] * len(edited), [CONTENT] * len(edited))
    assert fresh.ids == s.ids == edited
    assert s.doc.tokens[0].stats is None and fresh.doc.tokens[0].stats is None
    for a, b in zip(s.doc.tokens[1:], fresh.doc.tokens[1:], strict=True):
        assert a.stats.logprob == pytest.approx(b.stats.logprob, abs=1e-4)
        assert a.stats.entropy == pytest.approx(b.stats.entropy, abs=1e-3)
        assert a.stats.rank == b.stats.rank and a.stats.top_ids == b.stats.top_ids
    assert s.next_distribution(5).probs == pytest.approx(fresh.next_distribution(5).probs, abs=1e-5)
    assert_stats_match(s, edited, tiny_reference.forward(edited))


def test_truncate_undo_and_reset(tiny_model: LoadedModel, tiny_reference: ReferenceModel) -> None:
    s = Session(tiny_model)
    s.load_text(TEXT)
    before = list(s.doc.tokens)
    before_next = s.next_distribution(5)
    s.truncate(12)
    assert len(s.doc) == 12
    kept = [t.id for t in before[:12]]
    assert_stats_match(s, kept, tiny_reference.forward(kept))
    s.append_text(" dog")
    assert s.undo() and len(s.doc) == 12
    assert s.undo()
    assert s.doc.tokens == before
    assert s.next_distribution(5).probs == pytest.approx(before_next.probs, abs=1e-5)
    s.reset()
    assert len(s.doc) == 0
    with pytest.raises(EditError, match="empty"):
        s.next_distribution()
    assert s.undo() and s.doc.tokens == before


def test_cached_edits_reuse_the_prefix(tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Session(tiny_model)
    s.load_text(TEXT)
    fed: list[int] = []
    real_forward = tiny_model.forward

    def counting(ids, cache):
        fed.append(len(ids))
        return real_forward(ids, cache)

    monkeypatch.setattr(tiny_model, "forward", counting)
    s.replace(len(s.doc) - 5, s.ids[3])
    assert sum(fed) <= 2  # one step to recover the distribution, one for the new token
    fed.clear()
    s.append_token(5)
    assert fed == [1]


def test_generation_seeds_and_stops(tiny_model: LoadedModel, tiny_reference: ReferenceModel) -> None:
    def run(seed: int) -> list[int]:
        s = Session(tiny_model)
        s.load_text("the cat")
        return [e.token.id for e in s.generate(SamplingSettings(temperature=1.0, seed=seed), 12)]

    a, b, c = run(7), run(7), run(8)
    assert a == b and len(a) >= 3
    assert a != c  # a different seed takes another path

    # without a seed, each run draws one, reports it, and it replays the run
    s = Session(tiny_model)
    s.load_text("the cat")
    events = list(s.generate(SamplingSettings(temperature=1.0), 12))
    seed = events[0].seed
    assert seed is not None and 0 <= seed < SEED_LIMIT  # six digits at most: short enough to share
    assert [e.token.id for e in events] == run(seed)

    s = Session(tiny_model)
    s.load_text("the cat")
    events = list(s.generate(SamplingSettings(greedy=True), 5))
    assert len(events) <= 5
    assert events[-1].finished in ("length", "stop")
    # greedy picks the model's first choice every time: the reference's argmax
    assert all(e.token.stats.rank == 1 for e in events)
    start = len(s.ids) - len(events)
    best = tiny_reference.forward(s.ids).argmax(-1)
    assert s.ids[start:] == [int(t) for t in best[start - 1 : -1]]
    assert s.undo() and s.text() == "the cat"


def test_generation_can_be_cancelled(tiny_model: LoadedModel) -> None:
    s = Session(tiny_model)
    s.load_text("the cat")
    n = len(s.doc)
    count = [0]

    def cancel() -> bool:
        count[0] += 1
        return count[0] > 3

    list(s.generate(SamplingSettings(temperature=1.5, seed=1), 50, should_cancel=cancel))
    assert len(s.doc) == n + 3


def test_a_stopped_end_turn_leaves_no_half_message(tiny_model: LoadedModel) -> None:
    s = Session(tiny_model, chunk_size=4)
    s.system_prompt = None
    s.end_turn("hi there")
    before, history = s.ids, len(s._history)
    count = [0]

    def cancel() -> bool:  # stop after two chunks of the new turn
        count[0] += 1
        return count[0] > 2

    with pytest.raises(Cancelled):
        s.end_turn("the cat sat on the mat and thought about it for a while", should_cancel=cancel)
    assert count[0] == 3  # two chunks went in before the stop
    assert s.ids == before and len(s._history) == history
    assert [m.role for m in s.messages()] == ["user", "assistant"]
    s.end_turn("and the dog")  # the conversation goes on as if the stopped turn never was
    assert [m.content for m in s.messages()][-2] == "and the dog"


def test_context_limit_is_a_clear_error(tiny_model: LoadedModel) -> None:
    s = Session(tiny_model)
    with pytest.raises(EditError, match="reads at most 128"):
        s.load_text("the cat sat on the mat. " * 60)
    assert len(s.doc) == 0


def test_chat_turns_on_a_tiny_model(tiny_model: LoadedModel) -> None:
    s = Session(tiny_model)
    assert s.default_system_prompt is None  # the tiny template adds none
    s.system_prompt = None
    with pytest.raises(EditError, match="empty"):
        s.end_turn("   ")
    s.end_turn("hi there")
    assert s.text() == "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n"
    roles = [s.doc.segment_of(i).role for i in range(len(s.doc))]
    assert roles[0] == "user" and roles[-1] == "assistant"
    content = tiny_model.tokenizer.decode([t.id for t in s.doc.tokens if t.kind == CONTENT])
    assert content == "hi there"
    s.append_text("the cat")
    s.end_turn("and the dog")
    assert s.text().endswith("the cat<|im_end|>\n<|im_start|>user\nand the dog<|im_end|>\n<|im_start|>assistant\n")
    assert [m.role for m in s.messages()] == ["user", "assistant", "user", "assistant"]
    assert s.messages()[1].content == "the cat"


# -- the real model -------------------------------------------------------------------------

SMOL_CHAT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
)


@pytest.mark.realmodel
def test_real_chat_template_renders_the_smollm2_form(real_model: LoadedModel) -> None:
    s = Session(real_model)
    assert s.default_system_prompt == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    s.end_turn("What is the capital of France?")
    assert s.text() == SMOL_CHAT
    assert s.ids == real_model.tokenizer.encode(SMOL_CHAT).ids
    first = s.doc.tokens[0]
    assert first.id == 1 and first.special and first.kind == MARKUP
    kinds = {(s.doc.segment_of(i).role, t.kind) for i, t in enumerate(s.doc.tokens)}
    assert kinds == {("system", MARKUP), ("system", CONTENT), ("user", MARKUP), ("user", CONTENT), ("assistant", MARKUP)}
    user_content = real_model.tokenizer.decode(
        [t.id for i, t in enumerate(s.doc.tokens) if t.kind == CONTENT and s.doc.segment_of(i).role == "user"])
    assert user_content == "What is the capital of France?"


@pytest.mark.realmodel
def test_real_greedy_answer_and_statistics(real_model: LoadedModel) -> None:
    s = Session(real_model, chunk_size=16)
    s.end_turn("What is the capital of France?")
    start = len(s.doc)
    events = list(s.generate(SamplingSettings(greedy=True), 20))
    assert s.text(start) == "The capital of France is Paris.<|im_end|>"
    assert events[-1].finished == "stop"
    assert_stats_match(s, s.ids, full_pass(real_model, s.ids), tol=1e-3)
    paris = next(t for t in s.doc.tokens[start:] if real_model.tokenizer.id_to_token(t.id) == "ĠParis")
    assert paris.stats.rank == 1 and paris.stats.prob > 0.9


@pytest.mark.realmodel
def test_real_forced_token_mid_response(real_model: LoadedModel) -> None:
    s = Session(real_model)
    s.end_turn("What is the capital of France?")
    start = len(s.doc)
    list(s.generate(SamplingSettings(greedy=True), 20))
    paris_at = next(i for i in range(start, len(s.doc)) if real_model.tokenizer.id_to_token(s.ids[i]) == "ĠParis")
    london = real_model.tokenizer.token_to_id("ĠLondon")
    s.replace(paris_at, london)
    st = s.doc.tokens[paris_at].stats
    assert st.rank > 1 and st.bits > 5  # the model did not expect London
    assert s.ids[-1] == london
    assert_stats_match(s, s.ids, full_pass(real_model, s.ids), tol=1e-3)


def test_replace_the_first_token_and_text(tiny_model: LoadedModel, tiny_reference: ReferenceModel) -> None:
    s = Session(tiny_model)
    s.load_text(TEXT)
    s.replace(0, s.ids[1])
    assert len(s.doc) == 1 and s.doc.segment_of(0).role == "text"
    s.undo()
    s.replace_text(5, " the dog")
    ids = s.ids
    assert tiny_model.tokenizer.decode(ids[5:]) == " the dog"
    assert_stats_match(s, ids, tiny_reference.forward(ids))
    s.replace_text(len(s.doc), " sat")
    assert s.text().endswith("the dog sat")


def test_reset_response_and_system_prompt_edit(tiny_model: LoadedModel, tiny_reference: ReferenceModel) -> None:
    s = Session(tiny_model)
    s.system_prompt = "be kind"
    s.end_turn("hi")
    opened = len(s.doc)
    assert s.response_start() == opened
    s.append_text("the cat sat")
    s.reset_response()
    assert len(s.doc) == opened
    s.append_text("the cat")
    before_tail = s.text()[s.text().index("<|im_start|>user"):]
    s.set_system_prompt("be brief and kind")
    assert s.text().startswith("<|im_start|>system\nbe brief and kind<|im_end|>\n")
    assert s.text().endswith(before_tail)  # what followed is kept, token for token
    assert [m.content for m in s.messages()] == ["be brief and kind", "hi", "the cat"]
    assert_stats_match(s, s.ids, tiny_reference.forward(s.ids))
    assert s.undo() and s.messages()[0].content == "be kind"


def test_undo_restores_roles_when_ids_coincide(tiny_model: LoadedModel) -> None:
    s = Session(tiny_model)
    s.system_prompt = None
    s.end_turn("hi")
    chat = list(s.doc.tokens)
    s.load_text(s.text()[:20])  # the same first tokens, now as plain text
    assert s.doc.segment_of(0).role == "text"
    assert s.undo()
    assert s.doc.tokens == chat and s.doc.segment_of(0).role == "user"


@pytest.mark.parametrize("template_writes_bos", [True, False])
def test_one_bos_whether_the_template_writes_it_or_the_tokenizer_adds_it(tmp_path, template_writes_bos: bool) -> None:
    """Gemma's and Llama 3's templates write the BOS themselves and their
    tokenizers add one too: the conversation starts with exactly one."""
    template = ("{{ bos_token if write else '' }}"
                "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    template = template.replace("write", "true" if template_writes_bos else "false")
    src = write_tiny_gguf(tmp_path / "bos.gguf", ctx=128, add_bos=True, chat_template=template)
    import_gguf(src, tmp_path / "model")
    model = LoadedModel(tmp_path / "model", threads=1)
    assert model.tokenizer.encode("hi").ids[0] == model.bos_id == 0  # the tokenizer adds <|endoftext|>
    s = Session(model)
    s.end_turn("hi")
    assert s.ids.count(model.bos_id) == 1 and s.ids[0] == model.bos_id
    first = len(s.ids)
    s.end_turn("again")
    assert s.ids.count(model.bos_id) == 1 and len(s.ids) > first
    assert s.text().startswith("<|endoftext|><|im_start|>user\nhi<|im_end|>")


@pytest.mark.parametrize("k", [1, 5, 20, 50, 400])
def test_top_indices_are_those_of_a_stable_sort(k: int) -> None:
    """The chart's candidates without sorting the vocabulary: the same ids in
    the same order as numpy's stable sort, ties (many equal values, as after
    top-k or greedy) broken by id."""
    from lmdesk.engine.stats import top_indices

    rng = np.random.default_rng(k)
    for values in (rng.random(300), np.round(rng.random(300), 1), np.zeros(300), np.r_[np.ones(10), np.zeros(290)]):
        assert np.array_equal(top_indices(values, k), np.argsort(-values, kind="stable")[:k])


def test_a_fixed_seed_is_one_stream_step_by_step_or_by_generate(tiny_model: LoadedModel) -> None:
    """Eight 'Sample one token' clicks with seed 7 give the eight tokens
    Generate(8) gives with seed 7 (each click used to start the seed again and
    draw the same number: the same token eight times over)."""
    settings = SamplingSettings(temperature=1.5, seed=7)
    s = Session(tiny_model)
    s.end_turn("the cat")
    start = len(s.ids)
    for _ in range(8):
        tok, _ = s.choose(settings)
        s.append_token(tok)
    stepped = s.ids[start:]
    s.truncate(start)
    generated = [event.token.id for event in s.generate(settings, 8)]
    assert stepped == generated
    assert len(set(stepped)) > 2
    # half by steps, half by Generate: still the same stream
    s.truncate(start)
    for _ in range(4):
        s.append_token(s.choose(settings)[0])
    assert [event.token.id for event in s.generate(settings, 4)] == stepped[4:]


# -- the conversation as data: published templates, tools, the agent loop by hand (issue 13) -------------
from pathlib import Path  # noqa: E402

from lmdesk.engine.chat_template import ChatTemplateRefusal  # noqa: E402
from lmdesk.engine.conversation import Conversation, Message, ToolCall  # noqa: E402

PUBLISHED = Path(__file__).parent / "templates"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def published(name: str) -> str:
    return (PUBLISHED / f"{name}.jinja").read_text(encoding="utf-8")


@pytest.fixture
def smol(real_model: LoadedModel):
    """The real model; its own chat template back after the test (Session.use_template changes the model's)."""
    source = real_model.chat_template
    yield real_model
    real_model.chat_template = source


def greedy_reply(s: Session, n: int = 6) -> None:
    for _event in s.generate(SamplingSettings(greedy=True), n):
        pass


@pytest.mark.realmodel
@pytest.mark.parametrize("name", sorted(p.stem for p in PUBLISHED.glob("*.jinja")))
def test_a_third_turn_after_generated_answers_keeps_every_turn(smol: LoadedModel, name: str) -> None:
    """Under each published template (Qwen3, Phi-3.5, Llama 3.x, Gemma 2/3 do not
    render in prefixes), the questions stay questions and the model's answers
    answers: nothing lost, nothing moved to another role."""
    s = Session(smol)
    s.use_template(published(name))
    if name == "hermes3-tool-use":  # written for conversations with tools only
        s.set_tools([WEATHER])
    questions = ["What is the capital of France?", "And of Spain?", "Thanks, and of Italy?"]
    replies = []
    for q in questions:
        s.end_turn(q)
        start = len(s.doc)
        greedy_reply(s)
        replies.append(s.messages()[-1].content)
        assert s.doc.segment_of(start).role == "assistant"
    msgs = [m for m in s.messages() if m.role != "system"]
    assert [m.role for m in msgs] == ["user", "assistant"] * 3
    users = [m.content for m in msgs if m.role == "user"]
    # the user's words as the template wrote them (a vocabulary without its markers may glue a marker's first
    # character to them: "?<" is one SmolLM2 token of "?<end_of_turn>")
    for q, got in zip(questions, users):
        assert got.startswith(q) and len(got) - len(q) <= 1, (q, got)
    for reply, got in zip(replies[:2], [m.content for m in msgs if m.role == "assistant"]):
        assert got in (reply, reply.strip())  # Llama's and Gemma's templates trim what they write


@pytest.mark.realmodel
def test_the_agent_loop_by_hand_with_qwen25s_tool_format(smol: LoadedModel) -> None:
    from transformers.utils.chat_template_utils import render_jinja_template

    s = Session(smol)
    s.use_template(published("qwen2.5"))
    s.set_tools([WEATHER])
    s.end_turn("What is the weather in Paris?")
    assert not s.tools_fallback
    assert s.generated_tool_calls() == ()
    s.append_text('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>')  # as the model would
    assert s.generated_tool_calls() == (ToolCall("get_weather", {"city": "Paris"}),)
    s.add_tool_result('{"temperature": 18}')
    msgs = s.messages()
    assert [m.role for m in msgs] == ["system", "user", "assistant", "tool", "assistant"]
    assert msgs[2] == Message("assistant", "", (ToolCall("get_weather", {"city": "Paris"}),))
    assert msgs[3] == Message("tool", '{"temperature": 18}', name="get_weather")
    # the document is what the template itself writes for that conversation, the reply opened
    oracle, _ = render_jinja_template([[m.to_dict() for m in msgs[:4]]], tools=[WEATHER],
                                      chat_template=published("qwen2.5"), add_generation_prompt=True)
    assert s.text() == oracle[0]
    greedy_reply(s, 4)
    assert [m.role for m in s.messages()] == ["system", "user", "assistant", "tool", "assistant"]
    assert s.messages()[2].tool_calls == (ToolCall("get_weather", {"city": "Paris"}),)


@pytest.mark.realmodel
def test_the_agent_loop_by_hand_with_llamas_json_calls(smol: LoadedModel) -> None:
    """Llama 3.2 writes a call as a bare JSON object and a result as a JSON string."""
    from transformers.utils.chat_template_utils import render_jinja_template

    s = Session(smol)
    s.use_template(published("llama3.2"))
    s.set_tools([WEATHER])
    s.end_turn("What is the weather in Paris?")
    s.append_text('{"name": "get_weather", "parameters": {"city": "Paris"}}')  # as the model would
    assert s.generated_tool_calls() == (ToolCall("get_weather", {"city": "Paris"}),)
    s.add_tool_result("18 degrees")
    msgs = s.messages()
    assert [m.role for m in msgs] == ["user", "assistant", "tool", "assistant"]
    assert msgs[1].tool_calls == (ToolCall("get_weather", {"city": "Paris"}),) and msgs[1].content == ""
    assert msgs[2] == Message("tool", "18 degrees", name="get_weather")
    date = s.text().split("Today Date: ")[1].split("\n")[0]  # today's, written by strftime_now
    oracle, _ = render_jinja_template([[m.to_dict() for m in msgs[:3]]], tools=[WEATHER],
                                      chat_template=published("llama3.2"), add_generation_prompt=True,
                                      date_string=date, bos_token=smol.spec.bos_token or "")
    assert s.text() == oracle[0]
    assert '<|start_header_id|>ipython<|end_header_id|>\n\n"18 degrees"<|eot_id|>' in s.text()


@pytest.mark.realmodel
def test_tools_without_template_support_use_the_labelled_fallback(smol: LoadedModel) -> None:
    from lmdesk.engine.tools import FALLBACK_LABEL

    s = Session(smol)  # SmolLM2's own template has no tool format
    assert not s.template.supports_tools
    s.set_tools([WEATHER])
    s.end_turn("What is the weather in Paris?")
    assert s.tools_fallback and FALLBACK_LABEL in s.text()
    assert '{"type": "function", "function": {"name": "get_weather"' in s.text()
    s.add_tool_call("get_weather", {"city": "Paris"})
    s.add_tool_result('{"temperature": 18}')
    assert [m.role for m in s.messages()] == ["system", "user", "assistant", "tool", "assistant"]
    assert s.messages()[2].tool_calls == (ToolCall("get_weather", {"city": "Paris"}),)
    assert s.messages()[0].content == s.default_system_prompt  # the definitions are markup, not its content
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>' in s.text()
    with pytest.raises(LmdeskError, match="no tool named get_time"):
        s.add_tool_call("get_time", {})
    with pytest.raises(LmdeskError, match="lacks its required argument city"):
        s.add_tool_call("get_weather", {})


@pytest.mark.realmodel
def test_an_edited_conversation_is_computed_again_from_its_first_change(smol: LoadedModel, monkeypatch) -> None:
    s = Session(smol)
    s.use_template(published("qwen3"))
    conv = Conversation((Message("user", "Name a colour."), Message("assistant", "Blue is a colour."),
                         Message("user", "Name a fruit."), Message("assistant", "An apple.")))
    s.apply_conversation(conv, open_reply=False)
    before = list(s.doc.tokens)
    text_before = s.text()
    edited = Conversation((*conv.messages[:3], Message("assistant", "A pear.")))
    fed = []
    forward = smol.forward

    def counting(ids, cache):
        fed.append(len(ids))
        return forward(ids, cache)

    monkeypatch.setattr(smol, "forward", counting)
    s.apply_conversation(edited, open_reply=False)
    monkeypatch.undo()
    assert s.messages() == list(edited.messages)
    # the first character that differs, found by hand: where "An apple." was
    first = text_before.index("An apple.")
    assert s.text()[:first] == text_before[:first]
    kept = next(i for i, (a, b) in enumerate(zip(before, s.doc.tokens)) if a is not b)
    assert len(smol.tokenizer.decode([t.id for t in before[:kept]], skip_special_tokens=False)) >= first - 2
    assert sum(fed) == len(s.doc) - kept + 1  # the tail only (and the last kept token, for its prediction)
    s.undo()
    assert s.text() == text_before


@pytest.mark.realmodel
def test_a_templates_refusal_is_one_sentence_and_changes_nothing(smol: LoadedModel) -> None:
    s = Session(smol)
    s.use_template(published("gemma2"))
    s.end_turn("Hello")
    ids, history = list(s.ids), len(s._history)
    with pytest.raises(ChatTemplateRefusal, match=r"^The model's chat template refused this conversation: "
                                                 r"System role not supported$"):
        s.apply_conversation(Conversation((Message("system", "Be brief."), Message("user", "Hello"))))
    assert s.ids == ids and len(s._history) == history and s.messages() == [Message("user", "Hello"),
                                                                             Message("assistant", "")]


@pytest.mark.realmodel
def test_mistrals_reply_is_the_assistants_though_its_template_opens_it_with_nothing(smol: LoadedModel) -> None:
    s = Session(smol)
    s.use_template(published("mistral-nemo"))
    s.end_turn("Hello")
    assert s.text().endswith("[INST]Hello[/INST]") and s.response_start() == len(s.doc)
    s.append_text("Hi there")
    assert s.messages() == [Message("user", "Hello"), Message("assistant", "Hi there")]


@pytest.mark.realmodel
def test_a_tool_call_edited_until_it_is_no_call_is_kept_as_text(smol: LoadedModel) -> None:
    from lmdesk.engine.document import TOOL_CALL

    s = Session(smol)
    s.use_template(published("qwen2.5"))
    s.apply_conversation(Conversation((Message("user", "Weather?"),
                                       Message("assistant", "", (ToolCall("get_weather", {"city": "Paris"}),))),
                                      (WEATHER,)))
    calls = [i for i, t in enumerate(s.doc.tokens) if t.kind == TOOL_CALL]
    assert smol.tokenizer.decode([s.doc.tokens[i].id for i in calls]) == \
        '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    paris = next(i for i in calls if smol.tokenizer.decode([s.doc.tokens[i].id]) == "Paris")
    s.replace_text(paris, 'London"}}')  # still a call, of another city
    assert s.messages()[-1] == Message("assistant", "", (ToolCall("get_weather", {"city": "London"}),))
    s.undo()
    s.truncate(paris)  # the call's JSON cut short: no call any more, its text is the message's
    last = s.messages()[-1]
    assert last.tool_calls == () and last.content == '{"name": "get_weather", "arguments": {"city": "'


def test_greedy_takes_the_first_of_tied_best_scores_with_all_the_probability(
        tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Session(tiny_model)
    s.load_text("the cat")
    logits = np.linspace(-3.0, 1.0, tiny_model.vocab_size).astype(np.float32)
    logits[[11, 5, 40]] = 4.5  # three tied best scores: the lowest id is the first choice
    monkeypatch.setattr(s, "next_logits", lambda: logits)
    for settings in (SamplingSettings(greedy=True), SamplingSettings(temperature=0.0)):
        assert s.choose(settings) == (5, 1.0)
        one_hot = transformed_probs(logits, settings)  # the distribution greedy draws from
        assert one_hot[5] == 1.0 and one_hot.sum() == 1.0


def test_steps_over_one_cache_each_give_their_own_logits(tiny_model: LoadedModel,
                                                          tiny_reference: ReferenceModel) -> None:
    """Decode steps reuse what they bound of the cache: each still gives the
    reference's logits, leaves the logits it gave before as they were, and a
    step again from a shorter cache gives the same logits as the first time."""
    ids = tiny_model.tokenizer.encode(TEXT).ids[:20]
    more = [7, 19, 3, 42]
    ref = tiny_reference.forward(ids + more)
    _, cache = tiny_model.forward(ids, tiny_model.empty_cache())
    got, caches = [], [cache]
    for t in more:
        logits, cache = tiny_model.forward([t], cache)
        got.append(logits)
        caches.append(cache)
    kept = [g.copy() for g in got]
    for j, logits in enumerate(got):
        np.testing.assert_allclose(logits[0], ref[len(ids) + j], atol=2e-4)
        assert np.array_equal(logits, kept[j])
    again, _ = tiny_model.forward([more[1]], caches[1])
    assert np.array_equal(again, kept[1])
    other, _ = tiny_model.forward([more[0]], caches[1])  # another token at that position: its own logits
    np.testing.assert_allclose(other[0], tiny_reference.forward(ids + [more[0], more[0]])[-1], atol=2e-4)

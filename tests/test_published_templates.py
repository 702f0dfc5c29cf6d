"""Real published chat templates (tests/templates/*.jinja) against an oracle.

The templates are the published ones, as llama.cpp's repository keeps them
under models/templates (Qwen2.5, Qwen3, Llama 3.1 / 3.2, Gemma 2, Phi-3.5,
Mistral Nemo, Hermes 3 tool use), Gemma 3's as its model card publishes it,
and SmolLM2's from the default model. The oracle is transformers' own
``render_jinja_template`` (no torch), a test-only dependency.

Each template × conversation (several turns without a system message, with
one, tool definitions with a call and its result): the rendered text is the
oracle's; the messages read back from the spans are the ones written; every
message has its own turn (never one span for all, never lost); with the real
SmolLM2 tokenizer, each message's tokens hold its content. A template that
refuses a conversation refuses it with the oracle's own words, in one sentence.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from lmdesk.engine.chat_template import ChatTemplate, ChatTemplateError, ChatTemplateRefusal, render_with_spans
from lmdesk.engine.conversation import Conversation, Message, ToolCall
from lmdesk.engine.tools import FALLBACK_LABEL, calls_in_json, fallback_messages

oracle = pytest.importorskip("transformers.utils.chat_template_utils").render_jinja_template

TEMPLATES = Path(__file__).parent / "templates"
NAMES = sorted(p.stem for p in TEMPLATES.glob("*.jinja"))
BOS, EOS = "<s>", "</s>"
TODAY = datetime(2026, 12, 1, 9, 30)
TODAY_LLAMA = "01 Dec 2026"  # strftime("%d %b %Y") of TODAY, written by hand

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "The city."}},
                   "required": ["city"]}}}
CONVERSATIONS = {
    "multi-turn": Conversation((
        Message("user", "Hello!"), Message("assistant", "Hi, how can I help?"),
        Message("user", "What is 2+2?"), Message("assistant", "It is 4."), Message("user", "Thanks, and 3+3?"))),
    "system": Conversation((
        Message("system", "Be brief."), Message("user", "Hello!"), Message("assistant", "Hi."),
        Message("user", "Why is the sky blue?"))),
    "tools": Conversation((
        Message("user", "What is the weather in Paris?"),
        Message("assistant", "", (ToolCall("get_weather", {"city": "Paris"}, "call00001"),)),
        Message("tool", '{"temperature": 18, "sky": "clear"}', name="get_weather", tool_call_id="call00001"),
        Message("assistant", "It is 18 degrees and clear in Paris.")), (WEATHER,)),
}
# what each template does with each conversation: "ok", "fallback" (no tool format: lmdesk's), or "refuses"
NATIVE_TOOLS = {"qwen2.5", "qwen3", "llama3.1", "llama3.2", "mistral-nemo", "hermes3-tool-use"}
REFUSALS = {("gemma2", "system"): "System role not supported"}
ORACLE_FAILS = {("hermes3-tool-use", "multi-turn"), ("hermes3-tool-use", "system")}  # written for tools only


def source(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


def template(name: str) -> ChatTemplate:
    return ChatTemplate(source(name), bos_token=BOS, eos_token=EOS, today=lambda: TODAY)


def oracle_text(name: str, messages, tools, gen: bool) -> str:
    src = source(name)
    extra = {"date_string": TODAY_LLAMA} if "strftime_now" in src else {}
    rendered, _ = oracle([[m.to_dict() for m in messages]], tools=list(tools) or None, chat_template=src,
                         add_generation_prompt=gen, bos_token=BOS, eos_token=EOS, **extra)
    return rendered[0]


def expected(name: str, conv: str) -> str:
    if (name, conv) in REFUSALS:
        return "refuses"
    if (name, conv) in ORACLE_FAILS:
        return "fails"
    if conv == "tools" and name not in NATIVE_TOOLS:
        return "fallback"
    return "ok"


def read_back(rendered) -> list[tuple[str, str, tuple]]:
    """The messages as the spans tell them, from the text alone."""
    out = []
    for span in rendered.messages:
        content = rendered.text[span.content_start : span.content_end]
        if span.escaped:
            content = json.loads(f'"{content}"')
        calls = tuple(c for a, b in span.tool_calls for c in calls_in_json(rendered.text[a:b]))
        out.append((span.role, content, calls))
    return out


def test_the_templates_are_the_published_ones() -> None:
    assert set(NAMES) >= {"qwen2.5", "qwen3", "llama3.1", "llama3.2", "gemma2", "gemma3", "phi3.5", "smollm2",
                          "mistral-nemo", "hermes3-tool-use"}
    assert "You are Qwen, created by Alibaba Cloud." in source("qwen2.5")
    assert "strftime_now" in source("llama3.2") and "System role not supported" in source("gemma2")


@pytest.mark.parametrize("gen", [True, False], ids=["generation-prompt", "closed"])
@pytest.mark.parametrize("conv", list(CONVERSATIONS))
@pytest.mark.parametrize("name", NAMES)
def test_template_against_the_oracle(name: str, conv: str, gen: bool) -> None:
    conversation = CONVERSATIONS[conv]
    messages, tools = conversation.messages, conversation.tools
    outcome = expected(name, conv)
    t = template(name)
    if outcome in ("refuses", "fails"):
        with pytest.raises(Exception) as theirs:
            oracle_text(name, messages, tools, gen)
        with pytest.raises(ChatTemplateError) as ours:
            render_with_spans(t, messages, add_generation_prompt=gen, tools=tools)
        sentence = str(ours.value)
        assert sentence.count(". ") == 0 and "\n" not in sentence
        if outcome == "refuses":
            assert isinstance(ours.value, ChatTemplateRefusal)
            assert sentence == f"The model's chat template refused this conversation: {theirs.value}"
        return
    rendered = render_with_spans(t, messages, add_generation_prompt=gen, tools=tools)
    if outcome == "fallback":
        assert rendered.fallback and FALLBACK_LABEL in rendered.text
        shown, _ = fallback_messages(messages, tools, system=name != "gemma2")
        assert rendered.text == oracle_text(name, shown, (), gen)
    else:
        assert not rendered.fallback
        assert rendered.text == oracle_text(name, messages, tools, gen)
    # every message has its own turn, the turns do not overlap, and the messages read back are the ones written
    assert len(rendered.messages) == len(messages)
    spans = sorted(rendered.messages, key=lambda s: s.start)
    assert spans[0].start == 0
    for a, b in zip(spans, spans[1:]):
        assert a.end == b.start
    for span in rendered.messages:
        assert span.start < span.end and span.start <= span.content_start <= span.content_end <= span.end
        for x, y in span.tool_calls:
            assert span.start <= x < y <= span.end
    assert read_back(rendered) == [(m.role, m.content, m.tool_calls if name == "mistral-nemo"
                                    else tuple(ToolCall(c.name, c.arguments) for c in m.tool_calls))
                                   for m in messages]


def test_llama_writes_today_with_strftime_now() -> None:
    text = template("llama3.2").render([Message("user", "Hi")])
    assert "Today Date: 01 Dec 2026\n" in text
    today = datetime.now().strftime("%d %b %Y")
    assert f"Today Date: {today}\n" in ChatTemplate(source("llama3.2")).render([Message("user", "Hi")])


def test_tool_support_is_detected() -> None:
    assert {n for n in NAMES if template(n).supports_tools} == NATIVE_TOOLS


def test_gemma3_folds_the_system_message_into_the_first_turn() -> None:
    conv = CONVERSATIONS["system"]
    rendered = render_with_spans(template("gemma3"), conv.messages, add_generation_prompt=True)
    assert "<start_of_turn>user\nBe brief.\n\nHello!<end_of_turn>" in rendered.text
    system, user = rendered.messages[:2]
    assert rendered.text[system.content_start : system.content_end] == "Be brief."
    assert rendered.text[user.content_start : user.content_end] == "Hello!"
    assert system.end <= user.content_start


def test_mistral_writes_the_system_message_in_the_last_turn() -> None:
    conv = CONVERSATIONS["system"]
    rendered = render_with_spans(template("mistral-nemo"), conv.messages, add_generation_prompt=True)
    system, first_user = rendered.messages[:2]
    assert first_user.start == 0 and system.start > first_user.end
    assert rendered.text[system.content_start : system.content_end] == "Be brief."


@pytest.fixture
def smol(real_model):
    """The real model; its own chat template back after the test (Session.use_template changes the model's)."""
    source = real_model.chat_template
    yield real_model
    real_model.chat_template = source


@pytest.mark.realmodel
@pytest.mark.parametrize("name, conv", [(n, c) for n in NAMES for c in CONVERSATIONS
                                        if expected(n, c) not in ("refuses", "fails")])
def test_each_messages_tokens_hold_its_content(smol, name: str, conv: str) -> None:
    """The document of the real SmolLM2 model, written with each template:
    each message's tokens hold its content as the template wrote it; with the
    templates whose markers are SmolLM2's own special tokens (ChatML), the
    messages read back from the tokens are exactly the ones written."""
    from lmdesk.engine.session import Session

    conversation = CONVERSATIONS[conv]
    session = Session(smol)
    session.use_template(source(name))
    session.apply_conversation(conversation, open_reply=False)
    rendered = render_with_spans(session.template, conversation.messages, add_generation_prompt=False,
                                 tools=conversation.tools)
    decode = smol.tokenizer.decode
    groups: dict[int, list[int]] = {}
    for seg, toks in session.doc.message_tokens():
        groups.setdefault(seg.message, []).extend(t.id for t in toks)
    assert sorted(groups) == list(range(len(conversation.messages)))
    for k, span in enumerate(rendered.messages):
        whole = decode(groups[k], skip_special_tokens=False)
        assert rendered.text[span.content_start : span.content_end] in whole
        for a, b in span.tool_calls:
            assert rendered.text[a:b] in whole
    assert session.tools_fallback == (expected(name, conv) == "fallback")
    if name in ("smollm2", "qwen2.5", "qwen3"):
        assert session.conversation() == conversation

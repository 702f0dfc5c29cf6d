"""The conversation as data (engine/conversation.py) and tool calling (engine/tools.py)."""

from __future__ import annotations

import json

import pytest

from lmdesk.engine.conversation import Conversation, ConversationError, Message, ToolCall
from lmdesk.engine.tools import (
    FALLBACK_LABEL, calls_in_json, check_call, fallback_messages, parse_tool_calls, tool_call_text,
)

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["C", "F"]},
                                                    "days": {"type": "integer"}},
                   "required": ["city"]}}}

# the chat form, written by hand
CHAT = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                         "id": "call_1"}]},
        {"role": "tool", "content": '{"temperature": 18}', "name": "get_weather", "tool_call_id": "call_1"},
        {"role": "assistant", "content": "18 degrees."},
    ],
    "tools": [WEATHER],
}


def test_the_chat_form_round_trips_exactly() -> None:
    conv = Conversation.from_dict(CHAT)
    assert conv.messages[2] == Message("assistant", "", (ToolCall("get_weather", {"city": "Paris"}, "call_1"),))
    assert conv.messages[3] == Message("tool", '{"temperature": 18}', name="get_weather", tool_call_id="call_1")
    assert conv.to_dict() == CHAT
    assert Conversation.from_json(conv.to_json()) == conv
    assert json.loads(conv.to_json()) == CHAT


def test_message_stays_positional_and_its_dict_leaves_out_what_it_lacks() -> None:
    m = Message("user", "Hi")
    assert (m.role, m.content, m.tool_calls) == ("user", "Hi", ())
    assert m.to_dict() == {"role": "user", "content": "Hi"}  # templates test 'tool_calls' in message


def test_arguments_as_a_json_string_are_read_as_their_object() -> None:
    m = Message.from_dict({"role": "assistant", "content": None, "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]})
    assert m == Message("assistant", "", (ToolCall("get_weather", {"city": "Oslo"}),))


@pytest.mark.parametrize("data, words", [
    ({"messages": [{"role": "robot", "content": "x"}]}, "Message 1 has the role 'robot'"),
    ({"messages": [{"role": "user", "content": 3}]}, "The content of message 1 must be text."),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [{"function": {"name": "f"}}]}]},
     "only the assistant makes tool calls"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": {}}}]}]},
     "has no function name"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": "{not json"}}]}]}, "arguments of the call of f are not valid JSON"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "f", "arguments": [1, 2]}}]}]}, "must be a JSON object"),
    ({"messages": "hello"}, 'A conversation is an object with a list of "messages"'),
    ({"messages": [], "tools": [{"name": "f"}]}, "Tool 1 is not a function definition"),
])
def test_a_conversation_of_the_wrong_shape_is_one_sentence(data, words: str) -> None:
    with pytest.raises(ConversationError) as err:
        Conversation.from_dict(data)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_bad_json_says_where() -> None:
    with pytest.raises(ConversationError, match=r"^The conversation is not valid JSON \(line 2, column 1\)\.$"):
        Conversation.from_json('{"messages": [\n')


@pytest.mark.parametrize("text, calls, rest", [
    # Qwen2.5 / Qwen3 / Hermes (and lmdesk's fallback)
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     [ToolCall("get_weather", {"city": "Paris"})], ""),
    ('Let me look.\n<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n'
     '{"name": "b", "arguments": {"x": 1}}\n</tool_call>', [ToolCall("a", {}), ToolCall("b", {"x": 1})], "Let me look."),
    ('<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}', [ToolCall("get_weather", {"city": "Rome"})],
     ""),  # stopped at the end of the turn before its closing tag
    # Llama 3.x: the whole reply is the call
    ('{"name": "get_weather", "parameters": {"city": "Paris"}}', [ToolCall("get_weather", {"city": "Paris"})], ""),
    ('<|python_tag|>{"name": "f", "parameters": {"q": "x"}}', [ToolCall("f", {"q": "x"})], ""),
    # Mistral
    ('[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abc123def"}]',
     [ToolCall("get_weather", {"city": "Paris"}, "abc123def")], ""),
    # no call: a JSON answer that is not one, and prose
    ('{"answer": 4}', [], '{"answer": 4}'),
    ("The capital is Paris.", [], "The capital is Paris."),
    ('<tool_call>not json</tool_call>', [], '<tool_call>not json</tool_call>'),
])
def test_generated_tool_calls_are_parsed(text: str, calls: list, rest: str) -> None:
    assert parse_tool_calls(text) == (tuple(calls), rest)


def test_the_fallback_puts_the_definitions_in_the_system_message_and_calls_in_the_text() -> None:
    conv = Conversation.from_dict(CHAT)
    shown, where = fallback_messages(conv.messages, conv.tools)
    assert where == [0, 1, 2, 3, 4]
    assert shown[0].role == "system" and shown[0].content.startswith("You are a weather bot.\n\n# " + FALLBACK_LABEL)
    assert json.dumps(WEATHER) in shown[0].content
    assert shown[2] == Message("assistant", '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}'
                                            '</tool_call>')
    assert shown[3] == Message("user", '{"temperature": 18}')
    assert all(not m.tool_calls for m in shown)
    # what the fallback writes, it reads back
    assert parse_tool_calls(shown[2].content)[0] == (ToolCall("get_weather", {"city": "Paris"}),)
    # no system message: one is put first; a template that refuses one: the first user message carries them
    shown, where = fallback_messages(conv.messages[1:], conv.tools)
    assert shown[0].role == "system" and where[0] == 1
    shown, where = fallback_messages(conv.messages[1:], conv.tools, system=False)
    assert shown[0].role == "user" and shown[0].content.endswith("\n\nWeather in Paris?") and where[0] == 0


def test_calls_in_json_and_the_fallbacks_text_agree() -> None:
    call = ToolCall("get_weather", {"city": "São Paulo"})
    assert calls_in_json("x " + tool_call_text(call) + " y") == [call]


@pytest.mark.parametrize("call, words", [
    (ToolCall("get_time", {}), "There is no tool named get_time (the tools are: get_weather)."),
    (ToolCall("get_weather", {}), "The call of get_weather lacks its required argument city."),
    (ToolCall("get_weather", {"city": 3}), "The argument city of get_weather must be of JSON type string."),
    (ToolCall("get_weather", {"city": "Oslo", "unit": "K"}), "must be one of C, F"),
    (ToolCall("get_weather", {"city": "Oslo", "days": True}), "must be of JSON type integer"),
])
def test_a_call_is_checked_against_its_definition(call: ToolCall, words: str) -> None:
    with pytest.raises(ConversationError) as err:
        check_call(call, [WEATHER])
    assert words in str(err.value)


def test_a_good_call_passes_its_check() -> None:
    check_call(ToolCall("get_weather", {"city": "Oslo", "unit": "C", "days": 2}), [WEATHER])

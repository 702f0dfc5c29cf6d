"""Tool calling: the fallback for templates without it, and the calls a model writes.

A chat template trained for tools (Qwen2.5, Qwen3, Llama 3.x, Hermes,
Mistral) writes the tool definitions, the calls and their results in its own
format. A template without tool support (SmolLM2's) would drop them, so
lmdesk writes them itself, **clearly labelled as lmdesk's and not the
model's**: the definitions as JSON in the system message, each call as a
``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` line of the
assistant's text, and each result as a turn of its own (its text as it is).
The model was not trained on that: whatever it does with it is a guess.

:func:`parse_tool_calls` reads a call the model generated, in any of the
formats above (``<tool_call>…</tool_call>``, Llama 3.x's bare
``{"name": …, "parameters": …}``, Mistral's ``[TOOL_CALLS][…]``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from .conversation import ConversationError, Message, ToolCall, arguments_object

FALLBACK_LABEL = "Tools (written by lmdesk: this model's chat template has no format for them)"
_CALL_TAG = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_MISTRAL = re.compile(r"\[TOOL_CALLS\]\s*(\[.*)", re.S)


def tool_definitions_text(tools: Sequence[Mapping]) -> str:
    """What the fallback adds to the system message: a label, how to call, and
    each definition as one line of JSON."""
    lines = [f"# {FALLBACK_LABEL}", "",
             "You may call these functions. To call one, answer with a line",
             '<tool_call>{"name": <function-name>, "arguments": <arguments as a JSON object>}</tool_call>',
             "", "<tools>"]
    lines += [json.dumps(t, ensure_ascii=False) for t in tools]
    lines.append("</tools>")
    return "\n".join(lines)


def tool_call_text(call: ToolCall) -> str:
    """One call as the fallback writes it in the assistant's text."""
    return ("<tool_call>" + json.dumps({"name": call.name, "arguments": dict(call.arguments)}, ensure_ascii=False)
            + "</tool_call>")


def fallback_messages(messages: Sequence[Message], tools: Sequence[Mapping], *,
                      system: bool = True) -> tuple[list[Message], list[int]]:
    """``messages`` rewritten for a template without tool support, and for each
    original message its index in the new list: the definitions go into the
    system message (one is put first if there is none; with ``system``
    False, for a template that refuses a system message, they open the first
    user message), calls become text of the assistant's turn, results are
    user turns of their own (their text as it is)."""
    out: list[Message] = []
    where: list[int] = []
    definitions = tool_definitions_text(tools) if tools else ""
    host = "system" if system else "user"
    if definitions and system and (not messages or messages[0].role != "system"):
        out.append(Message("system", definitions))
    for k, m in enumerate(messages):
        if definitions and m.role == host and not any(x.role == host for x in messages[:k]):
            text = m.content + ("\n\n" if m.content else "") + definitions if system else definitions + "\n\n" + m.content
            out.append(Message(m.role, text))
        elif m.tool_calls:
            calls = "\n".join(tool_call_text(c) for c in m.tool_calls)
            out.append(Message("assistant", m.content + ("\n" if m.content else "") + calls))
        elif m.role == "tool":
            out.append(Message("user", m.content))
        else:
            out.append(Message(m.role, m.content))
        where.append(len(out) - 1)
    return out, where


def _call_of(obj: object) -> ToolCall | None:
    if not isinstance(obj, Mapping):
        return None
    function = obj.get("function", obj)
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
        return None
    if not any(k in function for k in ("arguments", "parameters")):
        return None
    try:
        args = arguments_object(function.get("arguments", function.get("parameters")), function["name"])
    except ConversationError:
        return None
    call_id = obj.get("id")
    return ToolCall(function["name"], args, call_id if isinstance(call_id, str) else None)


def json_values(text: str) -> list[tuple[int, int, object]]:
    """The JSON objects and arrays in ``text`` that stand on their own (start,
    end, value), left to right, none inside another."""
    decoder = json.JSONDecoder()
    found = []
    i = 0
    while True:
        starts = [j for j in (text.find("{", i), text.find("[", i)) if j >= 0]
        if not starts:
            return found
        j = min(starts)
        try:
            value, end = decoder.raw_decode(text, j)
        except (ValueError, RecursionError):
            i = j + 1
            continue
        found.append((j, end, value))
        i = end


def calls_in_json(text: str) -> list[ToolCall]:
    """Every tool call written as JSON in ``text`` (objects with a name and
    arguments or parameters, alone or in a list)."""
    calls = []
    for _a, _b, value in json_values(text):
        for item in value if isinstance(value, list) else [value]:
            call = _call_of(item)
            if call is not None:
                calls.append(call)
    return calls


def parse_tool_calls(text: str) -> tuple[tuple[ToolCall, ...], str]:
    """The tool calls a model wrote in ``text`` and the text around them
    (stripped), in the formats of Qwen2.5 / Qwen3 / Hermes and lmdesk's
    fallback (``<tool_call>{json}</tool_call>``), Mistral (``[TOOL_CALLS][…]``)
    and Llama 3.x (the whole reply one ``{"name": …, "parameters": …}``
    object, perhaps after ``<|python_tag|>``). No call: ``((), text)``."""
    tagged = list(_CALL_TAG.finditer(text))
    if tagged:
        calls = [c for m in tagged for c in calls_in_json(m.group(1))]
        if calls:
            return tuple(calls), _CALL_TAG.sub("", text).strip()
    mistral = _MISTRAL.search(text)
    if mistral:
        calls = calls_in_json(mistral.group(1))
        if calls:
            return tuple(calls), text[: mistral.start()].strip()
    bare = text.strip().removeprefix("<|python_tag|>").strip()
    if bare.startswith("{"):
        values = json_values(bare)
        if len(values) == 1 and values[0][0] == 0 and values[0][1] == len(bare):
            call = _call_of(values[0][2])
            if call is not None:
                return (call,), ""
    return (), text


def check_call(call: ToolCall, tools: Sequence[Mapping]) -> None:
    """A call checked against the definitions: the function exists and the
    arguments hold the required parameters, of the right JSON types."""
    names = {t["function"]["name"]: t["function"] for t in tools}
    if call.name not in names:
        known = ", ".join(names) or "none"
        raise ConversationError(f"There is no tool named {call.name} (the tools are: {known}).")
    params = names[call.name].get("parameters") or {}
    props = params.get("properties") or {}
    missing = [p for p in params.get("required") or [] if p not in call.arguments]
    if missing:
        raise ConversationError(f"The call of {call.name} lacks its required argument {missing[0]}.")
    for key, value in call.arguments.items():
        if props and key not in props and params.get("additionalProperties") is False:
            raise ConversationError(f"{call.name} has no parameter {key}.")
        kind = (props.get(key) or {}).get("type")
        if isinstance(kind, str) and not _is_type(value, kind):
            raise ConversationError(f"The argument {key} of {call.name} must be of JSON type {kind}.")
        enum = (props.get(key) or {}).get("enum")
        if isinstance(enum, list) and value not in enum:
            raise ConversationError(f"The argument {key} of {call.name} must be one of {', '.join(map(str, enum))}.")


def _is_type(value: object, kind: str) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, Mapping),
        "array": lambda v: isinstance(v, list),
        "null": lambda v: v is None,
    }
    return checks.get(kind, lambda v: True)(value)

"""A conversation as data: messages in the widely used chat form, and tools.

The form is the one chat templates, model cards and web tools use::

    {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": "",
         "tool_calls": [{"type": "function",
                         "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "name": "get_weather", "content": "{\\"temperature\\": 18}"}],
     "tools": [{"type": "function",
                "function": {"name": "get_weather", "description": "...", "parameters": {...}}}]}

:meth:`Message.to_dict` / :meth:`Message.from_dict` (and the same of
:class:`Conversation`) convert to and from that form; written and read back,
a conversation is the same. A tool call's arguments are an object; a JSON
string is accepted on input (some tools write them so) and read as the
object it holds. Anything that is not of this shape is one sentence
(:class:`ConversationError`).

This module is pure data: no template, no model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import LmdeskError

ROLES = ("system", "user", "assistant", "tool")


class ConversationError(LmdeskError):
    """A conversation (or its JSON) is not of the chat form."""


@dataclass(frozen=True)
class ToolCall:
    """One call of a function, as an assistant message holds it."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None

    def to_dict(self) -> dict:
        data: dict = {"type": "function", "function": {"name": self.name, "arguments": dict(self.arguments)}}
        if self.id is not None:
            data["id"] = self.id
        return data

    @classmethod
    def from_dict(cls, data: object, where: str = "a tool call") -> ToolCall:
        """A tool call from ``{"type": "function", "function": {"name", "arguments"}}`` (the
        ``function`` wrapper may be left out; arguments may be a JSON string)."""
        if not isinstance(data, Mapping):
            raise ConversationError(f"{_cap(where)} must be an object with a function name and arguments.")
        call_id = data.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise ConversationError(f"The id of {where} must be text.")
        function = data.get("function", data)
        if not isinstance(function, Mapping):
            raise ConversationError(f"The function of {where} must be an object with a name and arguments.")
        name = function.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ConversationError(f"{_cap(where)} has no function name.")
        return cls(name, arguments_object(function.get("arguments", function.get("parameters", {})), name), call_id)


def arguments_object(arguments: object, name: str) -> dict:
    """A tool call's arguments as an object: a JSON string is read; anything
    else than an object is one sentence."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError):
            raise ConversationError(f"The arguments of the call of {name} are not valid JSON.") from None
    if not isinstance(arguments, Mapping):
        raise ConversationError(f"The arguments of the call of {name} must be a JSON object, like {{\"city\": \"Paris\"}}.")
    return dict(arguments)


@dataclass(frozen=True)
class Message:
    """One message: ``Message(role, content)``; an assistant message may hold
    ``tool_calls``, a tool message the ``name`` of the function and the
    ``tool_call_id`` it answers."""

    role: str  # "system", "user", "assistant" or "tool"
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    name: str | None = None
    tool_call_id: str | None = None

    def to_dict(self) -> dict:
        """The chat form; keys without a value are left out (templates test
        ``'tool_calls' in message``)."""
        data: dict = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.name is not None:
            data["name"] = self.name
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        return data

    @classmethod
    def from_dict(cls, data: object, where: str = "a message") -> Message:
        if not isinstance(data, Mapping):
            raise ConversationError(f"{_cap(where)} must be an object with a role and a content.")
        role = data.get("role")
        if role not in ROLES:
            raise ConversationError(f"{_cap(where)} has the role {role!r}; a role is one of {', '.join(ROLES)}.")
        content = data.get("content", "")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise ConversationError(f"The content of {where} must be text.")
        calls = data.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ConversationError(f"The tool_calls of {where} must be a list.")
        if calls and role != "assistant":
            raise ConversationError(f"{_cap(where)} is from the {role}, but only the assistant makes tool calls.")
        tool_calls = tuple(ToolCall.from_dict(c, f"tool call {k + 1} of {where}") for k, c in enumerate(calls))
        name, call_id = data.get("name"), data.get("tool_call_id")
        for key, value in (("name", name), ("tool_call_id", call_id)):
            if value is not None and not isinstance(value, str):
                raise ConversationError(f"The {key} of {where} must be text.")
        return cls(role, content, tool_calls, name, call_id)


@dataclass(frozen=True)
class Conversation:
    """Messages and the tools (JSON-schema function definitions) the model may call."""

    messages: tuple[Message, ...] = ()
    tools: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict:
        data: dict = {"messages": [m.to_dict() for m in self.messages]}
        if self.tools:
            data["tools"] = [dict(t) for t in self.tools]
        return data

    @classmethod
    def from_dict(cls, data: object) -> Conversation:
        """From ``{"messages": [...], "tools": [...]}``, or a bare list of messages."""
        if isinstance(data, list):
            data = {"messages": data}
        if not isinstance(data, Mapping) or not isinstance(data.get("messages"), list):
            raise ConversationError('A conversation is an object with a list of "messages" (and "tools", if any).')
        messages = tuple(Message.from_dict(m, f"message {k + 1}") for k, m in enumerate(data["messages"]))
        return cls(messages, tools_list(data.get("tools")))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)

    @classmethod
    def from_json(cls, text: str, where: str = "The conversation") -> Conversation:
        try:
            data = json.loads(text)
        except RecursionError:
            raise ConversationError(f"{where} is nested too deeply to be a conversation.") from None
        except ValueError as exc:
            line = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise ConversationError(f"{where} is not valid JSON{line}.") from None
        return cls.from_dict(data)


def tools_list(tools: object) -> tuple[dict, ...]:
    """Tool definitions checked to be ``[{"type": "function", "function": {"name", ...}}]``."""
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise ConversationError('The "tools" must be a list of function definitions.')
    out = []
    for k, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, Mapping) else None
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str) or not function["name"]:
            raise ConversationError(
                f'Tool {k + 1} is not a function definition: it needs {{"type": "function", "function": {{"name": ...}}}}.')
        params = function.get("parameters")
        if params is not None and not isinstance(params, Mapping):
            raise ConversationError(f"The parameters of the tool {function['name']} must be a JSON schema object.")
        out.append(dict(tool))
    return tuple(out)


def messages_of_dicts(items: Sequence[object]) -> list[Message]:
    return [Message.from_dict(m, f"message {k + 1}") for k, m in enumerate(items)]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]

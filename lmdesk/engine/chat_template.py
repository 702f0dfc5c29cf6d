"""Render conversations with a model's own chat template.

Templates come from model files, so they are untrusted: they run in jinja2's
immutable sandbox, which refuses access to Python internals.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import LmdeskError


class ChatTemplateError(LmdeskError):
    """The model's chat template failed or refused a conversation."""


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"The model's chat template refused this conversation: {message}")


def _tojson(value, indent=None, ensure_ascii=False, **_ignored) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


class ChatTemplate:
    """A compiled chat template."""

    def __init__(self, source: str, *, bos_token: str | None = None, eos_token: str | None = None) -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = _raise_exception
        env.filters["tojson"] = _tojson
        try:
            self._template = env.from_string(source)
        except TemplateError as exc:
            raise ChatTemplateError(f"The model's chat template is not valid ({exc}).") from exc
        self.source = source
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
        try:
            return self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
        except ChatTemplateError:
            raise
        except Exception as exc:  # a template may fail in any way jinja2 allows
            raise ChatTemplateError(f"The model's chat template failed on this conversation ({exc}).") from exc


def read_template_file(path) -> str:
    """The jinja2 source of a chat template file, checked to compile: a file
    that cannot be read or is not a template is one sentence."""
    from pathlib import Path

    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChatTemplateError(f"There is no chat template file at {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatTemplateError(f"The chat template file {path} cannot be read as UTF-8 text ({exc}).") from exc
    if not source.strip():
        raise ChatTemplateError(f"The chat template file {path} is empty.")
    ChatTemplate(source)  # a template that does not compile says so now
    return source


_SENTINEL = "\u2063lmdesk-content\u2063"


@dataclass(frozen=True)
class RenderedMessage:
    """Where one message landed in a rendered conversation (character offsets)."""

    role: str
    start: int
    end: int
    content_start: int
    content_end: int


@dataclass(frozen=True)
class Rendered:
    text: str
    messages: tuple[RenderedMessage, ...]  # in order; the generation prompt, if any, follows the last one


def render_with_spans(template: ChatTemplate, messages: Sequence[Message], *, add_generation_prompt: bool) -> Rendered:
    """Render ``messages`` and tell, for each, which characters it covers
    and where its content sits among the template's markers.

    Spans come from rendering growing prefixes of the conversation; a
    template whose output for a prefix is not a prefix of the whole (rare)
    gets one span covering everything.
    """
    text = template.render(messages, add_generation_prompt=add_generation_prompt)
    spans: list[RenderedMessage] = []
    start = 0
    for j, msg in enumerate(messages):
        upto = template.render(messages[: j + 1], add_generation_prompt=False)
        if not text.startswith(upto) or len(upto) < start:
            return Rendered(text, (RenderedMessage(messages[-1].role, 0, len(text), 0, 0),))
        end = len(upto)
        c_start = c_end = start
        probe = template.render([*messages[:j], Message(msg.role, _SENTINEL)], add_generation_prompt=False)
        at = probe.find(_SENTINEL, start)
        if at >= 0 and text[at : at + len(msg.content)] == msg.content:
            c_start, c_end = at, at + len(msg.content)
        else:  # the template changed the content (trimmed it, say): find what is left of it
            found = text.rfind(msg.content.strip(), start, end) if msg.content.strip() else -1
            if found >= 0:
                c_start, c_end = found, found + len(msg.content.strip())
        spans.append(RenderedMessage(msg.role, start, end, c_start, c_end))
        start = end
    return Rendered(text, tuple(spans))


def default_system_prompt(template: ChatTemplate) -> str | None:
    """The system prompt a template puts in when the conversation has none,
    or None if it adds none."""
    probe = [Message("user", "Hello")]
    try:
        without = template.render(probe)
        with_sentinel = template.render([Message("system", _SENTINEL), *probe])
    except ChatTemplateError:
        return None
    if _SENTINEL not in with_sentinel:
        return None
    before, after = with_sentinel.split(_SENTINEL, 1)
    if without.startswith(before) and without.endswith(after) and len(without) >= len(before) + len(after):
        found = without[len(before) : len(without) - len(after)]
        return found or None
    return None

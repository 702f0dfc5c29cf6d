"""The document: the conversation as the model sees it, one token at a time.

A :class:`Document` is plain data: token ids, each with the statistics of
the distribution that predicted it and the part of the conversation it
belongs to. The :class:`~lmdesk.engine.session.Session` changes it; the window
only reads it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .conversation import Message, ToolCall
from .stats import SpanSummary, TokenStats, summarize

CONTENT = "content"  # text of a message
MARKUP = "markup"  # what the chat template adds around messages: role markers, delimiters
TOOL_CALL = "tool_call"  # a tool call of an assistant message, as the template writes it (name and arguments)


@dataclass(frozen=True)
class Segment:
    """A part of the document: one message, or plain text outside any chat."""

    role: str  # "system", "user", "assistant", "tool", or "text" for a document without chat
    message: int | None  # index of the message in the conversation, None for plain text
    name: str | None = None  # a tool message's function name
    tool_call_id: str | None = None  # the call a tool message answers
    escaped: bool = False  # the content is written as the inside of a JSON string (Llama 3.x tool results)
    call_ids: tuple[str | None, ...] = ()  # the ids of an assistant message's tool calls (few templates write them)


@dataclass(frozen=True)
class DocToken:
    id: int
    stats: TokenStats | None  # None for the first token: nothing predicted it
    segment: int  # index into Document.segments
    kind: str  # CONTENT or MARKUP
    special: bool  # a special token of the vocabulary (role markers, turn delimiters)


@dataclass
class Document:
    tokens: list[DocToken] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    def segment_of(self, index: int) -> Segment:
        return self.segments[self.tokens[index].segment]

    def add_segment(self, segment: Segment) -> int:
        """Index of ``segment``, appended unless it is already the last one."""
        if self.segments and self.segments[-1] == segment:
            return len(self.segments) - 1
        self.segments.append(segment)
        return len(self.segments) - 1

    def truncate(self, n: int) -> None:
        del self.tokens[n:]
        used = self.tokens[-1].segment + 1 if self.tokens else 0
        del self.segments[used:]

    def span(self, start: int, stop: int) -> SpanSummary:
        """Surprise over tokens ``start`` … ``stop - 1`` (tokens without a
        prediction, i.e. the first one, are left out of the count)."""
        start, stop = max(0, start), min(len(self.tokens), stop)
        return summarize([t.stats.bits for t in self.tokens[start:stop] if t.stats is not None])

    def total(self) -> SpanSummary:
        return self.span(0, len(self.tokens))

    def message_tokens(self) -> list[tuple[Segment, list[DocToken]]]:
        """Tokens grouped by segment, in order."""
        groups: list[tuple[Segment, list[DocToken]]] = []
        last = None
        for tok in self.tokens:
            if tok.segment != last:
                groups.append((self.segments[tok.segment], []))
                last = tok.segment
            groups[-1][1].append(tok)
        return groups


def messages_of(doc: Document, decode: Callable[[list[int]], str]) -> list[tuple[str, str]]:
    """The conversation in ``doc`` as (role, content) pairs (see :func:`conversation_of`;
    plain text outside any message is left out)."""
    return [(m.role, m.content) for m in conversation_of(doc, decode)]


def conversation_of(doc: Document, decode: Callable[[list[int]], str]) -> list[Message]:
    """The conversation in ``doc`` as messages, in the order of their index (a
    template may write a message inside a later one's turn: Mistral's system
    message): each one's content read back from its content tokens, its tool
    calls from its tool-call tokens (engine/tools.py reads them; tokens edited
    until they are no call are read as content, so nothing is lost)."""
    from .tools import calls_in_json

    parts: dict[int, tuple[Segment, list[DocToken]]] = {}
    for seg, toks in doc.message_tokens():
        if seg.message is not None:
            parts.setdefault(seg.message, (seg, []))[1].extend(toks)
    out = []
    for index in sorted(parts):
        seg, toks = parts[index]
        content = decode([t.id for t in toks if t.kind == CONTENT])
        if seg.escaped:
            content = _unescape(content)
        call_text = decode([t.id for t in toks if t.kind == TOOL_CALL])
        calls = tuple(calls_in_json(call_text))
        if call_text and not calls:  # a call edited until it is no longer one: its text is kept as text
            content += call_text
        calls = tuple(c if c.id is not None or k >= len(seg.call_ids) else ToolCall(c.name, c.arguments, seg.call_ids[k])
                      for k, c in enumerate(calls))
        out.append(Message(seg.role, content, calls, seg.name, seg.tool_call_id))
    return out


def _unescape(text: str) -> str:
    try:
        value = json.loads(f'"{text}"')
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def first_difference(old_tokens: Sequence[DocToken], old_segments: Sequence[Segment],
                     new_tokens: Sequence[DocToken], new_segments: Sequence[Segment]) -> int:
    """The first position whose token differs between two documents in any
    way a reader sees: its id, statistics, kind or part (a part's role or
    message changing counts for each of its tokens)."""
    n = min(len(old_tokens), len(new_tokens))
    i = 0
    while i < n and (old_tokens[i] is new_tokens[i] or old_tokens[i] == new_tokens[i]):
        i += 1
    m = min(len(old_segments), len(new_segments))
    j = 0
    while j < m and old_segments[j] == new_segments[j]:
        j += 1
    if j < max(len(old_segments), len(new_segments)):  # parts from j on changed: their first token
        i = min(i, next((k for k in range(i) if new_tokens[k].segment >= j), i))
    return i


def in_conversation(segments: Sequence[Segment]) -> bool:
    """Whether a document of these parts is a conversation (some part is a message)."""
    return any(seg.message is not None for seg in segments)


def reply_positions(tokens: Sequence[DocToken], segments: Sequence[Segment], start: int = 0) -> list[int]:
    """The positions (from ``start`` on) of the assistant's words (its replies' text, not
    the template's markers around them); in a plain-text document, every position."""
    if not in_conversation(segments):
        return list(range(start, len(tokens)))
    return [i for i in range(start, len(tokens))
            if tokens[i].kind == CONTENT and segments[tokens[i].segment].role == "assistant"]


FINDS = ("surprising", "confident", "uncertain")


def ranked(tokens: Sequence[DocToken], positions: Sequence[int], find: str) -> list[int]:
    """``positions`` (those with statistics) ordered for the lab's questions:
    ``"surprising"``, the most bits first; ``"confident"``, the fewest bits
    first; ``"uncertain"``, the highest entropy of the distribution that
    predicted the token first. Ties keep reading order."""
    scored = [i for i in positions if tokens[i].stats is not None]
    if find == "surprising":
        return sorted(scored, key=lambda i: -tokens[i].stats.bits)
    if find == "confident":
        return sorted(scored, key=lambda i: tokens[i].stats.bits)
    if find == "uncertain":
        return sorted(scored, key=lambda i: -tokens[i].stats.entropy)
    raise ValueError(f"no such question: {find}")


def same_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common prefix of two id sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n

"""Conversation files: a document saved to disk and opened again.

A file (``.lmdesk.json``, UTF-8 JSON) keeps the document exactly: every
token id with the part of the conversation it belongs to, so a forced,
unlikely token comes back as it was. Statistics are not stored: they are the
model's, and opening a file computes them again. For people (and for a
teacher collecting a lab), the file also carries the conversation as plain
messages, the text, and the surprise summary at the time of saving.

Opened with another model than the one it was saved with, the conversation
is written again with that model's chat template (its tokens would mean
nothing to another vocabulary).

A file also carries the conversation's tool definitions (``tools``) and its
messages in the chat form (with ``tool_calls``); a token that is part of a
tool call is kind 2. Files written before (version 1 without them) open as
they did.

:func:`read_json` / :func:`write_json` read and write a bare conversation,
``{"messages": [...], "tools": [...]}`` (``.json``), the form other tools use.

A file may also carry a *draft*: the message that was typed but not yet
read by the model when the window closed (closing while the model reads a
long paste keeps it); opening the file puts it back in the message box.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from .conversation import Conversation, ConversationError, Message, messages_of_dicts, tools_list
from .document import CONTENT, MARKUP, TOOL_CALL, Document, Segment, conversation_of
from .errors import LmdeskError

FORMAT = "lmdesk-conversation"
VERSION = 1
SUFFIX = ".lmdesk.json"
MAX_BYTES = 64 << 20  # far beyond any model's context; a bigger file is not a conversation
MAX_VOCAB = 1 << 24  # token ids and vocabulary sizes beyond this are damage, not a model


class ConversationFileError(LmdeskError):
    """A conversation file cannot be written or read."""


@dataclass(frozen=True)
class SavedConversation:
    model_name: str
    vocab_size: int
    system_prompt: str | None
    ids: list[int]
    segments: list[Segment]  # one per token
    kinds: list[str]  # CONTENT or MARKUP, one per token
    messages: list[Message]
    text: str
    draft: str | None = None  # a message typed but not yet read by the model
    tools: tuple[dict, ...] = ()  # the tool definitions of the conversation


def to_dict(session, draft: str | None = None) -> dict:
    """What :func:`save` writes for ``session`` (a :class:`~lmdesk.engine.session.Session`)."""
    return document_dict(session.document_to_keep(), session.model.tokenizer, session.model.name,
                         session.model.vocab_size, session.system_prompt, draft, session.tools)


_KIND_CODES = {CONTENT: 0, MARKUP: 1, TOOL_CALL: 2}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}


def _part(s: Segment) -> dict:
    part: dict = {"role": s.role, "message": s.message}
    for key in ("name", "tool_call_id"):
        if getattr(s, key) is not None:
            part[key] = getattr(s, key)
    if s.escaped:
        part["escaped"] = True
    if s.call_ids:
        part["call_ids"] = list(s.call_ids)
    return part


def document_dict(doc: Document, tokenizer, model_name: str, vocab_size: int, system_prompt: str | None,
                  draft: str | None = None, tools=()) -> dict:
    """What :func:`save` writes for the document ``doc`` of a model (its
    tokenizer, name and vocabulary size)."""

    def decode(ids: list[int]) -> str:
        return tokenizer.decode(ids, skip_special_tokens=False)

    parts = [_part(s) for s in doc.segments]
    total = doc.total()
    data = {
        "format": FORMAT,
        "version": VERSION,
        "saved_by": f"lmdesk {__version__}",
        "model": {"name": model_name, "vocab_size": vocab_size},
        "system_prompt": system_prompt,
        "parts": parts,
        # [id, part, kind] per token: kind 1 = template markup, 0 = text, 2 = a tool call
        "tokens": [[t.id, t.segment, _KIND_CODES[t.kind]] for t in doc.tokens],
        "messages": [m.to_dict() for m in conversation_of(doc, decode)],
        "text": decode(doc.ids),
        "summary": {
            "tokens": len(doc),
            "total_bits": round(total.total_bits, 4),
            "bits_per_token": round(total.bits_per_token, 4),
            "perplexity": round(total.perplexity, 4),
        },
    }
    if tools:
        data["tools"] = [dict(t) for t in tools]
    if draft:
        data["draft"] = draft
    return data


def save(session, path: Path | str, draft: str | None = None) -> Path:
    """Write ``session``'s document to ``path`` (all or nothing: a failed
    write leaves any earlier file there as it was)."""
    return write(to_dict(session, draft), path)


def write(data: dict, path: Path | str) -> Path:
    """Write what :func:`to_dict` or :func:`document_dict` made to ``path``, all or nothing."""
    path = Path(path)
    data = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    _write_text(data, path)
    return path


def write_json(conversation: Conversation, path: Path | str) -> Path:
    """Write a bare conversation (``{"messages": [...], "tools": [...]}``) to ``path``, all or nothing."""
    path = Path(path)
    _write_text(conversation.to_json() + "\n", path)
    return path


def _write_text(data: str, path: Path) -> None:
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".lmdesk-", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise ConversationFileError(
            f"The conversation could not be saved to {path} ({exc.strerror or exc})."
        ) from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def read_json(path: Path | str) -> Conversation:
    """A bare conversation from a ``.json`` file (an ``.lmdesk.json`` file's
    messages and tools too); any problem is one sentence."""
    path = Path(path)
    try:
        data = json.loads(_read_bytes(path).decode("utf-8"))
    except UnicodeDecodeError:
        raise ConversationFileError(f"{path.name} is not UTF-8 text.") from None
    except RecursionError:
        raise ConversationFileError(f"{path.name} is nested too deeply to be a conversation.") from None
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConversationFileError(f"{path.name} is not valid JSON{where}.") from None
    try:
        return Conversation.from_dict(data)
    except ConversationError as exc:
        raise ConversationFileError(f"{path.name}: {exc}") from None


def _read_bytes(path: Path) -> bytes:
    name = path.name
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConversationFileError(f"{name} is {size / 1e6:.0f} MB: far too big to be an lmdesk conversation.")
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ConversationFileError(f"There is no file {path}.") from exc
    except IsADirectoryError as exc:
        raise ConversationFileError(f"{path} is a folder, not a conversation file.") from exc
    except OSError as exc:
        raise ConversationFileError(f"{name} cannot be read ({exc.strerror or exc}).") from exc
    return raw


def read(path: Path | str) -> SavedConversation:
    """Read and check a conversation file; any problem is one sentence."""
    path = Path(path)
    name = path.name
    raw = _read_bytes(path)
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError: bad JSON, or an integer of thousands of digits; RecursionError: nesting without end
        raise ConversationFileError(f"{name} is not an lmdesk conversation: it is damaged or another kind of file.") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConversationFileError(f"{name} is not an lmdesk conversation file.")
    version = data.get("version")
    if isinstance(version, float) and version.is_integer():
        version = int(version)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConversationFileError(f"{name} is damaged: its format version is not a whole number.")
    if version > VERSION:
        raise ConversationFileError(f"{name} was saved by a newer lmdesk; update lmdesk to open it.")
    try:
        return _parse(data)
    except ConversationError as exc:
        raise ConversationFileError(f"{name} is damaged: {exc}") from exc
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ConversationFileError(f"{name} is damaged: its tokens or messages cannot be read.") from exc


def _parse(data: dict) -> SavedConversation:
    model = data["model"]
    parts = []
    for p in data["parts"]:
        role, message = p["role"], p["message"]
        name, call_id, escaped = p.get("name"), p.get("tool_call_id"), p.get("escaped", False)
        if not isinstance(role, str) or not (message is None or isinstance(message, int)):
            raise ValueError("bad part")
        call_ids = p.get("call_ids", [])
        if not isinstance(call_ids, list):
            raise ValueError("bad part")
        if (not all(v is None or isinstance(v, str) for v in (name, call_id, *call_ids))
                or not isinstance(escaped, bool)):
            raise ValueError("bad part")
        parts.append(Segment(role, message, name, call_id, escaped, tuple(call_ids)))
    ids, segments, kinds = [], [], []
    for entry in data["tokens"]:
        tok, part, kind = entry
        if not (isinstance(tok, int) and isinstance(part, int) and kind in _KINDS) or not 0 <= part < len(parts):
            raise ValueError("bad token")
        if not 0 <= tok < MAX_VOCAB:
            raise ValueError("a token id no vocabulary has")
        ids.append(tok)
        segments.append(parts[part])
        kinds.append(_KINDS[kind])
    messages = messages_of_dicts(data.get("messages", []))
    system = data.get("system_prompt")
    if system is not None and not isinstance(system, str):
        raise ValueError("bad system prompt")
    text = data.get("text", "")
    if not isinstance(text, str):
        raise ValueError("bad text")
    draft = data.get("draft")
    if draft is not None and not isinstance(draft, str):
        raise ValueError("bad draft")
    vocab_size = model["vocab_size"]
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 0 < vocab_size < MAX_VOCAB:
        raise ValueError("bad vocabulary size")
    return SavedConversation(str(model["name"]), vocab_size, system, ids, segments, kinds, messages, text,
                             draft or None, tools_list(data.get("tools")))


def open_into(session, saved: SavedConversation, progress=None, should_cancel=None) -> str:
    """Put ``saved`` into ``session`` (undoable); returns one sentence saying
    how: token for token with the model it was saved with, or written again
    with this model's template."""
    model = session.model
    if not saved.ids and not saved.messages and not saved.text:
        if saved.draft:  # closed while the model read the first message: only that message was kept
            return "The document was empty; the message you had typed is back in its box."
        raise ConversationFileError("The file holds an empty document: there is nothing to open.")
    if saved.model_name == model.name and saved.vocab_size == model.vocab_size and saved.ids:
        session.load_document(saved.ids, saved.segments, saved.kinds, saved.system_prompt, progress, should_cancel)
        session.tools = saved.tools
        return f"Opened {len(saved.ids):,} tokens, exactly as they were saved."
    if any(m.role != "system" for m in saved.messages):
        if session.template is None:
            raise ConversationFileError(
                f"This conversation was saved with {saved.model_name}; {model.name} has no chat template to write it."
            )
        session.rewrite_conversation(saved.messages, tools=saved.tools)
        return (f"Saved with {saved.model_name}: the same conversation, written with {model.name}'s template "
                f"({len(session.doc):,} tokens).")
    session.rewrite_conversation([], saved.text)
    return f"Saved with {saved.model_name}: the same text, as {model.name} reads it ({len(session.doc):,} tokens)."

"""How a token is shown to a person: its exact bytes, its text, and a visible "chip" label.

Every token of a document is drawn as a chip.  A chip must show what the token
really is, which is not what ``tokenizer.id_to_token`` returns:

* byte-level BPE vocabularies (GPT-2, SmolLM, Llama 3, Qwen, ...) spell bytes
  with GPT-2's ``bytes_to_unicode`` table, so a space reads ``Ġ``, a newline
  ``Ċ`` and the first two bytes of "—" read ``âĢ``;
* SentencePiece vocabularies (Llama 2, TinyLlama, Mistral v0.1, ...) spell a
  space ``▁`` and keep single bytes as ``<0xE2>`` tokens;
* a token is often only a *piece* of a multi-byte UTF-8 character, which
  decoded on its own gives mojibake (``â€``) or U+FFFD.

:class:`TokenTextTable` turns a token id into a :class:`TokenText`: the exact
bytes the token contributes to the text (``raw``), its text when those bytes are
complete UTF-8, and the chip label (``display``) where

* whitespace is made visible and countable: space ``·``, newline ``↵``, tab
  ``→``, carriage return ``␍``, no-break space ``⍽`` (see :data:`LEGEND`);
* other ASCII control characters are written as their byte, ``<0x07>``;
* other invisible or unusual characters (Unicode spaces such as U+2009 or
  U+3000, line/paragraph separators, C1 controls, zero-width and other format
  characters, private-use characters) are written as ``<U+2009>``;
* bytes that are not (by themselves) valid UTF-8 are written as ``<0xE2>``,
  found by a strict UTF-8 scan: the valid part of a token is shown as text and
  only the incomplete or invalid bytes as ``<0x..>``, so ``b"\\x94 hello"``
  shows ``<0x94>·hello``;
* a combining mark that has nothing to sit on (it starts the chip, or follows a
  ``<0x..>`` mark) is shown on a dotted circle, ``◌́``; a lone variation
  selector (e.g. the emoji selector U+FE0F) is written ``<U+FE0F>``.

Special tokens (``<|im_start|>``, ``</s>``, ...) are shown as their string.
Their ``raw`` is the UTF-8 of that string, so that ``bytes_of(ids)`` reproduces
``tokenizer.decode(ids, skip_special_tokens=False)``: a special token *is* text
in a rendered chat transcript.  ``is_special`` tells the UI to draw it apart.

Which characters of ``display`` are marks rather than real text is recorded in
:attr:`TokenText.marks` (a real "·" in the text is then distinguishable from a
space mark, e.g. by colour).

This module never imports Qt.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

__all__ = [
    "SPACE_MARK",
    "NEWLINE_MARK",
    "TAB_MARK",
    "CR_MARK",
    "NBSP_MARK",
    "COMBINING_BASE",
    "LEGEND",
    "STYLE_BYTE_LEVEL",
    "STYLE_SENTENCEPIECE",
    "STYLE_PLAIN",
    "TokenText",
    "TokenTextTable",
    "byte_level_decoder_table",
    "split_utf8",
    "visible",
]

# --------------------------------------------------------------------------
# Visible marks (also used by the UI legend)
# --------------------------------------------------------------------------

SPACE_MARK = "\u00b7"  # · MIDDLE DOT
NEWLINE_MARK = "\u21b5"  # ↵ DOWNWARDS ARROW WITH CORNER LEFTWARDS
TAB_MARK = "\u2192"  # → RIGHTWARDS ARROW
CR_MARK = "\u240d"  # ␍ SYMBOL FOR CARRIAGE RETURN
NBSP_MARK = "\u237d"  # ⍽ SHOULDERED OPEN BOX (U+00A0 NO-BREAK SPACE)
COMBINING_BASE = "\u25cc"  # ◌ DOTTED CIRCLE, carrier of a lone combining mark

#: (mark, meaning) pairs for a legend, in a sensible reading order.
LEGEND: tuple[tuple[str, str], ...] = (
    (SPACE_MARK, "space"),
    (NEWLINE_MARK, "new line"),
    (TAB_MARK, "tab"),
    (CR_MARK, "carriage return"),
    (NBSP_MARK, "no-break space"),
    ("<0xE2>", "a byte that is only part of a character (or not text at all)"),
    ("<U+2009>", "an invisible or unusual character, by its Unicode number"),
    (COMBINING_BASE, "stands in for the letter a combining accent belongs to"),
)

_CHAR_MARKS: dict[str, str] = {
    " ": SPACE_MARK,
    "\n": NEWLINE_MARK,
    "\t": TAB_MARK,
    "\r": CR_MARK,
    "\u00a0": NBSP_MARK,
}

# Unicode categories drawn as <U+XXXX>: other spaces, line and paragraph
# separators, controls (C1; C0 are written as bytes), format characters
# (zero-width space/joiner, BOM, soft hyphen, ...), private use, surrogates.
_CODEPOINT_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Co", "Cs"})
_COMBINING_CATEGORIES = frozenset({"Mn", "Mc", "Me"})

# Tokenizer styles.
STYLE_BYTE_LEVEL = "byte_level"
"""GPT-2 style byte-level BPE: vocab strings spell bytes with ``bytes_to_unicode``."""
STYLE_SENTENCEPIECE = "sentencepiece"
"""SentencePiece style: ``▁`` is a space, ``<0xAB>`` tokens are single bytes."""
STYLE_PLAIN = "plain"
"""Anything else (e.g. WordPiece): a token's bytes are ``tokenizer.decode([id])``."""


# --------------------------------------------------------------------------
# The value shown for one token
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenText:
    """What one token contributes to the text, and how its chip shows it."""

    raw: bytes
    """The exact bytes this token contributes to the text.

    For a special token: the UTF-8 of its string (e.g. ``b"<|im_start|>"``), so that
    concatenating ``raw`` reproduces ``tokenizer.decode(ids, skip_special_tokens=False)``.
    Empty only for an id the tokenizer does not know.
    """
    text: str
    """``raw`` decoded, if ``raw`` is complete, valid UTF-8; else ``""``."""
    display: str
    """What the chip shows: whitespace made visible, stray bytes as ``<0xE2>``,
    special tokens as their string."""
    is_special: bool
    """A special (control) token such as ``<|im_start|>``, or an unknown id."""
    partial_utf8: bool
    """``raw`` is not valid UTF-8 by itself: a piece of a multi-byte character
    (or a byte that can never be text)."""
    has_newline: bool
    """The token contains a line feed: in a wrapping flow the chip ends a line.

    Only ``\\n`` counts: a carriage return alone (``␍``) does not break the line,
    so that ``\\r\\n`` split over two tokens gives one line break, not two."""
    marks: tuple[tuple[int, int], ...] = ()
    """``(start, end)`` spans of ``display`` that are marks (``·``, ``↵``,
    ``<0xE2>``, ``<U+2009>``, ``◌``...) rather than characters of the text."""


# --------------------------------------------------------------------------
# UTF-8 scanning and visible text
# --------------------------------------------------------------------------


def split_utf8(raw: bytes) -> list[str | bytes]:
    """Cut ``raw`` into runs of valid UTF-8 (as ``str``) and of bytes that are not (as ``bytes``).

    Uses Python's strict decoder, which follows the Unicode recommendation of
    "maximal subparts": ``b"\\xe2\\x80"`` (an incomplete sequence) is one invalid
    run, ``b"\\x94 hello"`` is the invalid run ``b"\\x94"`` then ``" hello"``.
    Overlong forms, surrogates and bytes 0xC0, 0xC1, 0xF5..0xFF are invalid.
    """
    parts: list[str | bytes] = []
    pos = 0
    end = len(raw)
    while pos < end:
        chunk = raw[pos:]
        try:
            parts.append(chunk.decode("utf-8"))
            break
        except UnicodeDecodeError as error:
            if error.start:
                parts.append(chunk[: error.start].decode("utf-8"))
            bad_end = max(error.end, error.start + 1)
            bad = chunk[error.start : bad_end]
            if parts and isinstance(parts[-1], bytes):
                parts[-1] += bad
            else:
                parts.append(bad)
            pos += bad_end
    return parts


def characters_made_with(raws: Sequence[bytes], index: int) -> list[tuple[str, int, int]]:
    """The characters that token ``index`` holds only a part of, each with the
    first and last token whose bytes make it (a Chinese character or an emoji
    spread over byte tokens): ``[("中", 10, 12)]``. A byte that belongs to no
    valid character is left out."""
    lo, hi = max(0, index - 4), min(len(raws), index + 5)  # a character has at most 4 bytes
    data = bytearray()
    owner: list[int] = []  # the token of each byte
    for j in range(lo, hi):
        data += raws[j]
        owner += [j] * len(raws[j])
    mine = [k for k, j in enumerate(owner) if j == index]
    found: list[tuple[str, int, int]] = []
    k = mine[0] if mine else len(data)
    end = mine[-1] + 1 if mine else 0
    while k < end:
        start = k
        while start > 0 and start > k - 3 and data[start] & 0xC0 == 0x80:  # back to the character's lead byte
            start -= 1
        lead = data[start]
        size = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 0
        if size == 0 or start + size > len(data):
            k += 1
            continue
        try:
            ch = bytes(data[start : start + size]).decode("utf-8")
        except UnicodeDecodeError:
            k += 1
            continue
        first, last = owner[start], owner[start + size - 1]
        if first != last and start + size > k:  # spread over tokens, and this one holds a part of it
            found.append((ch, first, last))
        k = max(k + 1, start + size)
    return found


def _char_mark(ch: str) -> str | None:
    """The mark for an invisible or unusual character, or None if it is shown as itself."""
    mark = _CHAR_MARKS.get(ch)
    if mark is not None:
        return mark
    code = ord(ch)
    if code < 0x20 or code == 0x7F:
        return f"<0x{code:02X}>"
    if code < 0x7F:
        return None
    if unicodedata.category(ch) in _CODEPOINT_CATEGORIES:
        return f"<U+{code:04X}>"
    return None


def _is_variation_selector(ch: str) -> bool:
    code = ord(ch)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


def _render(parts: Iterable[str | bytes]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Display string and mark spans for runs of text and stray bytes."""
    out: list[str] = []
    marks: list[tuple[int, int]] = []
    length = 0
    needs_base = True  # a combining mark here would have nothing to sit on

    def add(piece: str, is_mark: bool) -> None:
        nonlocal length
        if is_mark:
            if marks and marks[-1][1] == length:
                marks[-1] = (marks[-1][0], length + len(piece))
            else:
                marks.append((length, length + len(piece)))
        out.append(piece)
        length += len(piece)

    for part in parts:
        if isinstance(part, bytes):
            add("".join(f"<0x{b:02X}>" for b in part), True)
            needs_base = True
            continue
        for ch in part:
            mark = _char_mark(ch)
            if mark is not None:
                add(mark, True)
                needs_base = mark.startswith("<")
                continue
            if needs_base and _is_variation_selector(ch):
                add(f"<U+{ord(ch):04X}>", True)  # selects nothing: say which one it is
                continue
            if needs_base and unicodedata.category(ch) in _COMBINING_CATEGORIES:
                add(COMBINING_BASE, True)
            add(ch, False)
            needs_base = False
    return "".join(out), tuple(marks)


def visible(data: bytes | str) -> str:
    """``data`` as a chip would show it (whitespace visible, stray bytes as ``<0x..>``).

    Useful for any span of text, e.g. ``visible(table.bytes_of(ids))``.
    """
    if isinstance(data, str):
        return _render([data])[0]
    return _render(split_utf8(data))[0]


# --------------------------------------------------------------------------
# Byte-level BPE
# --------------------------------------------------------------------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte → printable character table."""
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table: dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def byte_level_decoder_table() -> dict[str, int]:
    """Character → byte: the inverse of GPT-2's ``bytes_to_unicode``."""
    return {ch: b for b, ch in _bytes_to_unicode().items()}


_BYTE_OF_CHAR = byte_level_decoder_table()


def _byte_level_bytes(piece: str) -> bytes:
    """Bytes of a byte-level vocab string.

    Like ``tokenizers.decoders.ByteLevel``: a string with a character outside
    the table is taken as plain text (its UTF-8).
    """
    try:
        return bytes([_BYTE_OF_CHAR[ch] for ch in piece])
    except KeyError:
        return piece.encode("utf-8")


# --------------------------------------------------------------------------
# Style detection
# --------------------------------------------------------------------------


def _components(node: Any, list_key: str) -> list[dict[str, Any]]:
    """A decoder / pre-tokenizer / normalizer config flattened out of its Sequences."""
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        found: list[dict[str, Any]] = []
        for child in node.get(list_key) or []:
            found.extend(_components(child, list_key))
        return found
    return [node]


def _replace_pattern(node: dict[str, Any]) -> str | None:
    pattern = node.get("pattern")
    if isinstance(pattern, dict):
        value = pattern.get("String")
        return value if isinstance(value, str) else None
    return None


@dataclass(frozen=True)
class _Style:
    name: str
    space_char: str | None = None  # SentencePiece's space ("▁")
    byte_tokens: bool = False  # "<0xAB>" tokens are single bytes
    strips_leading_space: bool = False


def _style_config(tokenizer: Tokenizer) -> dict[str, Any]:
    """The parts of the tokenizer's configuration :func:`_detect_style` reads:
    its normalizer, pre-tokenizer and decoder, and whether its model falls back
    to byte tokens. Each part is read on its own: the whole configuration of a
    262,144-token vocabulary takes 1.6 s to write out and read back as JSON, all
    of it holding the interpreter (the window froze that long)."""
    config: dict[str, Any] = {}
    for part in ("normalizer", "pre_tokenizer", "decoder"):
        component = getattr(tokenizer, part, None)
        config[part] = json.loads(component.__getstate__()) if component is not None else None
    config["model"] = {"byte_fallback": bool(getattr(tokenizer.model, "byte_fallback", False))}
    return config


def _detect_style(config: dict[str, Any]) -> _Style:
    decoders = _components(config.get("decoder"), "decoders")
    pre_tokenizers = _components(config.get("pre_tokenizer"), "pretokenizers")
    normalizers = _components(config.get("normalizer"), "normalizers")
    model = config.get("model") or {}
    decoder_types = {d.get("type") for d in decoders}

    byte_tokens = bool(model.get("byte_fallback")) or "ByteFallback" in decoder_types
    space_char: str | None = None
    strips = False
    for d in decoders:
        if d.get("type") == "Metaspace":
            space_char = d.get("replacement") or "\u2581"
            scheme = d.get("prepend_scheme")
            strips = scheme in ("always", "first") if scheme is not None else bool(
                d.get("add_prefix_space", True)
            )
        elif d.get("type") == "Replace" and d.get("content") == " ":
            pattern = _replace_pattern(d)
            if pattern and len(pattern) == 1:
                space_char = pattern
        elif d.get("type") == "Strip" and d.get("content") == " " and int(d.get("start", 0)) > 0:
            strips = True

    if "ByteLevel" in decoder_types:
        return _Style(STYLE_BYTE_LEVEL)
    if space_char is not None or byte_tokens:
        return _Style(STYLE_SENTENCEPIECE, space_char or "\u2581", byte_tokens, strips)
    if not decoders:
        if any(p.get("type") == "ByteLevel" for p in pre_tokenizers):
            return _Style(STYLE_BYTE_LEVEL)
        for p in pre_tokenizers:
            if p.get("type") == "Metaspace":
                return _Style(STYLE_SENTENCEPIECE, p.get("replacement") or "\u2581", byte_tokens)
        for n in normalizers:
            if n.get("type") == "Replace" and _replace_pattern(n) == " ":
                content = n.get("content")
                if isinstance(content, str) and len(content) == 1:
                    return _Style(STYLE_SENTENCEPIECE, content, byte_tokens)
    return _Style(STYLE_PLAIN)


def _byte_token_value(piece: str) -> int | None:
    """The byte of a ``<0xAB>`` token (as ``tokenizers.decoders.ByteFallback`` reads it), else None."""
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return int(piece[3:5], 16)
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------


class TokenTextTable:
    """Token id → :class:`TokenText` for one tokenizer, computed once per id and cached.

    ``special_ids`` are the model's special ids (e.g. the manifest's
    ``tokens.special_ids``); added tokens that the tokenizer marks special are
    special too.  The tokenizer style (byte-level BPE, SentencePiece or plain)
    is read from the tokenizer's JSON config (decoder, else pre-tokenizer /
    normalizer / model) and exposed as :attr:`style`.

    Added tokens that are not special (e.g. runs of spaces registered as one
    token) contribute their content verbatim, as llama.cpp prints user-defined
    tokens.

    ``bytes_of(ids)`` equals ``tokenizer.decode(ids, skip_special_tokens=False)``
    encoded as UTF-8 for byte-level tokenizers whenever that decode is lossless
    (no sequence cut inside a character), with one exception: ``tokenizers``
    also runs an added token through the ByteLevel decoder when all its
    characters happen to be in the byte table (an added ``"é!"`` would come out
    as byte 0xE9, i.e. ``"\ufffd!"``); the table keeps the real text.
    For SentencePiece tokenizers whose decoder removes the space the normalizer
    put in front of the text (:attr:`strips_leading_space`), the table keeps it:
    the first token really is ``▁Hello``, and a span taken from the middle of a
    document must keep its spaces.  Invalid bytes become one U+FFFD per maximal
    invalid run here, where ``tokenizers``' ByteFallback gives one per byte.
    """

    def __init__(self, tokenizer: Tokenizer, special_ids: Iterable[int] = ()) -> None:
        self._tokenizer = tokenizer
        self._style = _detect_style(_style_config(tokenizer))
        added = tokenizer.get_added_tokens_decoder()
        self._added: dict[int, str] = {int(i): tok.content for i, tok in added.items()}
        self._special: frozenset[int] = frozenset(int(i) for i in special_ids) | frozenset(
            int(i) for i, tok in added.items() if tok.special
        )
        self._cache: dict[int, TokenText] = {}

    @property
    def style(self) -> str:
        """:data:`STYLE_BYTE_LEVEL`, :data:`STYLE_SENTENCEPIECE` or :data:`STYLE_PLAIN`."""
        return self._style.name

    @property
    def strips_leading_space(self) -> bool:
        """The tokenizer's own decode drops one leading space (SentencePiece prefix space)."""
        return self._style.strips_leading_space

    @property
    def special_ids(self) -> frozenset[int]:
        """Ids treated as special: the ones given plus added tokens marked special."""
        return self._special

    def __call__(self, token_id: int) -> TokenText:
        try:
            return self._cache[token_id]
        except KeyError:
            pass
        key = int(token_id)
        if key < 0:
            raise ValueError(f"A token id cannot be negative (got {key}).")
        value = self._build(key)
        self._cache[key] = value
        return value

    def bytes_of(self, ids: Sequence[int]) -> bytes:
        """The exact bytes of a sequence of tokens (the concatenation of their ``raw``)."""
        return b"".join([self(i).raw for i in ids])

    def decode(self, ids: Sequence[int]) -> str:
        """The text of a sequence: its bytes as UTF-8 (invalid bytes become U+FFFD),
        special tokens as their strings."""
        return self.bytes_of(ids).decode("utf-8", errors="replace")

    # -- building one entry ------------------------------------------------

    def _build(self, token_id: int) -> TokenText:
        content = self._added.get(token_id)
        if token_id in self._special:
            if content is None:
                content = self._tokenizer.id_to_token(token_id)
            if content is not None:
                return self._special_text(content)
        piece = self._tokenizer.id_to_token(token_id)
        if piece is None:
            display = f"<unknown id {token_id}>"
            return TokenText(b"", "", display, True, False, False, ((0, len(display)),))
        if content is not None:  # a non-special added token: its text, verbatim
            raw = content.encode("utf-8")
        else:
            raw = self._raw_of_piece(token_id, piece)
        return self._text_of_bytes(raw)

    def _raw_of_piece(self, token_id: int, piece: str) -> bytes:
        style = self._style
        if style.name == STYLE_BYTE_LEVEL:
            return _byte_level_bytes(piece)
        if style.name == STYLE_SENTENCEPIECE:
            if style.byte_tokens:
                byte = _byte_token_value(piece)
                if byte is not None:
                    return bytes([byte])
            assert style.space_char is not None
            return piece.replace(style.space_char, " ").encode("utf-8")
        return self._tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8")

    @staticmethod
    def _special_text(content: str) -> TokenText:
        display, marks = _render([content])
        return TokenText(
            raw=content.encode("utf-8"),
            text=content,
            display=display,
            is_special=True,
            partial_utf8=False,
            has_newline="\n" in content,
            marks=marks,
        )

    @staticmethod
    def text_of(text: str) -> TokenText:
        """A piece of text shown as a chip shows a token's: white space made
        visible, its marks known (a word of a comparison, say)."""
        return TokenTextTable._text_of_bytes(text.encode("utf-8"))

    @staticmethod
    def _text_of_bytes(raw: bytes) -> TokenText:
        parts = split_utf8(raw)
        partial = any(isinstance(p, bytes) for p in parts)
        display, marks = _render(parts)
        return TokenText(
            raw=raw,
            text="" if partial else (parts[0] if parts else ""),
            display=display,
            is_special=False,
            partial_utf8=partial,
            has_newline=b"\n" in raw,
            marks=marks,
        )

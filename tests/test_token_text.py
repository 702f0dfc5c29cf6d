"""Tests for lmdesk.engine.token_text: how a token is shown on its chip.

Pure tests of the UTF-8 scanner and of the visible marks; tiny tokenizers
(byte-level BPE and SentencePiece, written as GGUF metadata and rebuilt by
``tokenizer_from_gguf``, or built directly with ``tokenizers``); and
``realmodel`` tests over the whole SmolLM2-135M-Instruct vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from lmdesk.convert.gguf_tokenizer import tokenizer_from_gguf
from lmdesk.engine.token_text import (
    COMBINING_BASE,
    CR_MARK,
    LEGEND,
    NBSP_MARK,
    NEWLINE_MARK,
    SPACE_MARK,
    STYLE_BYTE_LEVEL,
    STYLE_PLAIN,
    STYLE_SENTENCEPIECE,
    TAB_MARK,
    TokenText,
    TokenTextTable,
    byte_level_decoder_table,
    split_utf8,
    visible,
)
from tiny_gguf import SPECIAL_TOKENS, bytes_to_unicode, write_tiny_gguf

SPM = "\u2581"


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def mark_text(token: TokenText) -> str:
    """The characters of ``display`` that are marks."""
    return "".join(token.display[a:b] for a, b in token.marks)


def plain_text(token: TokenText) -> str:
    """The characters of ``display`` that are real text."""
    out, pos = [], 0
    for a, b in token.marks:
        out.append(token.display[pos:a])
        pos = b
    out.append(token.display[pos:])
    return "".join(out)


# --------------------------------------------------------------------------
# The marks and the UTF-8 scanner
# --------------------------------------------------------------------------


def test_mark_constants() -> None:
    assert SPACE_MARK == "\u00b7"
    assert NEWLINE_MARK == "\u21b5"
    assert TAB_MARK == "\u2192"
    assert CR_MARK == "\u240d"
    assert NBSP_MARK == "\u237d"
    legend_marks = [mark for mark, _ in LEGEND]
    for mark in (SPACE_MARK, NEWLINE_MARK, TAB_MARK, CR_MARK, NBSP_MARK, COMBINING_BASE):
        assert mark in legend_marks


def test_byte_level_table_is_gpt2s() -> None:
    inverse = byte_level_decoder_table()
    assert inverse == {ch: b for b, ch in bytes_to_unicode().items()}
    assert inverse["Ġ"] == 0x20 and inverse["Ċ"] == 0x0A and inverse["ĉ"] == 0x09 and inverse["č"] == 0x0D


@pytest.mark.parametrize(
    ("raw", "parts"),
    [
        (b"", []),
        (b"hello", ["hello"]),
        (b"\xe2\x80\x94", ["\u2014"]),
        (b"\xe2\x80", [b"\xe2\x80"]),  # first two bytes of "—"
        (b"\xe2", [b"\xe2"]),
        (b"\x94 hello", [b"\x94", " hello"]),  # last byte of "—", then text
        (b"ab\xe2\x80", ["ab", b"\xe2\x80"]),  # complete text, then an incomplete tail
        (b"\x80\x94", [b"\x80\x94"]),  # two stray continuation bytes: one run
        (b"\xe2\x80x", [b"\xe2\x80", "x"]),  # broken sequence followed by ASCII
        (b"\xc0\xaf", [b"\xc0\xaf"]),  # overlong "/" is never valid
        (b"\xed\xa0\x80", [b"\xed\xa0\x80"]),  # UTF-8 encoded surrogate
        (b"\xff", [b"\xff"]),
        (b"\xf0\x9f\x91\x8b\xf0\x9f", ["\U0001f44b", b"\xf0\x9f"]),
        (b"\xbd \xf0\x9f", [b"\xbd", " ", b"\xf0\x9f"]),
    ],
)
def test_split_utf8(raw: bytes, parts: list) -> None:
    assert split_utf8(raw) == parts
    # the runs always give back the bytes
    assert b"".join(p if isinstance(p, bytes) else p.encode() for p in split_utf8(raw)) == raw


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ("   ", "···"),
        (" a  b ", "·a··b·"),
        ("\n", "↵"),
        ("\n\n", "↵↵"),
        ("\t", "→"),
        ("\r\n", "␍↵"),
        ("\x00", "<0x00>"),
        ("\x07", "<0x07>"),
        ("\x0b\x0c", "<0x0B><0x0C>"),
        ("\x1b[0m", "<0x1B>[0m"),
        ("\x7f", "<0x7F>"),
        ("\x85", "<U+0085>"),  # C1 control NEXT LINE
        ("\xa0", "⍽"),
        ("a\u2009b", "a<U+2009>b"),  # thin space
        ("\u202f", "<U+202F>"),  # narrow no-break space
        ("\u3000", "<U+3000>"),  # ideographic space
        ("\u200b", "<U+200B>"),  # zero-width space
        ("\u2028\u2029", "<U+2028><U+2029>"),
        ("\ufeff", "<U+FEFF>"),
        ("\ue000", "<U+E000>"),  # private use
        ("\u0301", "◌\u0301"),  # a lone combining accent sits on a dotted circle
        ("e\u0301", "e\u0301"),
        ("\ufe0f", "<U+FE0F>"),  # a lone variation selector
        ("\u2764\ufe0f", "\u2764\ufe0f"),
        ("café naïve", "café naïve".replace(" ", "·")),
        ("你好，世界", "你好，世界"),
        (b"\xe2\x80", "<0xE2><0x80>"),
        (b"\x94 hello", "<0x94>·hello"),
        (b"\xd0\xbe\xd0", "о<0xD0>"),
        (b"\xcc\x81", "◌\u0301"),
        (b"\xe2\xcc\x81", "<0xE2>◌\u0301"),
    ],
)
def test_visible(data: bytes | str, shown: str) -> None:
    assert visible(data) == shown


# --------------------------------------------------------------------------
# A tiny byte-level BPE tokenizer (GGUF metadata -> tokenizer_from_gguf)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_bpe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tokenizer, TokenTextTable, list[int]]:
    path = write_tiny_gguf(tmp_path_factory.mktemp("bpe") / "tiny.gguf")
    info = tokenizer_from_gguf(gguf.GGUFReader(path))
    tokenizer = Tokenizer.from_str(info.tokenizer_json)
    return tokenizer, TokenTextTable(tokenizer, info.special_ids), info.special_ids


def test_tiny_bpe_tokens(tiny_bpe) -> None:
    tokenizer, table, special_ids = tiny_bpe
    assert table.style == STYLE_BYTE_LEVEL
    assert table.special_ids == frozenset(special_ids) == frozenset({0, 1, 2})

    def t(piece: str) -> TokenText:
        token_id = tokenizer.token_to_id(piece)
        assert token_id is not None, piece
        return table(token_id)

    assert t("Ġthe") == TokenText(b" the", " the", "·the", False, False, False, ((0, 1),))
    assert t("ĠĠ").display == "··"
    newlines = t("ĊĊ")
    assert (newlines.raw, newlines.display, newlines.has_newline) == (b"\n\n", "↵↵", True)
    assert t("ĉ").display == "→" and not t("ĉ").has_newline
    cr = t("č")
    assert (cr.raw, cr.display, cr.has_newline) == (b"\r", "␍", False)
    lead = t("â")  # the byte 0xE2 alone
    assert (lead.raw, lead.text, lead.display, lead.partial_utf8) == (b"\xe2", "", "<0xE2>", True)
    assert lead.marks == ((0, 6),)
    nul = t("Ā")
    assert (nul.raw, nul.display, nul.partial_utf8) == (b"\x00", "<0x00>", False)
    for index, content in enumerate(SPECIAL_TOKENS):
        special = table(index)
        assert special == TokenText(content.encode(), content, content, True, False, False, ())


def test_tiny_bpe_every_id_matches_tokenizer_decode(tiny_bpe) -> None:
    tokenizer, table, _ = tiny_bpe
    for token_id in range(tokenizer.get_vocab_size()):
        token = table(token_id)
        assert token.raw.decode("utf-8", errors="replace") == tokenizer.decode(
            [token_id], skip_special_tokens=False
        )
        assert token.partial_utf8 == (not is_utf8(token.raw))


@pytest.mark.parametrize(
    "text",
    [
        "the capital of France is Paris",
        "  what\n\nis\tit?\r\n",
        "café — 👋",
        "<|im_start|>user\nHi<|im_end|>\n",
    ],
)
def test_tiny_bpe_round_trip(tiny_bpe, text: str) -> None:
    tokenizer, table, _ = tiny_bpe
    ids = tokenizer.encode(text).ids
    assert table.bytes_of(ids).decode("utf-8") == text
    assert table.decode(ids) == text == tokenizer.decode(ids, skip_special_tokens=False)
    assert visible(table.bytes_of(ids)) == visible(text)


def test_tiny_bpe_chips_of_a_dash(tiny_bpe) -> None:
    tokenizer, table, _ = tiny_bpe
    ids = tokenizer.encode("a—b").ids  # no merges for "—": one chip per byte
    chips = [table(i) for i in ids]
    assert [c.display for c in chips] == ["a", "<0xE2>", "<0x80>", "<0x94>", "b"]
    assert [c.partial_utf8 for c in chips] == [False, True, True, True, False]
    assert table.decode(ids[:2]) == "a\ufffd"  # a span cut inside a character


def test_cache_and_numpy_ids(tiny_bpe) -> None:
    tokenizer, table, _ = tiny_bpe
    token_id = tokenizer.token_to_id("Ġthe")
    first = table(token_id)
    assert table(token_id) is first
    assert table(np.int64(token_id)) is first
    assert table(np.int32(token_id)) == first
    assert table.bytes_of(np.array([token_id, token_id], dtype=np.int64)) == b" the the"


def test_unknown_and_negative_ids(tiny_bpe) -> None:
    tokenizer, table, _ = tiny_bpe
    beyond = tokenizer.get_vocab_size() + 10  # e.g. a padded embedding row
    token = table(beyond)
    assert token.is_special and token.raw == b"" and token.text == ""
    assert token.display == f"<unknown id {beyond}>"
    assert table.bytes_of([beyond]) == b""
    with pytest.raises(ValueError):
        table(-1)


def test_added_tokens(tmp_path: Path) -> None:
    info = tokenizer_from_gguf(gguf.GGUFReader(write_tiny_gguf(tmp_path / "tiny.gguf")))
    tokenizer = Tokenizer.from_str(info.tokenizer_json)
    tokenizer.add_tokens([AddedToken("   ", normalized=False), AddedToken("é!", normalized=False)])
    tokenizer.add_special_tokens([AddedToken("<tool>", special=True, normalized=False)])
    extra_special = tokenizer.token_to_id("Ġthe")  # a plain vocab id declared special by the caller
    table = TokenTextTable(tokenizer, [*info.special_ids, extra_special])

    spaces = table(tokenizer.token_to_id("   "))
    assert (spaces.raw, spaces.display, spaces.is_special) == (b"   ", "···", False)
    # Added tokens are decoded verbatim ("é" is not the byte-level spelling of 0xE9).
    accent = table(tokenizer.token_to_id("é!"))
    assert (accent.raw, accent.display, accent.partial_utf8) == ("é!".encode(), "é!", False)
    tool = table(tokenizer.token_to_id("<tool>"))
    assert (tool.raw, tool.display, tool.is_special) == (b"<tool>", "<tool>", True)
    assert table(extra_special).is_special

    ids = tokenizer.encode("<tool>x   é!").ids
    assert table.decode(ids) == "<tool>x   é!"
    # tokenizers runs added tokens through the ByteLevel decoder when every character is
    # in the byte table ("é" -> byte 0xE9, invalid alone); the table keeps the real text,
    # as llama.cpp does for user-defined tokens.
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<tool>x   \ufffd!"


# --------------------------------------------------------------------------
# SentencePiece style
# --------------------------------------------------------------------------

SPM_PIECES = [SPM, "h", "e", "l", "o", "w", "r", "d", "he", "ll", "hell", "hello", f"{SPM}hello",
              f"{SPM}w", "or", f"{SPM}wor", "ld", f"{SPM}world", f"{SPM}{SPM}"]
SPM_TOKENS = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES
SPM_TYPES = (
    [int(gguf.TokenType.UNKNOWN), int(gguf.TokenType.CONTROL), int(gguf.TokenType.CONTROL)]
    + [int(gguf.TokenType.BYTE)] * 256
    + [int(gguf.TokenType.NORMAL)] * len(SPM_PIECES)
)
SPM_SCORES = [0.0] * 259 + [-float(i) for i in range(len(SPM_PIECES))]


def spm_from_gguf(path: Path, add_space_prefix: bool | None = None) -> tuple[Tokenizer, TokenTextTable]:
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(SPM_TOKENS)
    writer.add_token_types(SPM_TYPES)
    writer.add_token_scores(SPM_SCORES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    if add_space_prefix is not None:
        writer.add_bool("tokenizer.ggml.add_space_prefix", add_space_prefix)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = tokenizer_from_gguf(gguf.GGUFReader(path))
    tokenizer = Tokenizer.from_str(info.tokenizer_json)
    return tokenizer, TokenTextTable(tokenizer, info.special_ids)


def test_sentencepiece_tokens(tmp_path: Path) -> None:
    tokenizer, table = spm_from_gguf(tmp_path / "spm.gguf")
    assert table.style == STYLE_SENTENCEPIECE
    assert table.strips_leading_space

    def t(piece: str) -> TokenText:
        return table(SPM_TOKENS.index(piece))

    assert t(f"{SPM}hello") == TokenText(b" hello", " hello", "·hello", False, False, False, ((0, 1),))
    assert t(f"{SPM}{SPM}").display == "··"
    newline = t("<0x0A>")
    assert (newline.raw, newline.text, newline.display, newline.has_newline) == (b"\n", "\n", "↵", True)
    assert t("<0x09>").display == "→"
    assert t("<0x0D>").display == "␍" and not t("<0x0D>").has_newline
    assert t("<0x20>").display == "·"
    lead = t("<0xE2>")
    assert (lead.raw, lead.text, lead.display, lead.partial_utf8) == (b"\xe2", "", "<0xE2>", True)
    assert t("<0x41>") == TokenText(b"A", "A", "A", False, False, False, ())
    for index, content in enumerate(["<unk>", "<s>", "</s>"]):
        assert table(index) == TokenText(content.encode(), content, content, True, False, False, ())


def test_sentencepiece_round_trip(tmp_path: Path) -> None:
    tokenizer, table = spm_from_gguf(tmp_path / "spm.gguf")
    ids = tokenizer.encode("hello world\n—").ids
    assert ids[0] == 1  # BOS
    chips = [table(i) for i in ids]
    assert [c.display for c in chips] == ["<s>", "·hello", "·world", "↵", "<0xE2>", "<0x80>", "<0x94>"]
    assert [c.partial_utf8 for c in chips] == [False, False, False, False, True, True, True]
    # The table keeps the prefix space the normalizer added; tokenizers' decode strips it.
    assert table.decode(ids[1:]) == " hello world\n—"
    assert tokenizer.decode(ids[1:]) == "hello world\n—"
    assert table.decode(ids) == "<s> hello world\n—"


def test_sentencepiece_without_prefix_space(tmp_path: Path) -> None:
    tokenizer, table = spm_from_gguf(tmp_path / "spm.gguf", add_space_prefix=False)
    assert table.style == STYLE_SENTENCEPIECE and not table.strips_leading_space
    ids = tokenizer.encode("hello world", add_special_tokens=False).ids
    assert [table(i).display for i in ids] == ["hello", "·world"]
    assert table.decode(ids) == "hello world" == tokenizer.decode(ids)


def test_sentencepiece_metaspace_config() -> None:
    """The older Hugging Face Llama layout: Metaspace pre-tokenizer and decoder, byte_fallback model."""
    vocab = {"<unk>": 0, **{f"<0x{b:02X}>": 1 + b for b in range(256)}, SPM: 257, "h": 258, "i": 259,
             "hi": 260, f"{SPM}hi": 261}
    merges = [("h", "i"), (SPM, "hi")]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    table = TokenTextTable(tokenizer, [0])
    assert table.style == STYLE_SENTENCEPIECE and table.strips_leading_space
    assert table(261).display == "·hi"
    assert table(1 + 0x0A).display == "↵" and table(1 + 0x0A).has_newline
    assert table(1 + 0xE2).display == "<0xE2>" and table(1 + 0xE2).partial_utf8
    ids = tokenizer.encode("hi hi").ids
    assert [table(i).display for i in ids] == ["·hi", "·hi"]


def test_plain_style_falls_back_to_decode() -> None:
    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "##s": 3}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    table = TokenTextTable(tokenizer, [0])
    assert table.style == STYLE_PLAIN
    assert table(1) == TokenText(b"hello", "hello", "hello", False, False, False, ())
    assert table(0).is_special and table(0).display == "[UNK]"


# --------------------------------------------------------------------------
# The real SmolLM2 vocabulary
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol(real_model_dir: Path) -> tuple[Tokenizer, TokenTextTable]:
    tokenizer = Tokenizer.from_file(str(real_model_dir / "tokenizer.json"))
    manifest = json.loads((real_model_dir / "manifest.json").read_text(encoding="utf-8"))
    return tokenizer, TokenTextTable(tokenizer, manifest["tokens"]["special_ids"])


def smol_token(smol, piece: str) -> TokenText:
    tokenizer, table = smol
    token_id = tokenizer.token_to_id(piece)
    assert token_id is not None, f"{piece!r} is not in the SmolLM2 vocabulary"
    return table(token_id)


ROUND_TRIP_TEXTS = [
    "The quick brown fox jumps over the lazy dog. It was 1987, and prices rose 3.5%!",
    "café naïve",
    "你好，世界",
    "👋🏽 🧪",
    "def f(x):\n\tif x:\n\t\treturn  x   *  2\n\n\n    # four spaces\r\n  trailing   ",
    "<|im_start|>user\nHi<|im_end|>\n",
    "<|im_start|>assistant\nNo\u00a0break — “quotes” · →<|im_end|>",
    "   leading and trailing   ",
]


@pytest.mark.realmodel
@pytest.mark.parametrize("text", ROUND_TRIP_TEXTS)
def test_smollm2_round_trip(smol, text: str) -> None:
    tokenizer, table = smol
    ids = tokenizer.encode(text).ids
    assert table.bytes_of(ids).decode("utf-8") == text
    assert table.decode(ids) == text
    assert tokenizer.decode(ids, skip_special_tokens=False) == text


@pytest.mark.realmodel
def test_smollm2_every_id(smol) -> None:
    tokenizer, table = smol
    size = tokenizer.get_vocab_size()
    assert size == 49152
    shifted = set(byte_level_decoder_table()) - {chr(c) for c in range(0x21, 0x7F)}  # Ġ, Ċ, Ã, â, ...
    partial = 0
    for token_id in range(size):  # also the performance sanity run: every chip of the vocabulary
        token = table(token_id)
        assert token.display, token_id
        assert not any(ch in token.display for ch in "ĠĊĉ"), (token_id, token.display)
        # no byte-level spelling leaks through: such a character is shown only when it is real text
        for ch in set(plain_text(token)) & shifted:
            assert ch in token.text, (token_id, token.display)
        # the bytes are what the tokenizer itself decodes
        assert token.raw.decode("utf-8", errors="replace") == tokenizer.decode(
            [token_id], skip_special_tokens=False
        ), token_id
        valid = is_utf8(token.raw)
        assert token.partial_utf8 == (not valid)
        assert token.text == (token.raw.decode("utf-8") if valid else "")
        assert token.has_newline == (b"\n" in token.raw)
        assert token.is_special == (token_id <= 16)
        if token.partial_utf8:
            partial += 1
            assert "<0x" in token.display
        if not token.is_special:
            assert token.display == visible(token.raw)
        assert all(0 <= a < b <= len(token.display) for a, b in token.marks)
    assert partial > 200  # SmolLM2 has 313 chips that are pieces of characters


@pytest.mark.realmodel
def test_smollm2_known_tokens(smol) -> None:
    world = smol_token(smol, "Ġworld")
    assert (world.raw, world.text, world.display) == (b" world", " world", "·world")
    assert not world.partial_utf8 and not world.has_newline and not world.is_special
    newline = smol_token(smol, "Ċ")
    assert (newline.display, newline.has_newline) == ("↵", True)
    assert smol_token(smol, "ĊĊ").display == "↵↵"
    assert smol_token(smol, "ĉ").display == "→"
    assert smol_token(smol, "ĉĉ").display == "→→"
    assert smol_token(smol, "Ġ").display == "·"
    assert smol_token(smol, "ĠĠĠ").display == "···"
    indent = smol_token(smol, "ĊĠĠĠ")
    assert (indent.display, indent.has_newline) == ("↵···", True)
    crlf = smol_token(smol, "čĊ")
    assert (crlf.raw, crlf.display, crlf.has_newline) == (b"\r\n", "␍↵", True)
    cr = smol_token(smol, "č")
    assert (cr.display, cr.has_newline) == ("␍", False)
    nbsp = smol_token(smol, "Âł")
    assert (nbsp.raw, nbsp.display) == (b"\xc2\xa0", "⍽")
    im_start = smol_token(smol, "<|im_start|>")
    assert im_start == TokenText(b"<|im_start|>", "<|im_start|>", "<|im_start|>", True, False, False, ())
    assert smol_token(smol, "<|im_end|>").display == "<|im_end|>"
    assert smol_token(smol, "<|endoftext|>").is_special


@pytest.mark.realmodel
def test_smollm2_real_dot_and_arrow_are_not_marks(smol) -> None:
    # The vocabulary has a real "·" and a real "→": same glyph as the marks, told apart by `marks`.
    dot, space = smol_token(smol, "Â·"), smol_token(smol, "Ġ")
    assert dot.display == space.display == "·"
    assert (dot.marks, space.marks) == ((), ((0, 1),))
    arrow, tab = smol_token(smol, "âĨĴ"), smol_token(smol, "ĉ")
    assert arrow.display == tab.display == "→"
    assert (arrow.marks, tab.marks) == ((), ((0, 1),))
    spaced_dot = smol_token(smol, "ĠÂ·")
    assert (spaced_dot.display, mark_text(spaced_dot), plain_text(spaced_dot)) == ("··", "·", "·")


@pytest.mark.realmodel
def test_smollm2_partial_tokens(smol) -> None:
    tokenizer, table = smol
    dash_head = smol_token(smol, "âĢ")  # the first two bytes of "—", "“", "”", "…"
    assert dash_head == TokenText(b"\xe2\x80", "", "<0xE2><0x80>", False, True, False, ((0, 12),))
    incomplete_e2 = [
        table(i) for i in range(tokenizer.get_vocab_size())
        if table(i).raw.startswith(b"\xe2") and not is_utf8(table(i).raw)
    ]
    assert len(incomplete_e2) >= 10
    for token in incomplete_e2:
        assert token.partial_utf8 and token.text == ""
        assert token.display.startswith("<0xE2>")
        assert not any(ch in token.display for ch in "âĢ€")  # no mojibake
    # complete characters followed by an incomplete one: text, then bytes
    mixed = smol_token(smol, "Ð¾Ð")
    assert (mixed.raw, mixed.display, mixed.partial_utf8) == (b"\xd0\xbe\xd0", "о<0xD0>", True)
    assert mixed.marks == ((1, 7),)
    # a continuation byte alone
    tail = smol_token(smol, "Ķ")  # byte 0x94
    assert (tail.raw, tail.display, tail.partial_utf8) == (b"\x94", "<0x94>", True)


@pytest.mark.realmodel
def test_smollm2_lone_marks(smol) -> None:
    selector = smol_token(smol, "ï¸ı")  # U+FE0F VARIATION SELECTOR-16 alone
    assert (selector.text, selector.display) == ("\ufe0f", "<U+FE0F>")
    vowel_sign = smol_token(smol, "à¤¾")  # DEVANAGARI VOWEL SIGN AA, a combining mark
    assert (vowel_sign.text, vowel_sign.display) == ("\u093e", "◌\u093e")
    assert vowel_sign.marks == ((0, 1),)


@pytest.mark.realmodel
def test_smollm2_emoji_chips(smol) -> None:
    tokenizer, table = smol
    text = "👋🏽 🧪"
    ids = tokenizer.encode(text).ids
    chips = [table(i) for i in ids]
    joined = "".join(c.display for c in chips)
    assert "👋" in joined or "<0xF0><0x9F>" in joined
    assert "🧪" in joined or "<0xF0><0x9F>" in joined
    for chip in chips:
        assert chip.partial_utf8 == (not is_utf8(chip.raw))
        assert ("<0x" in chip.display) == chip.partial_utf8
    # SmolLM2 has no token for these emoji: every chip is a piece of one
    assert all(chip.partial_utf8 for chip in chips)
    assert joined.replace("·", "").replace("<0x", "").replace(">", "") == "".join(
        f"{b:02X}" for b in text.encode() if b != 0x20
    )
    assert table.decode(ids) == text
    assert table.decode(ids[:2]).startswith("\ufffd")  # a span cut inside "👋"


@pytest.mark.realmodel
def test_smollm2_missing_bytes_are_dropped_by_the_tokenizer(smol) -> None:
    # Surprise: SmolLM2's vocabulary lacks 21 of the 256 byte symbols (e.g. 0x04, 0xC0, 0xF5..0xFF),
    # so text holding them does not round-trip; the table shows what the ids hold.
    tokenizer, table = smol
    spelled = byte_level_decoder_table()
    vocab = tokenizer.get_vocab()
    missing = sorted(b for ch, b in spelled.items() if ch not in vocab)
    assert 0x04 in missing and 0xC0 in missing and 0xFF in missing and 0x0A not in missing
    ids = tokenizer.encode("a\x04b").ids
    assert table.decode(ids) == "ab" == tokenizer.decode(ids)


def test_the_characters_a_byte_token_helps_make() -> None:
    from lmdesk.engine.token_text import characters_made_with

    zhong, smile = "中".encode(), "😀".encode()  # 3 bytes, 4 bytes
    raws = [b" a", zhong[:1], zhong[1:], b"b" + smile[:2], smile[2:], b"c"]
    assert characters_made_with(raws, 1) == [("中", 1, 2)]
    assert characters_made_with(raws, 2) == [("中", 1, 2)]
    assert characters_made_with(raws, 3) == [("😀", 3, 4)]  # "b" is whole in its token: not listed
    assert characters_made_with(raws, 4) == [("😀", 3, 4)]
    assert characters_made_with(raws, 0) == [] and characters_made_with(raws, 5) == []
    assert characters_made_with([b"\xff", b"a"], 0) == []  # a byte that is no character's
    # a token holding the end of one character and the start of the next
    raws = [zhong[:2], zhong[2:] + smile[:1], smile[1:]]
    assert characters_made_with(raws, 1) == [("中", 0, 1), ("😀", 1, 2)]

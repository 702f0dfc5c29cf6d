"""Tests for lmdesk.convert.gguf_tokenizer: rebuilding a tokenizer from GGUF metadata.

Most tests write a tiny GGUF file with gguf.GGUFWriter and read it back; the
``realmodel`` tests use the SmolLM2-135M-Instruct GGUF, fetched once by the
``real_gguf`` fixture of conftest.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gguf
import pytest
from tokenizers import Tokenizer
from tokenizers.pre_tokenizers import ByteLevel

from lmdesk.convert.gguf_tokenizer import (
    PRE_TOKENIZERS,
    TokenizerImportError,
    TokenizerInfo,
    tokenizer_from_gguf,
)

NORMAL = int(gguf.TokenType.NORMAL)
UNKNOWN = int(gguf.TokenType.UNKNOWN)
CONTROL = int(gguf.TokenType.CONTROL)
USER_DEFINED = int(gguf.TokenType.USER_DEFINED)
BYTE = int(gguf.TokenType.BYTE)

SPM_SPACE = "\u2581"

# --------------------------------------------------------------------------
# helpers: write small GGUF files
# --------------------------------------------------------------------------


def write_gguf(
    path: Path,
    *,
    model: str | None = None,
    pre: str | None = None,
    tokens: Sequence[str] | None = None,
    token_types: Sequence[int] | None = None,
    merges: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    ids: dict[str, int] | None = None,
    flags: dict[str, bool] | None = None,
    chat_template: str | None = None,
) -> gguf.GGUFReader:
    """Write a GGUF file holding only tokenizer metadata, and open it with GGUFReader.

    ``ids`` maps metadata keys (e.g. "tokenizer.ggml.bos_token_id") to uint32
    values, ``flags`` maps keys to booleans.
    """
    writer = gguf.GGUFWriter(str(path), "llama")
    if model is not None:
        writer.add_tokenizer_model(model)
    if pre is not None:
        writer.add_tokenizer_pre(pre)
    if tokens is not None:
        writer.add_token_list(list(tokens))
    if token_types is not None:
        writer.add_token_types(list(token_types))
    if merges is not None:
        writer.add_token_merges(list(merges))
    if scores is not None:
        writer.add_token_scores(list(scores))
    for key, value in (ids or {}).items():
        writer.add_uint32(key, value)
    for key, value in (flags or {}).items():
        writer.add_bool(key, value)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf.GGUFReader(str(path))


def load(info: TokenizerInfo) -> Tokenizer:
    return Tokenizer.from_str(info.tokenizer_json)


# A tiny byte-level BPE vocabulary: the 256 byte symbols, a few merged tokens,
# then special tokens.
BYTE_SYMBOLS = sorted(ByteLevel.alphabet())
BPE_MERGES = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"]
BPE_MERGED = ["he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld"]
BPE_SPECIALS = [("<|begin|>", CONTROL), ("<|end|>", CONTROL), ("<think>", USER_DEFINED)]
BPE_TOKENS = BYTE_SYMBOLS + BPE_MERGED + [text for text, _ in BPE_SPECIALS]
BPE_TYPES = [NORMAL] * (len(BYTE_SYMBOLS) + len(BPE_MERGED)) + [kind for _, kind in BPE_SPECIALS]
BEGIN_ID = BPE_TOKENS.index("<|begin|>")
END_ID = BPE_TOKENS.index("<|end|>")
THINK_ID = BPE_TOKENS.index("<think>")


def write_tiny_bpe(path: Path, **overrides: Any) -> gguf.GGUFReader:
    metadata: dict[str, Any] = {
        "model": "gpt2",
        "pre": "gpt-2",
        "tokens": BPE_TOKENS,
        "token_types": BPE_TYPES,
        "merges": BPE_MERGES,
        "ids": {"tokenizer.ggml.bos_token_id": BEGIN_ID, "tokenizer.ggml.eos_token_id": END_ID},
    }
    metadata.update(overrides)
    return write_gguf(path, **metadata)


# A tiny SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, characters,
# then merged pieces (score = -id, as SentencePiece files have it).
SPM_PIECES = [
    SPM_SPACE, "h", "e", "l", "o", "w", "r", "d", "i", "a", "t",
    "he", "ll", "hell", "hello", f"{SPM_SPACE}hello", f"{SPM_SPACE}w", "or", f"{SPM_SPACE}wor",
    "ld", f"{SPM_SPACE}world", f"{SPM_SPACE}h", "at", f"{SPM_SPACE}hat", f"{SPM_SPACE}{SPM_SPACE}",
]
SPM_TOKENS = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + SPM_PIECES
SPM_TYPES = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * len(SPM_PIECES)
SPM_SCORES = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(len(SPM_PIECES))]


def write_tiny_spm(path: Path, **overrides: Any) -> gguf.GGUFReader:
    metadata: dict[str, Any] = {
        "model": "llama",
        "tokens": SPM_TOKENS,
        "token_types": SPM_TYPES,
        "scores": SPM_SCORES,
        "ids": {
            "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.unknown_token_id": 0,
        },
    }
    metadata.update(overrides)
    return write_gguf(path, **metadata)


def spm_reference_encode(text: str, tokens: list[str], types: list[int], scores: list[float]) -> list[int]:
    """llama.cpp's SentencePiece BPE, written plainly: merge the best-scoring pair, leftmost first."""
    ids = {t: i for i, t in enumerate(tokens) if types[i] == NORMAL}
    symbols = list(SPM_SPACE + text.replace(" ", SPM_SPACE))
    while True:
        best: tuple[float, int] | None = None
        for i in range(len(symbols) - 1):
            merged = symbols[i] + symbols[i + 1]
            if merged in ids and (best is None or scores[ids[merged]] > best[0]):
                best = (scores[ids[merged]], i)
        if best is None:
            break
        i = best[1]
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    out: list[int] = []
    for symbol in symbols:
        if symbol in ids:
            out.append(ids[symbol])
        else:
            out.extend(tokens.index(f"<0x{b:02X}>") for b in symbol.encode("utf-8"))
    return out


# --------------------------------------------------------------------------
# the real SmolLM2 GGUF
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm_reader(real_gguf: Path) -> gguf.GGUFReader:
    return gguf.GGUFReader(str(real_gguf))


@pytest.fixture(scope="module")
def smollm_info(smollm_reader: gguf.GGUFReader) -> TokenizerInfo:
    return tokenizer_from_gguf(smollm_reader)


@pytest.fixture(scope="module")
def smollm(smollm_info: TokenizerInfo) -> Tokenizer:
    return load(smollm_info)


@pytest.fixture(scope="module")
def smollm_tokens(smollm_reader: gguf.GGUFReader) -> list[str]:
    return smollm_reader.fields["tokenizer.ggml.tokens"].contents()


@pytest.mark.realmodel
def test_smollm_ids_are_the_gguf_vocabulary(smollm: Tokenizer, smollm_tokens: list[str]) -> None:
    assert len(smollm_tokens) == 49152
    assert smollm.get_vocab_size() == 49152
    for i in itertools.chain(range(0, 300), range(300, 49152, 97), [49151]):
        assert smollm.id_to_token(i) == smollm_tokens[i]
        assert smollm.token_to_id(smollm_tokens[i]) == i


@pytest.mark.realmodel
def test_smollm_special_tokens(smollm_info: TokenizerInfo, smollm: Tokenizer) -> None:
    for text, expected in [("<|endoftext|>", 0), ("<|im_start|>", 1), ("<|im_end|>", 2)]:
        assert smollm.encode(text).ids == [expected]
        assert smollm.decode([expected], skip_special_tokens=False) == text
    assert smollm_info.bos_id == 1 and smollm_info.bos_token == "<|im_start|>"
    assert smollm_info.eos_id == 2 and smollm_info.eos_token == "<|im_end|>"
    assert smollm_info.pad_id == 2
    assert smollm_info.unk_id == 0
    assert smollm_info.add_bos is False
    assert smollm_info.add_eos is False
    assert smollm_info.special_ids == list(range(17))
    assert smollm.encode("Hello").ids[0] != 1
    assert smollm.encode("Hello").ids == [19556]


@pytest.mark.realmodel
def test_smollm_chat_template(smollm_info: TokenizerInfo) -> None:
    template = smollm_info.chat_template
    assert template is not None
    assert template.startswith("{% for message in messages %}")
    assert "<|im_start|>" in template and "<|im_end|>" in template


@pytest.mark.realmodel
def test_smollm_digits_are_split_one_by_one(smollm: Tokenizer) -> None:
    encoding = smollm.encode("12345")
    assert encoding.tokens == ["1", "2", "3", "4", "5"]
    assert smollm.encode(" 2024").tokens == ["Ġ", "2", "0", "2", "4"]
    assert smollm.encode("year 1999.").tokens == ["year", "Ġ", "1", "9", "9", "9", "."]


@pytest.mark.realmodel
def test_smollm_known_tokens_for_hello_world(smollm: Tokenizer, smollm_tokens: list[str]) -> None:
    assert "Hello" in smollm_tokens and "Ġworld" in smollm_tokens
    encoding = smollm.encode("Hello world")
    assert encoding.tokens == ["Hello", "Ġworld"]
    assert encoding.ids == [smollm_tokens.index("Hello"), smollm_tokens.index("Ġworld")]


@pytest.mark.realmodel
def test_smollm_contractions_and_chat_markup(smollm: Tokenizer) -> None:
    assert smollm.encode("don't I'll").tokens == ["don", "'t", "ĠI", "'ll"]
    encoding = smollm.encode("<|im_start|>user\nHi<|im_end|>\n")
    assert encoding.tokens == ["<|im_start|>", "user", "Ċ", "Hi", "<|im_end|>", "Ċ"]
    assert encoding.ids[0] == 1 and encoding.ids[4] == 2


@pytest.mark.realmodel
@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog. It's 3:45pm, isn't it?",
        "café naïve",
        "你好，世界",
        "👋🏽 🧪",
        "def f(x):\n\treturn  x  *  2\n\n",
        "   leading and trailing whitespace \t\n ",
        "<|im_start|>user\nHi<|im_end|>\n",
        "",
    ],
)
def test_smollm_round_trip(smollm: Tokenizer, text: str) -> None:
    ids = smollm.encode(text).ids
    assert smollm.decode(ids, skip_special_tokens=False) == text


@pytest.mark.realmodel
def test_smollm_skip_special_tokens_drops_control_tokens(smollm: Tokenizer) -> None:
    ids = smollm.encode("<|im_start|>user\nHi<|im_end|>\n").ids
    assert smollm.decode(ids, skip_special_tokens=True) == "user\nHi\n"


# --------------------------------------------------------------------------
# byte-level BPE ("gpt2") written with GGUFWriter
# --------------------------------------------------------------------------


def test_tiny_bpe_encodes_with_merges_and_specials(tmp_path: Path) -> None:
    info = tokenizer_from_gguf(write_tiny_bpe(tmp_path / "bpe.gguf"))
    tok = load(info)
    assert tok.get_vocab_size() == len(BPE_TOKENS)
    assert tok.encode("hello world").tokens == ["hello", "Ġworld"]
    assert tok.encode("hello world").ids == [BPE_TOKENS.index("hello"), BPE_TOKENS.index("Ġworld")]
    encoding = tok.encode("<|begin|>hello<think>world<|end|>")
    assert encoding.ids[0] == BEGIN_ID and encoding.ids[-1] == END_ID
    assert THINK_ID in encoding.ids
    assert info.special_ids == [BEGIN_ID, END_ID, THINK_ID]
    assert info.bos_token == "<|begin|>" and info.eos_token == "<|end|>"
    assert info.add_bos is False and info.chat_template is None


def test_tiny_bpe_user_defined_tokens_are_text(tmp_path: Path) -> None:
    tok = load(tokenizer_from_gguf(write_tiny_bpe(tmp_path / "bpe.gguf")))
    ids = tok.encode("<|begin|>hi<think>").ids
    assert tok.decode(ids, skip_special_tokens=True) == "hi<think>"
    assert tok.decode(ids, skip_special_tokens=False) == "<|begin|>hi<think>"


@pytest.mark.parametrize(
    "text", ["hello world", "Héllo wörld 123 ✓", "  tabs\tand\nnewlines  ", "日本語", "<|end|>x"]
)
def test_tiny_bpe_round_trip(tmp_path: Path, text: str) -> None:
    tok = load(tokenizer_from_gguf(write_tiny_bpe(tmp_path / "bpe.gguf")))
    assert tok.decode(tok.encode(text).ids, skip_special_tokens=False) == text


def test_add_bos_flag_prepends_bos(tmp_path: Path) -> None:
    reader = write_tiny_bpe(tmp_path / "bpe.gguf", flags={"tokenizer.ggml.add_bos_token": True})
    info = tokenizer_from_gguf(reader)
    tok = load(info)
    assert info.add_bos is True
    assert tok.encode("hello").ids == [BEGIN_ID, BPE_TOKENS.index("hello")]
    assert tok.encode("hello", add_special_tokens=False).ids == [BPE_TOKENS.index("hello")]


def test_add_eos_flag_appends_eos(tmp_path: Path) -> None:
    reader = write_tiny_bpe(
        tmp_path / "bpe.gguf",
        flags={"tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": True},
    )
    tok = load(tokenizer_from_gguf(reader))
    assert tok.encode("hello").ids == [BEGIN_ID, BPE_TOKENS.index("hello"), END_ID]


def test_llama3_pre_type_defaults_to_add_bos_and_groups_digits(tmp_path: Path) -> None:
    # llama.cpp adds BOS by default for "llama-bpe" when the flag is absent.
    info = tokenizer_from_gguf(write_tiny_bpe(tmp_path / "bpe.gguf", pre="llama-bpe"))
    tok = load(info)
    assert info.add_bos is True
    pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("12345 abc")]
    assert pieces == ["123", "45", "Ġabc"]


@pytest.mark.parametrize(
    ("pre", "expected"),
    [
        ("gpt-2", ["12345", "Ġapples", ",", "Ġdon", "'t", "!"]),
        ("smollm", ["1", "2", "3", "4", "5", "Ġapples", ",", "Ġdon", "'t", "!"]),
        ("starcoder", ["1", "2", "3", "4", "5", "Ġapples", ",", "Ġdon", "'t", "!"]),
        ("llama3", ["123", "45", "Ġapples", ",", "Ġdon", "'t", "!"]),
        ("qwen2", ["1", "2", "3", "4", "5", "Ġapples", ",", "Ġdon", "'t", "!"]),
        ("tekken", ["1", "2", "3", "4", "5", "Ġapples", ",", "Ġdon", "'t", "!"]),
        # llama.cpp's fallback: punctuation runs are cut first, then digits by three
        ("default", ["123", "45", "Ġapples", ",", "Ġdon", "'", "t", "!"]),
    ],
)
def test_pre_tokenizer_splits(tmp_path: Path, pre: str, expected: list[str]) -> None:
    tok = load(tokenizer_from_gguf(write_tiny_bpe(tmp_path / "bpe.gguf", pre=pre)))
    assert [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("12345 apples, don't!")] == expected


@pytest.mark.parametrize("pre", sorted(PRE_TOKENIZERS))
def test_every_known_pre_type_builds_and_round_trips(tmp_path: Path, pre: str) -> None:
    tok = load(tokenizer_from_gguf(write_tiny_bpe(tmp_path / "bpe.gguf", pre=pre)))
    text = "Hello World's 2024 test\n\n  x = [1, 2]; // ünïcödé 你好 🧪"
    assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text


def test_missing_pre_type_uses_llama_cpp_default(tmp_path: Path) -> None:
    reader = write_gguf(
        tmp_path / "bpe.gguf", model="gpt2", tokens=BPE_TOKENS, token_types=BPE_TYPES, merges=BPE_MERGES
    )
    info = tokenizer_from_gguf(reader)
    tok = load(info)
    assert tok.encode("hello world").tokens == ["hello", "Ġworld"]
    assert [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("12345")] == ["123", "45"]
    assert info.bos_id is None and info.eos_id is None and info.add_bos is False


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


class FakeField:
    def __init__(self, value: Any) -> None:
        self.value = value

    def contents(self) -> Any:
        return self.value


class FakeReader:
    def __init__(self, **fields: Any) -> None:
        self.fields = {key.replace("__", "."): FakeField(value) for key, value in fields.items()}


def test_missing_token_list_is_refused() -> None:
    reader = FakeReader(**{"tokenizer.ggml.model": "gpt2", "general.architecture": "llama"})
    with pytest.raises(TokenizerImportError, match=r"tokenizer\.ggml\.tokens is missing"):
        tokenizer_from_gguf(reader)


def test_missing_token_list_in_a_real_file_is_refused(tmp_path: Path) -> None:
    reader = write_gguf(tmp_path / "no_tokens.gguf", model="gpt2")
    with pytest.raises(TokenizerImportError, match="no tokenizer"):
        tokenizer_from_gguf(reader)


def test_missing_model_is_refused(tmp_path: Path) -> None:
    reader = write_gguf(tmp_path / "no_model.gguf", tokens=BPE_TOKENS, merges=BPE_MERGES)
    with pytest.raises(TokenizerImportError, match=r"tokenizer\.ggml\.model is missing"):
        tokenizer_from_gguf(reader)


def test_unknown_pre_type_is_named(tmp_path: Path) -> None:
    reader = write_tiny_bpe(tmp_path / "bpe.gguf", pre="no-such-pretokenizer")
    with pytest.raises(TokenizerImportError, match="'no-such-pretokenizer'"):
        tokenizer_from_gguf(reader)


@pytest.mark.parametrize("model", ["bert", "rwkv", "t5"])
def test_unsupported_tokenizer_model_is_refused(tmp_path: Path, model: str) -> None:
    reader = write_tiny_bpe(tmp_path / "bpe.gguf", model=model)
    with pytest.raises(TokenizerImportError, match=f"'{model}' tokenizer"):
        tokenizer_from_gguf(reader)


def test_missing_merges_is_refused(tmp_path: Path) -> None:
    reader = write_gguf(tmp_path / "bpe.gguf", model="gpt2", pre="gpt-2", tokens=BPE_TOKENS)
    with pytest.raises(TokenizerImportError, match="merges"):
        tokenizer_from_gguf(reader)


def test_duplicate_token_is_refused(tmp_path: Path) -> None:
    reader = write_tiny_bpe(tmp_path / "bpe.gguf", tokens=BPE_TOKENS + ["hello"], token_types=None)
    with pytest.raises(TokenizerImportError, match="appears twice"):
        tokenizer_from_gguf(reader)


def test_add_bos_without_bos_id_is_refused(tmp_path: Path) -> None:
    reader = write_tiny_bpe(tmp_path / "bpe.gguf", ids={}, flags={"tokenizer.ggml.add_bos_token": True})
    with pytest.raises(TokenizerImportError, match="start token"):
        tokenizer_from_gguf(reader)


def test_error_messages_are_single_sentences(tmp_path: Path) -> None:
    reader = write_tiny_bpe(tmp_path / "bpe.gguf", pre="no-such-pretokenizer")
    with pytest.raises(TokenizerImportError) as caught:
        tokenizer_from_gguf(reader)
    message = str(caught.value)
    assert message.endswith(".") and "\n" not in message
    assert isinstance(caught.value, ValueError)


# --------------------------------------------------------------------------
# SentencePiece BPE ("llama") written with GGUFWriter
# --------------------------------------------------------------------------


def test_spm_encodes_with_merges_from_scores(tmp_path: Path) -> None:
    info = tokenizer_from_gguf(write_tiny_spm(tmp_path / "spm.gguf"))
    tok = load(info)
    # llama.cpp defaults for SentencePiece: add BOS, no EOS, prefix a space.
    assert info.add_bos is True and info.add_eos is False
    assert info.bos_id == 1 and info.bos_token == "<s>"
    assert info.eos_id == 2 and info.eos_token == "</s>"
    assert info.unk_id == 0
    assert info.special_ids == [0, 1, 2]
    encoding = tok.encode("hello world")
    assert encoding.tokens == ["<s>", f"{SPM_SPACE}hello", f"{SPM_SPACE}world"]
    assert encoding.ids == [1, SPM_TOKENS.index(f"{SPM_SPACE}hello"), SPM_TOKENS.index(f"{SPM_SPACE}world")]


def test_spm_byte_fallback(tmp_path: Path) -> None:
    tok = load(tokenizer_from_gguf(write_tiny_spm(tmp_path / "spm.gguf")))
    encoding = tok.encode("hé", add_special_tokens=False)
    assert encoding.tokens == [f"{SPM_SPACE}h", "<0xC3>", "<0xA9>"]


@pytest.mark.parametrize(
    "text",
    ["hello world", "hello  world  ", " hello", "hé wörld ✓ 🧪", "hat\nthe\tworld", "a"],
)
def test_spm_round_trip(tmp_path: Path, text: str) -> None:
    tok = load(tokenizer_from_gguf(write_tiny_spm(tmp_path / "spm.gguf")))
    ids = tok.encode(text).ids
    assert ids[0] == 1
    assert tok.decode(ids) == text
    assert tok.decode(ids[1:]) == text


@pytest.mark.parametrize(
    "text", ["hello world", "hellohello hat", "the world hello  hat", "whirled lot", "hé llo"]
)
def test_spm_matches_reference_algorithm(tmp_path: Path, text: str) -> None:
    tok = load(tokenizer_from_gguf(write_tiny_spm(tmp_path / "spm.gguf")))
    expected = spm_reference_encode(text, SPM_TOKENS, SPM_TYPES, SPM_SCORES)
    assert tok.encode(text, add_special_tokens=False).ids == expected


def test_spm_control_tokens_in_text(tmp_path: Path) -> None:
    tok = load(tokenizer_from_gguf(write_tiny_spm(tmp_path / "spm.gguf")))
    ids = tok.encode("hello</s>", add_special_tokens=False).ids
    assert ids == [SPM_TOKENS.index(f"{SPM_SPACE}hello"), 2]
    assert tok.decode(ids, skip_special_tokens=False) == "hello</s>"


def test_spm_without_space_prefix(tmp_path: Path) -> None:
    reader = write_tiny_spm(tmp_path / "spm.gguf", flags={"tokenizer.ggml.add_space_prefix": False})
    tok = load(tokenizer_from_gguf(reader))
    encoding = tok.encode("hello world", add_special_tokens=False)
    assert encoding.tokens == ["hello", f"{SPM_SPACE}world"]
    assert tok.decode(encoding.ids) == "hello world"


def test_spm_import_is_fast_for_a_32k_vocabulary(tmp_path: Path) -> None:
    alphabet = "abcdefghij" + SPM_SPACE
    pieces: list[str] = list(alphabet)
    for length in range(2, 6):
        for chars in itertools.product(alphabet, repeat=length):
            pieces.append("".join(chars))
            if len(pieces) >= 32000 - 259:
                break
        if len(pieces) >= 32000 - 259:
            break
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + pieces
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    reader = write_tiny_spm(tmp_path / "spm32k.gguf", tokens=tokens, token_types=types, scores=scores)
    info = tokenizer_from_gguf(reader)
    tok = load(info)
    assert tok.get_vocab_size() == 32000
    assert tok.decode(tok.encode("abc defij").ids) == "abc defij"


# --------------------------------------------------------------------------
# odd but loadable metadata
# --------------------------------------------------------------------------


def test_invalid_utf8_token_is_read_with_replacement_character(tmp_path: Path) -> None:
    raw_tokens: list[bytes] = [t.encode("utf-8") for t in BPE_TOKENS] + [b"bad\xff"]
    reader = write_tiny_bpe(tmp_path / "bpe.gguf", tokens=raw_tokens, token_types=BPE_TYPES + [NORMAL])
    tok = load(tokenizer_from_gguf(reader))
    assert tok.id_to_token(len(BPE_TOKENS)) == "bad\ufffd"
    assert tok.encode("hello world").tokens == ["hello", "Ġworld"]


def test_empty_token_gets_llama_cpp_placeholder(tmp_path: Path) -> None:
    tokens = BPE_TOKENS + [""]
    reader = write_tiny_bpe(tmp_path / "bpe.gguf", tokens=tokens, token_types=BPE_TYPES + [NORMAL])
    tok = load(tokenizer_from_gguf(reader))
    assert tok.id_to_token(len(BPE_TOKENS)) == f"[EMPTY_{len(BPE_TOKENS)}]"

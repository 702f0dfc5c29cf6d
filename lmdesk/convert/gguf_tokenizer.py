"""Rebuild a Hugging Face ``tokenizers`` tokenizer from the metadata of a GGUF file.

A GGUF file carries its tokenizer as plain metadata (``tokenizer.ggml.*``): the
token strings, their types, the BPE merges or SentencePiece scores, and the
name of the pre-tokenizer that llama.cpp applies before BPE.  This module turns
that metadata into a :class:`tokenizers.Tokenizer` (serialised as
``tokenizer.json`` text) that tokenizes the way llama.cpp does, so that the
model sees the ids it was trained on.

Two tokenizer families are supported:

* ``tokenizer.ggml.model == "gpt2"``: byte-level BPE (GPT-2, Llama 3, Qwen 2,
  SmolLM, StarCoder, Mistral Tekken, ...).  The regular expressions that split
  text into words before BPE are chosen by ``tokenizer.ggml.pre`` from
  :data:`PRE_TOKENIZERS`; supporting another name is a one-line addition there.
* ``tokenizer.ggml.model == "llama"``: SentencePiece BPE with byte fallback
  (Llama 2, TinyLlama, Mistral v0.1, ...).  The merges are derived from the
  token scores, as Hugging Face's ``LlamaConverter`` does.

Everything else raises :class:`TokenizerImportError` with a sentence that can be
shown to the user as is.

This module never imports Qt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors

if TYPE_CHECKING:  # pragma: no cover - typing only
    import gguf

__all__ = [
    "PRE_TOKENIZERS",
    "PreTokenizerRecipe",
    "TokenizerImportError",
    "TokenizerInfo",
    "tokenizer_from_gguf",
]


class TokenizerImportError(ValueError):
    """The GGUF metadata does not describe a tokenizer that lmdesk can rebuild.

    The message is one sentence meant for a human, e.g. "This GGUF file has no
    tokenizer in its metadata (tokenizer.ggml.tokens is missing)."
    """


@dataclass(frozen=True)
class TokenizerInfo:
    """A tokenizer rebuilt from GGUF metadata, plus the facts needed around it.

    Load the tokenizer with ``tokenizers.Tokenizer.from_str(info.tokenizer_json)``.
    ``encode(text).ids`` then matches llama.cpp's ``llama_tokenize(text,
    add_special=True, parse_special=True)``: special tokens written in the text
    (e.g. ``<|im_start|>``) become their single id, and a BOS/EOS is added only
    when :attr:`add_bos` / :attr:`add_eos` say so.
    """

    tokenizer_json: str
    """Serialised :class:`tokenizers.Tokenizer` (the content of a tokenizer.json)."""
    bos_id: int | None
    """Beginning-of-sequence id (``tokenizer.ggml.bos_token_id``), or None."""
    eos_id: int | None
    """End-of-sequence id (``tokenizer.ggml.eos_token_id``), or None."""
    pad_id: int | None
    """Padding id (``tokenizer.ggml.padding_token_id``), or None."""
    unk_id: int | None
    """Unknown-token id (``tokenizer.ggml.unknown_token_id``), or None."""
    add_bos: bool
    """Whether encoding prepends BOS (``tokenizer.ggml.add_bos_token``, else llama.cpp's default)."""
    add_eos: bool
    """Whether encoding appends EOS (``tokenizer.ggml.add_eos_token``, default False)."""
    special_ids: list[int]
    """Ids of tokens matched whole in text: control, user-defined and unknown-type tokens."""
    chat_template: str | None
    """The Jinja chat template (``tokenizer.chat_template``), or None."""
    bos_token: str | None
    """Text of the BOS token, for chat templates."""
    eos_token: str | None
    """Text of the EOS token, for chat templates."""


# --------------------------------------------------------------------------
# GGUF metadata keys and token types
# --------------------------------------------------------------------------

KEY_MODEL = "tokenizer.ggml.model"
KEY_PRE = "tokenizer.ggml.pre"
KEY_TOKENS = "tokenizer.ggml.tokens"
KEY_TOKEN_TYPE = "tokenizer.ggml.token_type"
KEY_SCORES = "tokenizer.ggml.scores"
KEY_MERGES = "tokenizer.ggml.merges"
KEY_BOS_ID = "tokenizer.ggml.bos_token_id"
KEY_EOS_ID = "tokenizer.ggml.eos_token_id"
KEY_PAD_ID = "tokenizer.ggml.padding_token_id"
KEY_UNK_ID = "tokenizer.ggml.unknown_token_id"
KEY_ADD_BOS = "tokenizer.ggml.add_bos_token"
KEY_ADD_EOS = "tokenizer.ggml.add_eos_token"
KEY_ADD_SPACE_PREFIX = "tokenizer.ggml.add_space_prefix"
KEY_CHAT_TEMPLATE = "tokenizer.chat_template"

# Values of tokenizer.ggml.token_type (same numbers as gguf.TokenType).
TOKEN_NORMAL = 1
TOKEN_UNKNOWN = 2
TOKEN_CONTROL = 3
TOKEN_USER_DEFINED = 4
TOKEN_UNUSED = 5
TOKEN_BYTE = 6

# Token types that llama.cpp matches whole in the input text before running
# BPE (its "special tokens cache": CONTROL | USER_DEFINED | UNKNOWN).
_WHOLE_MATCH_TYPES = frozenset({TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_USER_DEFINED})

_SPM_SPACE = "\u2581"  # "▁", SentencePiece's visible space


# --------------------------------------------------------------------------
# Pre-tokenizers for byte-level BPE ("gpt2" model), keyed by tokenizer.ggml.pre
# --------------------------------------------------------------------------

# The regular expressions are the ones in the models' tokenizer.json files;
# llama.cpp (src/llama-vocab.cpp) uses the same ones, sometimes rewritten
# without (?i:...) for its own regex engine.

#: GPT-2; also what ByteLevel(use_regex=True) applies internally.
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

#: Llama 3 (numbers in groups of up to three digits).
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Qwen 2 (like Llama 3, but every digit on its own).
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: Mistral's Tekken (case-aware words, single digits).
TEKKEN_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: GPT-4o / Llama 4 (case-aware words with contractions, numbers by three).
GPT4O_REGEX = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: llama.cpp's fallback chain for pre-type "default" (or a missing pre-type):
#: punctuation runs first, then GPT-2 words, then digit runs, then digits by three.
LLAMA_CPP_DEFAULT_REGEXES = (
    r"[\p{P}\$\+<=>\^~\|]+",
    GPT2_REGEX,
    r"\p{N}+",
    r"[0-9][0-9][0-9]",
)


def _byte_level(use_regex: bool) -> pre_tokenizers.ByteLevel:
    return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=use_regex)


def _gpt2() -> pre_tokenizers.PreTokenizer:
    """GPT-2's own pre-tokenizer: ByteLevel with its built-in regex."""
    return _byte_level(use_regex=True)


def _digits_then_gpt2() -> pre_tokenizers.PreTokenizer:
    """StarCoder / SmolLM: every digit alone, then the GPT-2 regex."""
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), _byte_level(use_regex=True)]
    )


def _regex_chain(*patterns: str) -> Callable[[], pre_tokenizers.PreTokenizer]:
    """Split by each regex in turn (matches and the text between them are kept), then bytes.

    This is how llama.cpp applies a list of regexes, and how the Llama 3 and
    Qwen 2 tokenizer.json files are written (Split, then ByteLevel without regex).
    """

    def build() -> pre_tokenizers.PreTokenizer:
        steps: list[pre_tokenizers.PreTokenizer] = [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
            for pattern in patterns
        ]
        steps.append(_byte_level(use_regex=False))
        return pre_tokenizers.Sequence(steps)

    return build


@dataclass(frozen=True)
class PreTokenizerRecipe:
    """How to pre-tokenize for one value of ``tokenizer.ggml.pre``."""

    build: Callable[[], pre_tokenizers.PreTokenizer]
    """Makes the pre-tokenizer (a fresh object each time)."""
    ignore_merges: bool = False
    """A word that is already a token is not split by BPE (llama.cpp's ``ignore_merges``)."""
    add_bos: bool = False
    """llama.cpp's default for adding BOS when ``tokenizer.ggml.add_bos_token`` is absent."""


def _recipes(names: Sequence[str], recipe: PreTokenizerRecipe) -> dict[str, PreTokenizerRecipe]:
    return {name: recipe for name in names}


#: tokenizer.ggml.pre → recipe, following llama.cpp's llama-vocab.cpp.
#: To support another pre-type, add its name here (usually to an existing group).
PRE_TOKENIZERS: dict[str, PreTokenizerRecipe] = {
    **_recipes(["default"], PreTokenizerRecipe(_regex_chain(*LLAMA_CPP_DEFAULT_REGEXES))),
    **_recipes(["gpt-2", "gpt2", "phi-2", "mpt", "olmo"], PreTokenizerRecipe(_gpt2)),
    **_recipes(
        ["smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva-7b"],
        PreTokenizerRecipe(_digits_then_gpt2),
    ),
    **_recipes(
        ["llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"],
        PreTokenizerRecipe(_regex_chain(LLAMA3_REGEX), ignore_merges=True, add_bos=True),
    ),
    **_recipes(["dbrx", "smaug-bpe"], PreTokenizerRecipe(_regex_chain(LLAMA3_REGEX))),
    **_recipes(
        ["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"],
        PreTokenizerRecipe(_regex_chain(QWEN2_REGEX)),
    ),
    **_recipes(
        ["tekken"],
        PreTokenizerRecipe(_regex_chain(TEKKEN_REGEX), ignore_merges=True, add_bos=True),
    ),
    **_recipes(["gpt-4o", "llama4"], PreTokenizerRecipe(_regex_chain(GPT4O_REGEX))),
}


# --------------------------------------------------------------------------
# Reading metadata
# --------------------------------------------------------------------------


def _field_value(reader: Any, key: str) -> Any:
    """The Python value of a metadata field, or None when the field is absent.

    Works with :class:`gguf.GGUFReader` (``reader.fields[key].contents()``) and with
    any object whose ``fields`` mapping holds objects with a ``contents()`` method.
    """
    fields = getattr(reader, "fields", None)
    if fields is None:
        raise TokenizerImportError("This object is not a GGUF reader (it has no metadata fields).")
    field = fields.get(key)
    if field is None:
        return None
    try:
        return field.contents()
    except UnicodeDecodeError:
        return _contents_lossy(field)


def _contents_lossy(field: Any) -> Any:
    """Like ``ReaderField.contents()`` for strings, but invalid UTF-8 becomes U+FFFD instead of failing."""

    def text(part: Any) -> str:
        return bytes(part).decode("utf-8", errors="replace")

    if len(field.types) == 1:  # a single string
        return text(field.parts[-1])
    return [text(field.parts[index]) for index in field.data]  # an array of strings


def _string_list(reader: Any, key: str, *, required: bool) -> list[str] | None:
    value = _field_value(reader, key)
    if value is None:
        if required:
            raise TokenizerImportError(
                f"This GGUF file has no tokenizer in its metadata ({key} is missing)."
            )
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TokenizerImportError(
            f"This GGUF file's tokenizer metadata is damaged ({key} is not a list of strings)."
        )
    return value


def _number_list(reader: Any, key: str, length: int) -> list[float] | None:
    value = _field_value(reader, key)
    if value is None:
        return None
    if not isinstance(value, list) or len(value) < length:
        raise TokenizerImportError(
            f"This GGUF file's tokenizer metadata is damaged ({key} has fewer entries than there are tokens)."
        )
    return value


def _optional_str(reader: Any, key: str) -> str | None:
    value = _field_value(reader, key)
    return value if isinstance(value, str) else None


def _optional_bool(reader: Any, key: str, default: bool) -> bool:
    value = _field_value(reader, key)
    return bool(value) if value is not None else default


def _token_id(reader: Any, key: str, default: int | None, n_tokens: int) -> int | None:
    """A special-token id from metadata; out-of-range ids fall back to the default (as llama.cpp does)."""
    value = _field_value(reader, key)
    if isinstance(value, int) and 0 <= value < n_tokens:
        return value
    if default is not None and 0 <= default < n_tokens:
        return default
    return None


def _placeholders_for_empty(tokens: list[str]) -> list[str]:
    """A copy of the token list where empty tokens read ``[EMPTY_<id>]``, as llama.cpp names them."""
    return [text if text else f"[EMPTY_{index}]" for index, text in enumerate(tokens)]


def _unique_vocab(tokens: list[str]) -> dict[str, int]:
    """token → id; a token that appears twice is refused (llama.cpp refuses such files too)."""
    vocab: dict[str, int] = {}
    for index, text in enumerate(tokens):
        if text in vocab:
            raise TokenizerImportError(
                f"This GGUF file's vocabulary is damaged (the token {text!r} appears twice, "
                f"as ids {vocab[text]} and {index})."
            )
        vocab[text] = index
    return vocab


# --------------------------------------------------------------------------
# Tokenizer builders
# --------------------------------------------------------------------------


def _parse_merges(merges: list[str]) -> list[tuple[str, str]]:
    """``"a b"`` → ``("a", "b")``, splitting at the first space after the first character (as llama.cpp)."""
    pairs: list[tuple[str, str]] = []
    for merge in merges:
        cut = merge.find(" ", 1)
        if cut < 0:
            raise TokenizerImportError(
                f"This GGUF file's tokenizer merges are damaged (the merge {merge!r} has no space)."
            )
        pairs.append((merge[:cut], merge[cut + 1 :]))
    return pairs


def _build_byte_level_bpe(
    vocab: dict[str, int], merges: list[tuple[str, str]], recipe: PreTokenizerRecipe
) -> Tokenizer:
    """Byte-level BPE (tokenizer.ggml.model == "gpt2")."""
    model = models.BPE(
        vocab=vocab,
        merges=merges,
        unk_token=None,  # like the HF files: bytes missing from the vocabulary are dropped
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=recipe.ignore_merges,
    )
    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = recipe.build()
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def _sentencepiece_merges(
    tokens: list[str], scores: list[float] | None, token_types: list[int] | None
) -> list[tuple[str, str]]:
    """Derive BPE merges from a SentencePiece vocabulary, like HF's ``SentencePieceExtractor``.

    Every way of cutting a token into two pieces that are both tokens gives a
    merge.  Merges are ranked by the score of the merged token (higher first),
    then by its id, then by the ids of the two pieces.  Only normal tokens take
    part: control, byte, unused and user-defined pieces are never produced by
    SentencePiece's BPE.
    """

    def mergeable(index: int) -> bool:
        return token_types is None or token_types[index] in (TOKEN_NORMAL, 0)

    pieces: dict[str, int] = {text: i for i, text in enumerate(tokens) if mergeable(i)}
    ranked: list[tuple[float, int, int, int, str, str]] = []
    for merged, merged_id in pieces.items():
        if len(merged) < 2:
            continue
        score = float(scores[merged_id]) if scores is not None else 0.0
        for cut in range(1, len(merged)):
            left_id = pieces.get(merged[:cut])
            if left_id is None:
                continue
            right_id = pieces.get(merged[cut:])
            if right_id is None:
                continue
            ranked.append((-score, merged_id, left_id, right_id, merged[:cut], merged[cut:]))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def _build_sentencepiece_bpe(
    vocab: dict[str, int],
    tokens: list[str],
    scores: list[float] | None,
    token_types: list[int] | None,
    unk_id: int | None,
    add_space_prefix: bool,
) -> Tokenizer:
    """SentencePiece BPE with byte fallback (tokenizer.ggml.model == "llama"), like HF's LlamaConverter."""
    model = models.BPE(
        vocab=vocab,
        merges=_sentencepiece_merges(tokens, scores, token_types),
        unk_token=tokens[unk_id] if unk_id is not None else None,
        fuse_unk=True,
        byte_fallback=True,
    )
    tokenizer = Tokenizer(model)
    steps: list[normalizers.Normalizer] = []
    if add_space_prefix:
        steps.append(normalizers.Prepend(_SPM_SPACE))
    steps.append(normalizers.Replace(" ", _SPM_SPACE))
    tokenizer.normalizer = normalizers.Sequence(steps)
    decode_steps: list[decoders.Decoder] = [
        decoders.Replace(_SPM_SPACE, " "),
        decoders.ByteFallback(),
        decoders.Fuse(),
    ]
    if add_space_prefix:
        decode_steps.append(decoders.Strip(content=" ", left=1, right=0))
    tokenizer.decoder = decoders.Sequence(decode_steps)
    return tokenizer


def _add_whole_match_tokens(
    tokenizer: Tokenizer, tokens: list[str], token_types: list[int] | None
) -> list[int]:
    """Register control, user-defined and unknown-type tokens so they are matched whole in text.

    Control and unknown tokens are *special* (dropped by ``decode(...,
    skip_special_tokens=True)``); user-defined tokens are ordinary text that
    happens to be one token (e.g. runs of spaces), as in the HF files they
    come from, so they are always decoded.  Returns the ids, ascending.
    """
    if token_types is None:
        return []
    special: list[AddedToken] = []
    plain: list[AddedToken] = []
    ids: list[int] = []
    for index, kind in enumerate(token_types[: len(tokens)]):
        if kind not in _WHOLE_MATCH_TYPES:
            continue
        ids.append(index)
        is_special = kind != TOKEN_USER_DEFINED
        token = AddedToken(tokens[index], special=is_special, normalized=False)
        (special if is_special else plain).append(token)
    if special:
        tokenizer.add_special_tokens(special)
    if plain:
        tokenizer.add_tokens(plain)
    return ids


def _add_bos_eos_processor(
    tokenizer: Tokenizer,
    tokens: list[str],
    bos_id: int | None,
    eos_id: int | None,
    add_bos: bool,
    add_eos: bool,
) -> None:
    """Make ``encode`` add BOS/EOS as llama.cpp's ``add_special`` does."""
    prefix = [tokens[bos_id]] if add_bos and bos_id is not None else []
    suffix = [tokens[eos_id]] if add_eos and eos_id is not None else []
    if not (prefix or suffix):
        return
    used = {tokens[i]: i for i in (bos_id, eos_id) if i is not None and tokens[i] in prefix + suffix}
    single = " ".join([*prefix, "$A:0", *suffix])
    pair = " ".join([single, *prefix, "$B:1", *suffix])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=list(used.items())
    )


# --------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------


def tokenizer_from_gguf(reader: "gguf.GGUFReader") -> TokenizerInfo:
    """Rebuild the tokenizer described by a GGUF file's metadata.

    ``reader`` is a :class:`gguf.GGUFReader` (anything with a compatible
    ``fields`` mapping works).  Raises :class:`TokenizerImportError` with a
    human-readable sentence when the metadata is missing, damaged, or of a kind
    lmdesk does not support.
    """
    tokens = _string_list(reader, KEY_TOKENS, required=True)
    assert tokens is not None
    model_name = _optional_str(reader, KEY_MODEL)
    if model_name is None:
        raise TokenizerImportError(
            f"This GGUF file has no tokenizer in its metadata ({KEY_MODEL} is missing)."
        )
    if not tokens:
        raise TokenizerImportError("This GGUF file's tokenizer has an empty vocabulary.")
    tokens = _placeholders_for_empty(tokens)
    n_tokens = len(tokens)
    raw_types = _number_list(reader, KEY_TOKEN_TYPE, n_tokens)
    token_types = [int(t) for t in raw_types[:n_tokens]] if raw_types is not None else None
    vocab = _unique_vocab(tokens)

    # llama.cpp's defaults, used when the metadata does not say otherwise.
    recipe: PreTokenizerRecipe | None = None  # None means SentencePiece
    default_bos: int | None
    default_eos: int | None
    default_unk: int | None
    if model_name == "gpt2":
        pre_name = _optional_str(reader, KEY_PRE) or "default"
        recipe = PRE_TOKENIZERS.get(pre_name)
        if recipe is None:
            raise TokenizerImportError(
                f"This GGUF file uses the pre-tokenizer '{pre_name}', which lmdesk does not support yet."
            )
        # llama.cpp's BPE defaults (bos = eos = 11) are a Falcon leftover; "unset" is safer.
        default_bos, default_eos, default_unk = None, None, None
        default_add_bos = recipe.add_bos
    elif model_name == "llama":
        default_bos, default_eos, default_unk = 1, 2, 0
        default_add_bos = True
    else:
        raise TokenizerImportError(
            f"This GGUF file uses a '{model_name}' tokenizer, but lmdesk can only read "
            "byte-level BPE ('gpt2') and SentencePiece ('llama') tokenizers."
        )

    bos_id = _token_id(reader, KEY_BOS_ID, default_bos, n_tokens)
    eos_id = _token_id(reader, KEY_EOS_ID, default_eos, n_tokens)
    unk_id = _token_id(reader, KEY_UNK_ID, default_unk, n_tokens)
    pad_id = _token_id(reader, KEY_PAD_ID, None, n_tokens)
    add_bos = _optional_bool(reader, KEY_ADD_BOS, default_add_bos)
    add_eos = _optional_bool(reader, KEY_ADD_EOS, False)
    if add_bos and bos_id is None:
        raise TokenizerImportError(
            f"This GGUF file asks for a start token ({KEY_ADD_BOS}) but does not say which one ({KEY_BOS_ID})."
        )
    if add_eos and eos_id is None:
        raise TokenizerImportError(
            f"This GGUF file asks for an end token ({KEY_ADD_EOS}) but does not say which one ({KEY_EOS_ID})."
        )

    merge_pairs: list[tuple[str, str]] = []
    scores: list[float] | None = None
    add_space_prefix = False
    if recipe is not None:
        merges = _string_list(reader, KEY_MERGES, required=False)
        if merges is None:
            raise TokenizerImportError(
                f"This GGUF file's BPE tokenizer has no merges ({KEY_MERGES} is missing)."
            )
        merge_pairs = _parse_merges(merges)
    else:
        raw_scores = _number_list(reader, KEY_SCORES, n_tokens)
        scores = [float(s) for s in raw_scores[:n_tokens]] if raw_scores is not None else None
        add_space_prefix = _optional_bool(reader, KEY_ADD_SPACE_PREFIX, True)

    try:
        if recipe is not None:
            tokenizer = _build_byte_level_bpe(vocab, merge_pairs, recipe)
        else:
            tokenizer = _build_sentencepiece_bpe(
                vocab, tokens, scores, token_types, unk_id, add_space_prefix
            )
        special_ids = _add_whole_match_tokens(tokenizer, tokens, token_types)
        _add_bos_eos_processor(tokenizer, tokens, bos_id, eos_id, add_bos, add_eos)
        tokenizer_json = tokenizer.to_str()
    except Exception as error:  # the tokenizers library rejected the vocabulary or merges
        raise TokenizerImportError(
            f"This GGUF file's tokenizer could not be rebuilt ({error})."
        ) from error

    return TokenizerInfo(
        tokenizer_json=tokenizer_json,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        unk_id=unk_id,
        add_bos=add_bos,
        add_eos=add_eos,
        special_ids=special_ids,
        chat_template=_optional_str(reader, KEY_CHAT_TEMPLATE),
        bos_token=tokens[bos_id] if bos_id is not None else None,
        eos_token=tokens[eos_id] if eos_id is not None else None,
    )

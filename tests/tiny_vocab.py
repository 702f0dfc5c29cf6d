"""A second tiny model with a different vocabulary: SentencePiece instead of byte-level BPE.

``write_tiny_spm_gguf(path, seed=...)`` writes a tiny random model with
``tests/tiny_gguf.py`` (its weights, its writer) and then replaces the
tokenizer's metadata by a small SentencePiece vocabulary
(``tokenizer.ggml.model == "llama"``): ``<unk> <s> </s>``, the 256 byte
tokens ``<0x00>`` … ``<0xFF>`` (byte fallback for anything else: "é", "中",
emoji), ``▁``, letters, digits, a little punctuation and a few dozen merged
pieces, with a start token before every text and a space put before the
first word, as Llama 2's tokenizer does. A text then falls into other
tokens than the first tiny model's ("▁the" against "Ġthe", "<0xE4>" pieces
against "ä¸Ń"), which is what comparing models across tokenizers needs.

Deliberately independent of ``lmdesk``.
"""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

import gguf
from tiny_gguf import write_tiny_gguf

__all__ = ["SPM_SPACE", "spm_vocab", "write_tiny_spm_gguf"]

SPM_SPACE = "\u2581"  # ▁
UNKNOWN, CONTROL, NORMAL, BYTE = 2, 3, 1, 6
_MERGED = [
    "▁t", "he", "▁the", "in", "er", "▁a", "on", "re", "an", "at", "en", "is", "▁s", "▁w", "ou",
    "▁o", "it", "▁c", "or", "▁b", "▁f", "▁m", "▁h", "▁d", "nd", "ll", "ar", "es", "▁wh", "▁th",
    "▁i", "▁is", "▁an", "▁and", "▁of", "▁to", "ing", "▁in", "▁ca", "▁cat", "ed", "▁sat",
]


def spm_vocab() -> tuple[list[str], list[int], list[float]]:
    """(tokens, token_types, scores): merged pieces score by their order, best first."""
    pieces = [SPM_SPACE, *string.ascii_lowercase, *string.ascii_uppercase, *string.digits, *".,!?'-:;"]
    pieces += [m.replace("▁", SPM_SPACE) for m in _MERGED]
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *pieces]
    types = [UNKNOWN, CONTROL, CONTROL] + [BYTE] * 256 + [NORMAL] * len(pieces)
    scores = [0.0] * 259 + [-float(i) for i in range(len(pieces))]
    assert len(set(tokens)) == len(tokens)
    return tokens, types, scores


def _copy_field(writer: gguf.GGUFWriter, field) -> None:
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        writer.add_key_value(field.name, list(field.contents()), kind, sub_type=field.types[-1])
    else:
        writer.add_key_value(field.name, field.contents(), kind)


def write_tiny_spm_gguf(path: Path | str, *, seed: int = 1, **options) -> Path:
    """A tiny llama model (``write_tiny_gguf`` with ``options``) whose tokenizer
    is :func:`spm_vocab`'s SentencePiece vocabulary; returns ``path``."""
    path = Path(path)
    tokens, types, scores = spm_vocab()
    with tempfile.TemporaryDirectory() as tmp:
        base = write_tiny_gguf(Path(tmp) / "base.gguf", vocab=len(tokens), seed=seed, chat_template=None, **options)
        reader = gguf.GGUFReader(str(base))
        arch = str(reader.fields["general.architecture"].contents())
        writer = gguf.GGUFWriter(str(path), arch)
        for name, field in reader.fields.items():
            if name.startswith("GGUF.") or name == "general.architecture" or name.startswith("tokenizer."):
                continue
            _copy_field(writer, field)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_scores(scores)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        writer.add_bool("tokenizer.ggml.add_space_prefix", True)
        for t in reader.tensors:
            writer.add_tensor(t.name, t.data.copy(), raw_shape=list(reversed([int(n) for n in t.shape])),
                              raw_dtype=t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        del reader
    return path

"""The model families lmdesk imports, each a small module of its own.

Every family is a llama-like decoder (:mod:`lmdesk.convert.onnx_decoder` is the
shared skeleton); an :class:`ArchSpec` says what a family adds to it, from the
facts of llama.cpp's graph for that ``general.architecture``:

* :mod:`.llama`: ``llama`` (SmolLM, Llama 1-3, TinyLlama, Mistral), ``qwen2``
  and ``qwen3``;
* :mod:`.gemma`: ``gemma``, ``gemma2`` and ``gemma3``;
* :mod:`.phi`: ``phi3``.

Supporting another family is a module here and its entries in
:data:`ARCHITECTURES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# get("rope.freq_base", default): the file's "<arch>.rope.freq_base" entry
Fields = Callable[[str, Any], Any]


@dataclass(frozen=True)
class ArchSpec:
    """How one GGUF architecture maps onto the decoder graph."""

    name: str
    rope_interleaved: bool  # llama.cpp's "normal" rope rotates adjacent pairs; NEOX rotates halves
    qk_norm: bool = False  # blk.N.attn_q_norm / attn_k_norm: RMSNorm of each head before the rotary
    post_norms: bool = False  # blk.N.post_attention_norm / post_ffw_norm: RMSNorm before each residual add
    fused_qkv: bool = False  # blk.N.attn_qkv: q, k and v in one matrix, in that order
    fused_gate_up: bool = False  # blk.N.ffn_up: the gate's rows, then the up projection's
    # the family's additions to the DecoderConfig: fields, n_layer, d_model, n_head, head_dim -> overrides
    configure: Callable[[Fields, int, int, int, int], dict] | None = None


def _registry() -> dict[str, ArchSpec]:
    from . import gemma, llama, phi

    specs = [*llama.SPECS, *gemma.SPECS, *phi.SPECS]
    return {spec.name: spec for spec in specs}


ARCHITECTURES: dict[str, ArchSpec] = _registry()

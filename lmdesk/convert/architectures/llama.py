"""Llama-like families: the llama block itself, and Qwen's variants of it.

* ``llama``: SmolLM/SmolLM2, Llama 1-3, TinyLlama, Mistral. Rotary on adjacent
  pairs (llama.cpp's "normal" rope: its converter permutes q and k so).
* ``qwen2``: llama blocks with biases on q, k and v (read wherever a file has
  them) and NEOX rotary (the two halves of each head).
* ``qwen3``: NEOX rotary and a per-head RMSNorm of q and k before it.
"""

from __future__ import annotations

from . import ArchSpec

SPECS = (
    ArchSpec("llama", rope_interleaved=True),
    ArchSpec("qwen2", rope_interleaved=False),
    ArchSpec("qwen3", rope_interleaved=False, qk_norm=True),
)

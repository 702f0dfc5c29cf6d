"""Google's Gemma families, as llama.cpp computes them.

What all three add to the llama block: the embeddings are multiplied by
``sqrt(d_model)`` (a float32 square root), the feed-forward gate is GELU (the
tanh form) instead of SiLU, and the rotary is NEOX. The RMSNorm weights need
nothing: llama.cpp's converter stores Gemma's ``1 + w`` in the file.

* ``gemma``: just that; attention scaled by ``1/sqrt(head_dim)``.
* ``gemma2``: an RMSNorm after the attention and after the feed-forward, each
  before its residual add; every other layer (the even ones) attends through
  a sliding window (``gemma2.attention.sliding_window``, 4096 by default);
  attention scores and final logits are soft-capped, ``c * tanh(x / c)``
  (``gemma2.attn_logit_softcapping``, 50, and ``final_logit_softcapping``, 30).
* ``gemma3``: the post-norms, a per-head RMSNorm of q and k before the rotary,
  no attention soft-cap; five sliding-window layers to one global layer
  (layer ``i`` is windowed when ``i % 6 < 5``), the windowed ones with their
  own rotary base 10000 and no rotary scaling; the final soft-cap only where
  the file gives one.

Gemma 2 and 3 at 27B scale their queries by ``1/sqrt(d_model / n_head)``
(llama.cpp tells that size by its layer count, 46 and 62), every other size by
``1/sqrt(head_dim)``.
"""

from __future__ import annotations

import numpy as np

from . import ArchSpec, Fields


def _common(n_layer: int, d_model: int, n_head: int, head_dim: int, layers_27b: int | None) -> dict:
    per_head = d_model / n_head if n_layer == layers_27b else head_dim
    return {
        "activation": "gelu_tanh",
        "embed_scale": float(np.sqrt(np.float32(d_model))),
        "attn_scale": float(1.0 / np.sqrt(np.float32(per_head))),
    }


def _gemma(get: Fields, n_layer: int, d_model: int, n_head: int, head_dim: int) -> dict:
    return _common(n_layer, d_model, n_head, head_dim, None)


def _gemma2(get: Fields, n_layer: int, d_model: int, n_head: int, head_dim: int) -> dict:
    return {
        **_common(n_layer, d_model, n_head, head_dim, 46),
        "sliding_window": int(get("attention.sliding_window", 4096)),
        "swa_layers": tuple(i % 2 < 1 for i in range(n_layer)),
        "attn_softcap": float(get("attn_logit_softcapping", 50.0)),
        "final_softcap": float(get("final_logit_softcapping", 30.0)),
    }


def _gemma3(get: Fields, n_layer: int, d_model: int, n_head: int, head_dim: int) -> dict:
    window = int(get("attention.sliding_window", 0) or 0)
    extra = {}
    if window > 0:
        extra = {
            "sliding_window": window,
            "swa_layers": tuple(i % 6 < 5 for i in range(n_layer)),
            "inv_freq_swa": 10000.0 ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim),
        }
    return {
        **_common(n_layer, d_model, n_head, head_dim, 62),
        "final_softcap": float(get("final_logit_softcapping", 0.0) or 0.0),
        **extra,
    }


SPECS = (
    ArchSpec("gemma", rope_interleaved=False, configure=_gemma),
    ArchSpec("gemma2", rope_interleaved=False, post_norms=True, configure=_gemma2),
    ArchSpec("gemma3", rope_interleaved=False, qk_norm=True, post_norms=True, configure=_gemma3),
)

"""Microsoft's Phi-3 family (``phi3``: Phi-3 mini/medium, Phi-3.5 mini), as
llama.cpp computes it.

A llama block with two fused matrices: ``attn_qkv`` holds q, k and v one
after the other (in that order, along the output rows) and ``ffn_up`` holds
the feed-forward's gate and then its up projection (SiLU of the first half
times the second). NEOX rotary. Long-context versions carry two sets of
rotary frequency divisors, ``rope_factors_short`` and ``rope_factors_long``
(llama.cpp takes the long ones only when its context exceeds the original
``rope.scaling.original_context_length``), and a factor
``rope.scaling.attn_factor`` on cos and sin: lmdesk runs such a model within
its original context, with the short divisors and that factor. llama.cpp
turns Phi-3's sliding window off, and so does lmdesk.
"""

from __future__ import annotations

from . import ArchSpec

SPECS = (ArchSpec("phi3", rope_interleaved=False, fused_qkv=True, fused_gate_up=True),)

"""Independent numpy reference forward pass for llama-architecture GGUF models.

Deliberately plain and slow-ish: no KV cache, full causal attention recomputed
for every position, float64 math.  It must NOT import anything from ``lmdesk``
-- its whole point is to be an independent oracle for the converter tests.

Semantics follow llama.cpp for ``general.architecture == 'llama'``:

* GGUF tensor shape ``[ne0, ne1]`` dequantizes (``gguf.quants.dequantize``) to a
  numpy array of shape ``(ne1, ne0) == (out_features, in_features)``, so a
  linear layer is ``y = x @ W.T``.
* RMSNorm: ``x / sqrt(mean(x**2) + eps) * weight``.
* RoPE "normal" mode (LLAMA_ROPE_TYPE_NORM): ADJACENT pairs
  ``(x[2i], x[2i+1])`` of each head are rotated by
  ``pos * base**(-2i/n_rot)``; dims ``>= n_rot`` pass through unchanged.
  (HF checkpoints use the "neox" half-split layout, but llama.cpp's
  convert_hf_to_gguf.py permutes the q/k rows so adjacent pairs are correct.)
* GQA: query head ``h`` uses kv head ``h // (n_head // n_head_kv)``;
  scores scaled by ``1/sqrt(head_dim)``; causal softmax.
* MLP: ``down(silu(gate(x)) * up(x))``; pre-norm residual blocks; final
  ``output_norm`` then ``output`` (tied to ``token_embd`` when absent).

Other families, as llama.cpp computes them (its graphs in src/models/):

* ``qwen2``: NEOX rotary (the two halves of a head); q/k/v biases.
* ``qwen3``: NEOX rotary; ``attn_q_norm`` / ``attn_k_norm`` RMSNorm each head
  of q and k over ``head_dim`` before the rotary.
* ``gemma`` / ``gemma2`` / ``gemma3``: NEOX rotary; embeddings times
  ``sqrt(d_model)``; MLP ``down(gelu_tanh(gate(x)) * up(x))``; RMSNorm weights
  used as stored (the converter already wrote ``1 + w``). gemma2/3 add
  ``post_attention_norm`` / ``post_ffw_norm`` on each sub-layer's output
  before its residual add, and sliding-window layers (a query at p sees keys
  at p - window + 1 ... p): gemma2 every even layer, gemma3 every layer with
  ``L % 6 < 5``, whose rotary base is 10000 instead of the file's. gemma2
  soft-caps scores and logits, ``c * tanh(x / c)``; gemma3 has q/k norms.
  Scores are scaled by ``1/sqrt(head_dim)``, or ``1/sqrt(d_model/n_head)`` for
  the 27B models (46 layers for gemma2, 62 for gemma3).

* ``phi3``: NEOX rotary; ``attn_qkv`` is q, k and v stacked (output rows
  in that order), ``ffn_up`` the gate's rows then the up projection's; long-
  context files: theta divided by ``rope_factors_short`` (the context used is
  the original one) and cos/sin times ``rope.scaling.attn_factor``.

Inside the model (``inspect``, for lmdesk's logit lens): the residual stream
after the embeddings and after every layer (``hidden_states``), the head
(final norm, output matrix, final soft-cap) applied to any of them
(``head``), and every layer's softmaxed attention weights, per head, of a
query over its keys (zero outside a sliding window and after the query).

A float16 KV cache (``kv_cache="float16"``), as onnxruntime's CPU
``GroupQueryAttention`` computes in float16 on x86 (contrib_ops/cpu/bert/
group_query_attention.cc, gqa_attention_base.h; mlas rotary_embedding.cpp):
its q, k and v inputs are float16 (the converter casts them), so are its cos
and sin tables; the rotary is computed in float32 from those and rounded to
float16 (the rotated keys are what the cache keeps); q and the keys and values
are widened to float32 for Q K^T, the scale, the soft-cap, the softmax and the
weighted sum of the values, whose result is rounded to float16 once. Here the
same values are rounded at the same places and everything else stays float64.
(ARM builds with float16 vector instructions sum Q K^T in float16 itself: not
modelled.)

Extras that are cheap to get right and also follow llama.cpp: optional
``rope_freqs.weight`` (per-frequency divisors, Llama-3.1 style), ``linear``
rope scaling (``{arch}.rope.scaling.factor``), ``{arch}.attention.key_length``
/ ``value_length``.  YaRN / other scalings raise ``NotImplementedError``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import gguf

__all__ = ["ReferenceModel", "read_gguf_metadata"]


def _field_value(field):
    """Decode a GGUFReader field into a plain python value."""
    return field.contents()


def read_gguf_metadata(reader: gguf.GGUFReader) -> dict:
    """All key/value metadata of a GGUF file as plain python values."""
    out = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        out[name] = _field_value(field)
    return out


ARCH_ROPE = {"llama": "normal", "qwen2": "neox", "qwen3": "neox", "gemma": "neox", "gemma2": "neox", "gemma3": "neox",
             "phi3": "neox"}
GEMMA = ("gemma", "gemma2", "gemma3")


class ReferenceModel:
    """Slow, obviously-correct numpy forward pass of a llama GGUF model.

    Parameters
    ----------
    gguf_path:
        Path to the ``.gguf`` file.
    rope_mode:
        ``"normal"`` (default, what llama.cpp uses for ``llama``) or ``"neox"``
        (half-split pairs).  Only meant for self-checks that demonstrate the
        choice matters; leave at the default.
    kv_cache:
        ``"float32"`` (default: no rounding anywhere) or ``"float16"``: the
        attention's values rounded to float16 where onnxruntime's float16
        GroupQueryAttention rounds them (see the module text).
    """

    def __init__(self, gguf_path, *, rope_mode: str | None = None, kv_cache: str = "float32"):
        if rope_mode not in (None, "normal", "neox"):
            raise ValueError(f"unknown rope_mode {rope_mode!r}")
        if kv_cache not in ("float32", "float16"):
            raise ValueError(f"unknown kv_cache {kv_cache!r}")
        self.kv_cache = kv_cache
        self.path = Path(gguf_path)
        reader = gguf.GGUFReader(str(self.path))
        self.metadata = read_gguf_metadata(reader)
        md = self.metadata

        self.arch = md["general.architecture"]
        if self.arch not in ARCH_ROPE:
            raise NotImplementedError(f"reference only implements {sorted(ARCH_ROPE)}, got {self.arch!r}")
        # llama.cpp: 'llama' rotates adjacent pairs, 'qwen2' (NeoX style) the two halves of a head
        self.rope_mode = rope_mode or ARCH_ROPE[self.arch]
        a = self.arch

        def get(key, default=None, required=False):
            full = f"{a}.{key}"
            if full in md:
                return md[full]
            if required:
                raise KeyError(f"missing GGUF metadata key {full!r}")
            return default

        self.n_layer = int(get("block_count", required=True))
        self.d_model = int(get("embedding_length", required=True))
        self.d_ff = int(get("feed_forward_length", required=True))
        self.n_head = int(get("attention.head_count", required=True))
        self.n_head_kv = int(get("attention.head_count_kv", self.n_head))
        self.head_dim = int(get("attention.key_length", self.d_model // self.n_head))
        self.head_dim_v = int(get("attention.value_length", self.head_dim))
        self.rope_base = float(get("rope.freq_base", 10000.0))
        self.rope_dim = int(get("rope.dimension_count", self.head_dim))
        self.eps = float(get("attention.layer_norm_rms_epsilon", required=True))
        self.context_length = get("context_length")
        self.is_gemma = self.arch in GEMMA
        self.window = 0
        self.swa = [False] * self.n_layer
        if self.arch == "gemma2":
            self.window = int(get("attention.sliding_window", 4096))
            self.swa = [L % 2 == 0 for L in range(self.n_layer)]
        elif self.arch == "gemma3" and get("attention.sliding_window"):
            self.window = int(get("attention.sliding_window"))
            self.swa = [L % 6 < 5 for L in range(self.n_layer)]
        self.attn_softcap = float(get("attn_logit_softcapping", 50.0)) if self.arch == "gemma2" else 0.0
        default_final = 30.0 if self.arch == "gemma2" else 0.0
        self.final_softcap = float(get("final_logit_softcapping", default_final) or 0.0)
        big = {"gemma2": 46, "gemma3": 62}.get(self.arch)
        per_head = self.d_model / self.n_head if self.n_layer == big else self.head_dim
        self.scale = 1.0 / math.sqrt(per_head)

        scaling_type = get("rope.scaling.type", "none")
        scaling_factor = get("rope.scaling.factor", None)
        if scaling_type in ("none", None) or (scaling_factor in (None, 0.0, 1.0) and scaling_type == "linear"):
            self.rope_freq_scale = 1.0
        elif scaling_type == "linear":
            self.rope_freq_scale = 1.0 / float(scaling_factor)
        else:
            raise NotImplementedError(f"rope scaling type {scaling_type!r} not supported by the reference")

        if self.n_head % self.n_head_kv != 0:
            raise ValueError("n_head must be a multiple of n_head_kv")
        if self.rope_dim % 2 != 0 or self.rope_dim > self.head_dim:
            raise ValueError(f"bad rope dimension count {self.rope_dim} for head_dim {self.head_dim}")

        # ---- tensors: dequantize everything once (stored float32; every
        # supported quant type dequantizes exactly into float32) ----
        self.tensor_types: dict[str, gguf.GGMLQuantizationType] = {}
        self.tensor_gguf_shapes: dict[str, tuple[int, ...]] = {}
        self.tensors: dict[str, np.ndarray] = {}
        for t in reader.tensors:
            arr = gguf.quants.dequantize(t.data, t.tensor_type)
            arr = np.asarray(arr, dtype=np.float32)
            gshape = tuple(int(x) for x in t.shape)  # GGUF order: ne0 first
            expected = tuple(reversed(gshape))       # numpy order
            arr = arr.reshape(expected)
            self.tensors[t.name] = arr
            self.tensor_types[t.name] = t.tensor_type
            self.tensor_gguf_shapes[t.name] = gshape

        if self.arch == "phi3":  # fused matrices, split into llama's names
            nq, nkv = self.n_head * self.head_dim, self.n_head_kv * self.head_dim
            for L in range(self.n_layer):
                p = f"blk.{L}."
                qkv = self.tensors.pop(p + "attn_qkv.weight")
                self.tensors[p + "attn_q.weight"] = qkv[:nq]
                self.tensors[p + "attn_k.weight"] = qkv[nq:nq + nkv]
                self.tensors[p + "attn_v.weight"] = qkv[nq + nkv:]
                gate_up = self.tensors.pop(p + "ffn_up.weight")
                self.tensors[p + "ffn_gate.weight"] = gate_up[: self.d_ff]
                self.tensors[p + "ffn_up.weight"] = gate_up[self.d_ff :]

        tok = self.tensors["token_embd.weight"]
        self.vocab_size = tok.shape[0]
        if tok.shape != (self.vocab_size, self.d_model):
            raise ValueError(f"token_embd has shape {tok.shape}")
        self.tied_output = "output.weight" not in self.tensors
        self._check_shapes()

        # Precompute rope inverse frequencies (float64).
        i = np.arange(self.rope_dim // 2, dtype=np.float64)
        inv_freq = self.rope_base ** (-2.0 * i / self.rope_dim)
        self.mscale = 1.0
        if "rope_freqs.weight" in self.tensors:
            ff = self.tensors["rope_freqs.weight"].astype(np.float64).reshape(-1)[: self.rope_dim // 2]
            inv_freq = inv_freq / ff
        elif "rope_factors_short.weight" in self.tensors:  # phi3 long-context, within the original context
            inv_freq = inv_freq / self.tensors["rope_factors_short.weight"].astype(np.float64).reshape(-1)
            self.mscale = float(get("rope.scaling.attn_factor", 1.0))
        self.inv_freq = inv_freq * self.rope_freq_scale
        # gemma3's sliding-window layers: their own base, no scaling, no factors
        self.inv_freq_swa = 10000.0 ** (-2.0 * i / self.rope_dim) if self.arch == "gemma3" else self.inv_freq

    # ------------------------------------------------------------------
    def _check_shapes(self):
        d, hd, hdv = self.d_model, self.head_dim, self.head_dim_v
        want = {
            "output_norm.weight": (d,),
        }
        for L in range(self.n_layer):
            p = f"blk.{L}."
            want.update({
                p + "attn_norm.weight": (d,),
                p + "attn_q.weight": (self.n_head * hd, d),
                p + "attn_k.weight": (self.n_head_kv * hd, d),
                p + "attn_v.weight": (self.n_head_kv * hdv, d),
                p + "attn_output.weight": (d, self.n_head * hdv),
                p + "ffn_norm.weight": (d,),
                p + "ffn_gate.weight": (self.d_ff, d),
                p + "ffn_up.weight": (self.d_ff, d),
                p + "ffn_down.weight": (d, self.d_ff),
            })
        if not self.tied_output:
            want["output.weight"] = (self.vocab_size, d)
        for name, shape in want.items():
            if name not in self.tensors:
                raise KeyError(f"missing tensor {name}")
            if self.tensors[name].shape != shape:
                raise ValueError(f"{name}: shape {self.tensors[name].shape}, expected {shape}")

    def w(self, name: str) -> np.ndarray:
        """A weight as float64 numpy array (numpy layout, (out, in) for matrices)."""
        return self.tensors[name].astype(np.float64)

    @property
    def output_weight(self) -> np.ndarray:
        return self.tensors["token_embd.weight" if self.tied_output else "output.weight"]

    # ------------------------------------------------------------------
    def half(self, x: np.ndarray) -> np.ndarray:
        """``x`` rounded to float16 (to nearest, ties to even) with a float16 cache, else as it is."""
        if self.kv_cache != "float16":
            return x
        return np.asarray(x, dtype=np.float64).astype(np.float16).astype(np.float64)

    def rms_norm(self, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x: np.ndarray, positions: np.ndarray, inv_freq: np.ndarray | None = None) -> np.ndarray:
        """Apply rotary embedding.  x: [T, n_heads, head_dim]; positions: [T]."""
        x = np.array(x, dtype=np.float64, copy=True)
        inv_freq = self.inv_freq if inv_freq is None else inv_freq
        ang = positions.astype(np.float64)[:, None] * inv_freq[None, :]  # [T, rope_dim/2]
        cos = self.half(np.cos(ang)[:, None, :] * self.mscale)
        sin = self.half(np.sin(ang)[:, None, :] * self.mscale)
        r = self.rope_dim
        if self.rope_mode == "normal":
            x0 = x[..., 0:r:2].copy()
            x1 = x[..., 1:r:2].copy()
            x[..., 0:r:2] = x0 * cos - x1 * sin
            x[..., 1:r:2] = x0 * sin + x1 * cos
        else:  # neox: pairs (j, j + r/2)
            h = r // 2
            x0 = x[..., 0:h].copy()
            x1 = x[..., h:r].copy()
            x[..., 0:h] = x0 * cos - x1 * sin
            x[..., h:r] = x0 * sin + x1 * cos
        return self.half(x)

    def attention(self, x: np.ndarray, L: int, positions: np.ndarray, weights: list | None = None,
                  kv: list | None = None) -> np.ndarray:
        """Self-attention block output (before the residual add).  x: [T, d] (already normed).
        With ``weights`` (a list), the softmaxed scores [n_head, T_q, T_k] are appended to it;
        with ``kv``, the keys (rotated) and values [T, n_head_kv, head_dim] as a cache holds them."""
        T = x.shape[0]
        p = f"blk.{L}."
        q = x @ self.w(p + "attn_q.weight").T
        k = x @ self.w(p + "attn_k.weight").T
        v = x @ self.w(p + "attn_v.weight").T
        if p + "attn_q.bias" in self.tensors:  # qwen2 (and some llama files): biases on q, k, v
            q = q + self.w(p + "attn_q.bias")
            k = k + self.w(p + "attn_k.bias")
            v = v + self.w(p + "attn_v.bias")
        q = q.reshape(T, self.n_head, self.head_dim)
        k = k.reshape(T, self.n_head_kv, self.head_dim)
        v = v.reshape(T, self.n_head_kv, self.head_dim_v)
        if p + "attn_q_norm.weight" in self.tensors:  # qwen3, gemma3: each head normalized on its own
            q = self.rms_norm(q, self.w(p + "attn_q_norm.weight"))
            k = self.rms_norm(k, self.w(p + "attn_k_norm.weight"))
        q, k, v = self.half(q), self.half(k), self.half(v)  # the attention's inputs
        inv_freq = self.inv_freq_swa if self.swa[L] else self.inv_freq
        q = self.rope(q, positions, inv_freq)
        k = self.rope(k, positions, inv_freq)
        if kv is not None:
            kv.append((k, v))

        group = self.n_head // self.n_head_kv
        scale = self.scale
        pos = np.asarray(positions)
        causal = pos[None, :] <= pos[:, None]  # [query, key]
        if self.swa[L] and self.window:
            causal &= (pos[:, None] - pos[None, :]) < self.window
        out = np.empty((T, self.n_head, self.head_dim_v), dtype=np.float64)
        every_head = np.empty((self.n_head, T, T), dtype=np.float64)
        for h in range(self.n_head):
            kvh = h // group
            scores = (q[:, h, :] @ k[:, kvh, :].T) * scale  # [T_q, T_k]
            if self.attn_softcap:
                scores = self.attn_softcap * np.tanh(scores / self.attn_softcap)
            scores = np.where(causal, scores, -np.inf)
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs = probs / probs.sum(axis=-1, keepdims=True)
            every_head[h] = probs
            out[:, h, :] = probs @ v[:, kvh, :]
        if weights is not None:
            weights.append(every_head)
        out = self.half(out.reshape(T, self.n_head * self.head_dim_v))  # the attention's output
        return out @ self.w(p + "attn_output.weight").T

    def mlp(self, x: np.ndarray, L: int) -> np.ndarray:
        p = f"blk.{L}."
        gate = x @ self.w(p + "ffn_gate.weight").T
        up = x @ self.w(p + "ffn_up.weight").T
        if self.is_gemma:  # GELU, tanh form
            act = 0.5 * gate * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (gate + 0.044715 * gate**3)))
        else:
            act = gate / (1.0 + np.exp(-gate))
        return (act * up) @ self.w(p + "ffn_down.weight").T

    def hidden_states(self, token_ids, positions=None, attention: list | None = None,
                      kv: list | None = None) -> list[np.ndarray]:
        """Residual stream after embedding and after every layer: list of n_layer+1 [T, d] arrays.
        With ``attention`` (a list), every layer's attention weights [n_head, T_q, T_k] are appended to it;
        with ``kv``, every layer's keys and values (see :meth:`attention`)."""
        ids = np.asarray(list(token_ids), dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ValueError("token_ids must be a non-empty 1-D sequence")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError("token id out of range")
        T = ids.size
        positions = np.arange(T) if positions is None else np.asarray(positions)
        x = self.tensors["token_embd.weight"][ids].astype(np.float64)
        if self.is_gemma:
            x = x * math.sqrt(self.d_model)
        states = [x]
        for L in range(self.n_layer):
            p = f"blk.{L}."
            h = self.rms_norm(x, self.w(p + "attn_norm.weight"))
            a = self.attention(h, L, positions, attention, kv)
            if p + "post_attention_norm.weight" in self.tensors:
                a = self.rms_norm(a, self.w(p + "post_attention_norm.weight"))
            x = x + a
            h = self.rms_norm(x, self.w(p + "ffn_norm.weight"))
            f = self.mlp(h, L)
            if p + "post_ffw_norm.weight" in self.tensors:
                f = self.rms_norm(f, self.w(p + "post_ffw_norm.weight"))
            x = x + f
            states.append(x)
        return states

    def forward(self, token_ids, positions=None) -> np.ndarray:
        """Logits [len(token_ids), vocab] (float64) for every position.

        ``positions`` defaults to ``0..T-1``; passing explicit positions is
        only useful for self-checks (e.g. rotary position-shift invariance).
        """
        return self.head(self.hidden_states(token_ids, positions)[-1])

    __call__ = forward

    def head(self, x: np.ndarray) -> np.ndarray:
        """Logits of residual-stream states ``x`` [..., d]: final norm, output
        matrix, final soft-cap (the logit lens, applied to a layer's states)."""
        x = self.rms_norm(np.asarray(x, dtype=np.float64), self.w("output_norm.weight"))
        logits = x @ self.output_weight.astype(np.float64).T
        if self.final_softcap:
            logits = self.final_softcap * np.tanh(logits / self.final_softcap)
        return logits

    def inspect(self, token_ids, query: int) -> dict:
        """Inside the model at position ``query``: ``hidden`` [n_layer + 1, d]
        (the residual after the embeddings and each layer), ``lens`` [n_layer,
        vocab] (the head applied to the residual after each layer: logits) and
        ``attention`` [n_layer, n_head, query + 1] (the query's weights over
        keys 0..query). Only the tokens up to ``query`` are run: later ones
        cannot change it (causality)."""
        ids = list(token_ids)[: query + 1]
        weights: list[np.ndarray] = []
        states = self.hidden_states(ids, attention=weights)
        hidden = np.stack([s[query] for s in states])
        return {"hidden": hidden, "lens": self.head(hidden[1:]),
                "attention": np.stack([w[:, query, :] for w in weights])}


# ----------------------------------------------------------------------
# Independent tokenizer oracle (HF ``tokenizers``) for gpt2-style GGUF vocabs
# ----------------------------------------------------------------------
def build_hf_tokenizer(metadata: dict):
    """Build a ``tokenizers.Tokenizer`` from GGUF ``tokenizer.ggml.*`` metadata.

    Only ``tokenizer.ggml.model == 'gpt2'`` (byte-level BPE).  Tokens of type
    CONTROL (3) / USER_DEFINED (4) are registered as special tokens so text
    like ``<|im_start|>`` maps to its single id.  For ``pre == 'smollm'`` the
    HF SmolLM pre-tokenizer (individual digits, then byte-level) is used;
    otherwise plain GPT-2 byte-level splitting.
    """
    from tokenizers import Tokenizer, AddedToken, decoders, models, pre_tokenizers

    if metadata.get("tokenizer.ggml.model") != "gpt2":
        raise NotImplementedError("only gpt2-style BPE vocabularies are supported")
    tokens = list(metadata["tokenizer.ggml.tokens"])
    types = list(metadata.get("tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in metadata["tokenizer.ggml.merges"]]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if metadata.get("tokenizer.ggml.pre") == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    specials = [AddedToken(t, special=True, normalized=False)
                for t, ty in zip(tokens, types) if int(ty) in (3, 4)]
    tok.add_special_tokens(specials)
    for t in specials:
        assert tok.token_to_id(t.content) == vocab[t.content]
    return tok

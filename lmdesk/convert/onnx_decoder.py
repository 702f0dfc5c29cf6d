"""Build the ONNX graph of a decoder-only transformer with a KV cache.

The graph follows the layout of onnxruntime-genai's decoders, so the same
runtime code serves imported GGUF models and ONNX folders made elsewhere:

inputs
    ``input_ids`` int64 ``[batch, seq]``, ``attention_mask`` int64
    ``[batch, past + seq]``, ``past_key_values.N.key`` / ``.value`` float32
    (or float16, below) ``[batch, kv_heads, past, head_dim]``
outputs
    ``logits`` float32 ``[batch, seq, vocab]`` (every position),
    ``present.N.key`` / ``.value`` (as the past) ``[batch, kv_heads, past + seq, head_dim]``

Operators are those onnxruntime's CPU provider runs fused:
``GroupQueryAttention`` (with rotary embedding inside), ``MatMulNBits``,
``SkipSimplifiedLayerNormalization``. Weights come from :mod:`quant_repack`.

With ``DecoderConfig.kv_dtype == "float16"`` the cache is float16 and so is
``GroupQueryAttention``: its q, k and v are cast to float16, its cos and sin
tables too (folded at load), and its output back to float32; everything else
stays float32. onnxruntime's CPU kernel (x86) then rounds the rotated q and k
to float16 (the keys as the cache keeps them), computes the scores, the
softmax and the weighted sum of the values in float32, and rounds the output
to float16 (contrib_ops/cpu/bert/gqa_attention_base.h, mlas rotary_embedding).
The cache takes half the memory and decoding at a long document reads half
the bytes.

:func:`build_graphs` makes a second graph beside it, the inspection graph:
the same nodes and weights (the two files share one weights file) and, for
the last position of its input, three more outputs (see
:mod:`lmdesk.engine.model_format`): the residual stream after the embeddings
and after every block, the logit lens (the final norm and the output head,
soft-cap included, applied to the residual after each block; the last row is
the model's own normalized state, so its logits are the model's) and every
layer's attention weights. ``GroupQueryAttention`` does not give its weights;
they are computed again from plain operators, from the same query (rotated by
the same cos and sin tables) and the rotated keys GroupQueryAttention keeps in
its present cache: scale, soft-cap, the sliding window, a softmax. Decoding
never runs the inspection graph, so it costs decoding nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from ..engine.model_format import (
    ATTENTION_MASK, INPUT_IDS, INSPECT_ATTENTION, INSPECT_HIDDEN, INSPECT_LENS, LOGITS, past_key, past_value,
    present_key, present_value,
)
from .quant_repack import (
    BLOCK, BlockEmbedding, DenseWeight, Factors, Int4Weight, LinearWeight, concat_linear, pack_pairs,
)

MS_DOMAIN = "com.microsoft"
OPSET = 21



@dataclass
class DecoderConfig:
    n_layer: int
    d_model: int
    n_head: int
    n_head_kv: int
    head_dim: int
    d_ff: int
    vocab_size: int
    max_positions: int  # rows of the rotary cache: longest document the graph accepts
    rms_eps: float
    inv_freq: np.ndarray  # float64 [rope_dim / 2]: angle of pair i at position p is p * inv_freq[i]
    rope_interleaved: bool  # True: rotate (x[2i], x[2i+1]) as llama.cpp's llama; False: NeoX halves
    accuracy_level: int = 0  # MatMulNBits: 0 = float32 compute (exact); 4 = int8 activations (fast)
    # -- what other families add to the llama block (see lmdesk.convert.architectures) --
    activation: str = "silu"  # gated feed-forward: "silu" (llama) or "gelu_tanh" (gemma)
    embed_scale: float | None = None  # the embeddings times this (gemma: sqrt(d_model)), or None
    attn_scale: float | None = None  # scores times this; None: 1/sqrt(head_dim)
    attn_softcap: float = 0.0  # scores -> c * tanh(scores / c) when > 0 (gemma 2)
    final_softcap: float = 0.0  # logits -> c * tanh(logits / c) when > 0 (gemma 2)
    sliding_window: int = 0  # keys a sliding-window layer sees, the query's own included; 0: none
    swa_layers: tuple[bool, ...] = ()  # per layer: True where the layer attends through the window
    inv_freq_swa: np.ndarray | None = None  # rotary of the sliding-window layers, when it differs
    rope_mscale: float = 1.0  # cos and sin times this (Phi-3's long-context attn_factor)
    kv_dtype: str = "float32"  # the KV cache and GroupQueryAttention: "float32", or "float16" (see the module text)


@dataclass
class LayerWeights:
    attn_norm: np.ndarray
    q: LinearWeight
    k: LinearWeight
    v: LinearWeight
    o: LinearWeight
    ffn_norm: np.ndarray
    gate: LinearWeight
    up: LinearWeight
    down: LinearWeight
    qkv_bias: np.ndarray | None = None  # float32 [q | k | v] biases (qwen2), or None
    q_norm: np.ndarray | None = None  # RMSNorm weight [head_dim] of every query head (gemma 3, qwen 3)
    k_norm: np.ndarray | None = None
    post_attn_norm: np.ndarray | None = None  # RMSNorm of the attention output before the residual (gemma 2/3)
    post_ffn_norm: np.ndarray | None = None  # RMSNorm of the feed-forward output before the residual


@dataclass
class DecoderWeights:
    embed: np.ndarray | BlockEmbedding  # float32 [vocab, d_model], or blocks of 8 or 4 bits
    layers: Iterable[LayerWeights]  # read once, in order (an iterator when streaming)
    out_norm: np.ndarray
    output: LinearWeight | None  # None: tied to the embedding (see _Builder.output_from_embedding)
    tied_pieces: bool = False  # tied to an 8-bit table: the product in 4-bit pieces made from the table itself
    tied_eight: bool = False  # tied to an 8-bit table, int8 activations: an 8-bit product of the table's own bytes
    # a 4-bit table whose bytes are the 4-bit output product's (quant_repack.shares_nibbles): stored once
    embed_in_output: bool = False


@dataclass
class _Graph:
    """Collects nodes and initializers, naming values uniquely."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    inits: list[onnx.TensorProto] = field(default_factory=list)
    _count: int = 0
    _consts: dict[tuple, str] = field(default_factory=dict)
    _names: set[str] = field(default_factory=set)
    # an open binary file, named ``location`` beside the graph: each initializer
    # of 1 kB or more is written there as soon as it is made (onnx's own rule and
    # order, so the file is the one onnx.save_model would write), not kept
    sink: BinaryIO | None = None
    location: str = ""

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}/{self._count}"

    def init(self, name: str, array: np.ndarray, data_type: int | None = None) -> str:
        """The constant ``name`` (of the onnx type ``data_type`` when given:
        bfloat16 from its uint16 bits). A name asked for again is the same
        weight (the output head, built once for each graph of
        :func:`build_graphs`): it is stored once."""
        if name in self._names:
            return name
        self._names.add(name)
        # asarray, not ascontiguousarray: a 0-d array stays a scalar (Range takes only scalars)
        tensor = numpy_helper.from_array(np.asarray(array, order="C"), name)
        if data_type is not None:
            tensor.data_type = data_type
        if self.sink is not None and sys.getsizeof(tensor.raw_data) >= 1024:
            offset = self.sink.tell()
            self.sink.write(tensor.raw_data)
            set_external_data(tensor, self.location, offset, len(tensor.raw_data))
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
        self.inits.append(tensor)
        return name

    def init_half(self, name: str, array: np.ndarray) -> str | None:
        """The float32 ``array`` as a 16-bit constant holding the same
        numbers: float16 (``name.f16``) when every value is a float16 number
        (GGUF's block scales, an F16 table), else bfloat16 (``name.bf16``)
        when every value is a bfloat16 one (a BF16 table); None otherwise."""
        array = np.ascontiguousarray(array, dtype=np.float32)
        half = array.astype(np.float16)
        if np.isfinite(half).all() and np.array_equal(half.astype(np.float32), array):
            return self.init(f"{name}.f16", half)
        bits = array.view(np.uint32)
        if not (bits & 0xFFFF).any():  # bfloat16 is the top half of a float32
            return self.init(f"{name}.bf16", (bits >> 16).astype(np.uint16), TensorProto.BFLOAT16)
        return None

    def init_compact(self, name: str, array: np.ndarray) -> str:
        """A float32 constant, kept in the file in 16 bits when its values
        are 16-bit numbers (:meth:`init_half`) and widened by a Cast that the
        session folds once when it starts: the values the graph computes with
        are the same float32 numbers, the file is half as large. (Widening
        each time instead, to keep 16 bits in memory, was measured 17 times
        slower: a decode step of ten 1024 x 4096 matrices 270 instead of
        15 ms, onnxruntime 1.31, 2 threads.)"""
        half = self.init_half(name, array)
        if half is None:
            return self.init(name, np.ascontiguousarray(array, dtype=np.float32))
        return self.op1("Cast", [half], name, to=TensorProto.FLOAT)

    def init_factored(self, name: str, array: np.ndarray, parts: Factors | None) -> str:
        """Per-block float32 values (``array``, ``n`` rows) stored as their
        :class:`Factors` and multiplied by constant operators the session
        folds at load (the same float32 products), when ``parts`` gives them
        back exactly; else :meth:`init_compact`."""
        array = np.ascontiguousarray(array, dtype=np.float32)
        if parts is None or not np.array_equal(parts.values().reshape(array.shape), array):
            return self.init_compact(name, array)
        n, groups = parts.coarse.shape
        coarse = self.op1("Cast", [self.init(f"{name}.coarse.f16", parts.coarse[:, :, None])], name,
                          to=TensorProto.FLOAT)
        fine = self.op1("Cast", [self.init(f"{name}.fine.i8", parts.fine.reshape(n, groups, -1))], name,
                        to=TensorProto.FLOAT)
        return self.op1("Reshape", [self.op1("Mul", [coarse, fine], name), self.const_i64(list(array.shape))], name)

    def const_f32(self, value: float) -> str:
        key = ("f32", value)
        if key not in self._consts:
            self._consts[key] = self.init(f"const/f32/{value}", np.array(value, np.float32))
        return self._consts[key]

    def const_i64(self, values: list[int]) -> str:
        key = ("i64", tuple(values))
        if key not in self._consts:
            self._consts[key] = self.init(f"const/i64/{'_'.join(map(str, values))}", np.array(values, np.int64))
        return self._consts[key]

    def op(self, op_type: str, inputs: list[str], hint: str, n_out: int = 1, domain: str | None = None, **attrs) -> list[str]:
        outs = [self.fresh(f"{hint}/{op_type}/out{j}") for j in range(n_out)]
        self.nodes.append(
            helper.make_node(op_type, inputs, outs, name=self.fresh(f"{hint}/{op_type}"), domain=domain, **attrs)
        )
        return outs

    def op1(self, op_type: str, inputs: list[str], hint: str, domain: str | None = None, **attrs) -> str:
        return self.op(op_type, inputs, hint, 1, domain, **attrs)[0]


@dataclass
class _LayerTaps:
    """What the inspection reads of one layer."""

    query: str  # GroupQueryAttention's first input: q (or q, k and v packed) before the rotary
    present_key: str  # its present keys, rotated
    cos: str  # the rotary tables the layer uses
    sin: str
    sliding: bool  # the layer attends through the sliding window


@dataclass
class _Taps:
    """Values of the decoder's body the inspection graph reads."""

    residuals: list[str]  # [batch, seq, d_model]: after the embeddings, then after each block
    layers: list[_LayerTaps] = field(default_factory=list)
    final: str = ""  # the final norm of the last residual
    out_norm: np.ndarray | None = None


class _Builder:
    def __init__(self, cfg: DecoderConfig, sink: BinaryIO | None = None, location: str = "") -> None:
        self.cfg = cfg
        self.g = _Graph(sink=sink, location=location)
        # a tied 8-bit table: its data, scales, block and offset (or None), for the output product
        self._embed8: tuple[str, str, int, str | None] | None = None
        self._tied_pieces: tuple[str, str, int, str | None] | None = None
        self._tied_eight: tuple[str, str, int, str | None] | None = None  # (data, flat scales, block, offset)
        self._embed_table: str | None = None  # a float table: float32, or 16-bit (widened by a Cast for the product)
        self._embed_half = False
        self._blocksums: dict[tuple[str, int], str] = {}
        self._repeats: dict[tuple[str, int], str] = {}

    # -- linear layers ---------------------------------------------------
    def blocksum(self, x: str, k: int, block: int = BLOCK) -> str:
        """Sum of each run of ``block`` inputs: ``[.., K] -> [.., K/block]`` (shared per input)."""
        if (x, block) not in self._blocksums:
            shaped = self.g.op1("Reshape", [x, self.g.const_i64([0, 0, k // block, block])], "blocksum")
            self._blocksums[(x, block)] = self.g.op1(
                "ReduceSum", [shaped, self.g.const_i64([-1])], "blocksum", keepdims=0
            )
        return self._blocksums[(x, block)]

    def repeated(self, x: str, times: int) -> str:
        """``[x, x, ...]`` along the last axis: the input of a weight in pieces (shared per input)."""
        if times == 1:
            return x
        if (x, times) not in self._repeats:
            self._repeats[(x, times)] = self.g.op1("Concat", [x] * times, "pieces", axis=-1)
        return self._repeats[(x, times)]

    def linear(self, x: str, w: LinearWeight, name: str) -> str:
        n, k = w.shape
        if isinstance(w, Int4Weight):
            qw = self.g.init(f"{name}.qweight", w.packed)
            sc = self.g.init_compact(f"{name}.scales", w.scales.reshape(-1))
            y = self.g.op1(
                "MatMulNBits", [self.repeated(x, w.pieces), qw, sc], name, domain=MS_DOMAIN,
                K=k * w.pieces, N=n, bits=w.bits, block_size=w.block, accuracy_level=self.cfg.accuracy_level,
            )
            if w.correction is not None:
                corr = self.block_offset(w, sc, name)
                sums = self.repeated(self.blocksum(x, k, w.block), w.correction_parts)
                y = self.g.op1("Add", [y, self.g.op1("MatMul", [sums, corr], name)], name)
            return y
        assert isinstance(w, DenseWeight)
        wt = self.g.init_compact(f"{name}.weight_t", w.matrix.T)
        return self.g.op1("MatMul", [x, wt], name)

    def block_offset(self, w: Int4Weight, scales: str, name: str) -> str:
        """The Q4_1 correction ``m + 8 d`` ([K/32, N]). Where GGUF's float16
        ``m`` is at hand it is rebuilt from ``m`` and the scales by constant
        operators the session folds at start-up (float32 arithmetic, the same
        numbers as :func:`quant_repack.repack_linear` computes); otherwise it
        is stored as it is."""
        g = self.g
        n, k = w.shape
        if w.block_min is None or not np.array_equal(
            w.block_min.astype(np.float32) + np.float32(8.0) * w.scales.T, w.correction
        ):
            return g.init(f"{name}.block_offset", w.correction)
        d = g.op1("Transpose", [g.op1("Reshape", [scales, g.const_i64([n, k // BLOCK])], name)], name, perm=[1, 0])
        m = g.op1("Cast", [g.init(f"{name}.block_min.f16", w.block_min)], name, to=TensorProto.FLOAT)
        return g.op1("Add", [m, g.op1("Mul", [d, g.const_f32(8.0)], name)], f"{name}.block_offset")

    def stacked_linear(self, x: str, ws: list[LinearWeight], name: str) -> str:
        """Several projections of one input, concatenated along the last axis;
        one operator when their weight kinds allow it."""
        fused = concat_linear(ws)
        if fused is not None:
            return self.linear(x, fused, name)
        parts = [self.linear(x, w, f"{name}.{j}") for j, w in enumerate(ws)]
        return self.g.op1("Concat", parts, name, axis=-1)

    def rotary_tables(self, inv_freq: np.ndarray, name: str = "rotary") -> tuple[str, str]:
        """The cos and sin of angle ``p * inv_freq[i]`` for every position p:
        float32 ``[max_positions, rope_dim / 2]`` tables computed by constant
        nodes that the session folds when it starts, in float64 and then
        rounded, the very numbers ``np.cos(angles).astype(np.float32)`` gives
        (a test checks it). The file holds 32 frequencies instead of two
        tables of 1 MB each."""
        g, cfg = self.g, self.cfg
        positions = g.op1("Range", [g.init(f"{name}.start", np.array(0.0)),
                                    g.init(f"{name}.limit", np.array(float(cfg.max_positions))),
                                    g.init(f"{name}.delta", np.array(1.0))], name)
        angles = g.op1("Mul", [g.op1("Unsqueeze", [positions, g.const_i64([1])], name),
                               g.init(f"{name}.inv_freq", np.asarray(inv_freq, np.float64)[None, :])], name)
        cos = g.op1("Cast", [g.op1("Cos", [angles], name)], name, to=TensorProto.FLOAT)
        sin = g.op1("Cast", [g.op1("Sin", [angles], name)], name, to=TensorProto.FLOAT)
        if cfg.rope_mscale != 1.0:  # as llama.cpp: cos(theta) * mscale in float32
            m = g.const_f32(float(np.float32(cfg.rope_mscale)))
            cos, sin = g.op1("Mul", [cos, m], name), g.op1("Mul", [sin, m], name)
        return cos, sin

    # -- the network -------------------------------------------------------
    def build(self, w: DecoderWeights, inspector: bool = False) -> tuple[onnx.ModelProto, onnx.ModelProto | None]:
        """The decoder, and with ``inspector`` the inspection graph beside it
        (see the module text); both name the same weights."""
        cfg, g = self.cfg, self.g
        hd, kvh = cfg.head_dim, cfg.n_head_kv

        inputs = [
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "total_seq"]),
        ]
        outputs = [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", "seq", cfg.vocab_size])]
        kv_type = self.kv_type()
        for i in range(cfg.n_layer):
            for nm in (past_key(i), past_value(i)):
                inputs.append(helper.make_tensor_value_info(nm, kv_type, ["batch", kvh, "past_seq", hd]))
            for nm in (present_key(i), present_value(i)):
                outputs.append(helper.make_tensor_value_info(nm, kv_type, ["batch", kvh, "total_seq", hd]))

        taps = self.body(w)
        body_nodes = list(g.nodes)
        logits = self.head(taps.final, w)
        g.nodes.append(helper.make_node("Identity", [logits], [LOGITS], name="logits"))
        decoder = self.model(g.nodes, "lmdesk-decoder", inputs, outputs)
        if not inspector:
            return decoder, None

        g.nodes = body_nodes  # the same computation, then the inspection's own outputs
        self.inspection(taps, w)
        outputs = outputs[1:] + [
            helper.make_tensor_value_info(INSPECT_HIDDEN, TensorProto.FLOAT, [cfg.n_layer + 1, cfg.d_model]),
            helper.make_tensor_value_info(INSPECT_LENS, TensorProto.FLOAT, [cfg.n_layer, cfg.vocab_size]),
            helper.make_tensor_value_info(INSPECT_ATTENTION, TensorProto.FLOAT,
                                          [cfg.n_layer, cfg.n_head, "total_seq"]),
        ]
        return decoder, self.model(g.nodes, "lmdesk-inspect", inputs, outputs)

    def model(self, nodes: list, name: str, inputs: list, outputs: list) -> onnx.ModelProto:
        """A model of ``nodes`` with the initializers they use (each graph only its own)."""
        used = {x for node in nodes for x in node.input}
        inits = [t for t in self.g.inits if t.name in used]
        graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
            producer_name="lmdesk",
        )
        model.ir_version = 10
        return model

    def body(self, w: DecoderWeights) -> _Taps:
        """Every block, up to the final norm; what the inspection reads on the way."""
        cfg, g = self.cfg, self.g
        hd, kvh = cfg.head_dim, cfg.n_head_kv
        # what GroupQueryAttention needs to know about the mask
        mask_sum = g.op1("ReduceSum", [ATTENTION_MASK, g.const_i64([1])], "mask", keepdims=0)
        seqlens_k = g.op1("Cast", [g.op1("Sub", [mask_sum, g.const_i64([1])], "mask")], "mask", to=TensorProto.INT32)
        total_len = g.op1(
            "Cast",
            [g.op1("Squeeze", [g.op1("Shape", [ATTENTION_MASK], "mask", start=1, end=2), g.const_i64([0])], "mask")],
            "mask",
            to=TensorProto.INT32,
        )
        rotary = self.attention_tables(self.rotary_tables(cfg.inv_freq))
        rotary_swa = rotary
        if cfg.inv_freq_swa is not None and any(cfg.swa_layers):
            rotary_swa = self.attention_tables(self.rotary_tables(cfg.inv_freq_swa, "rotary_swa"))

        if isinstance(w.embed, BlockEmbedding) and w.tied_pieces:
            h = self.embed_from_pieces(w.embed)
        elif isinstance(w.embed, BlockEmbedding):
            h = self.embed_blocks(w.embed, w)
        else:
            h = self.embed_float(w.embed)
        if cfg.embed_scale is not None:
            h = g.op1("Mul", [h, g.const_f32(float(np.float32(cfg.embed_scale)))], "embed")

        taps = _Taps(residuals=[h])
        residual = h
        pending: str | None = None  # output of the previous sub-layer, not yet added to the residual
        for i, lw in enumerate(w.layers):
            p = f"blk.{i}"
            swa = bool(cfg.swa_layers and cfg.swa_layers[i] and cfg.sliding_window)
            cos, sin = rotary_swa if swa else rotary
            normed, residual = self.norm(pending, residual, lw.attn_norm, f"{p}.attn_norm")
            if i > 0:
                taps.residuals.append(residual)  # the residual after block i - 1
            qkv = self.stacked_linear(normed, [lw.q, lw.k, lw.v], f"{p}.attn_qkv")
            if lw.qkv_bias is not None:
                qkv = g.op1("Add", [qkv, g.init_compact(f"{p}.attn_qkv.bias", lw.qkv_bias)], f"{p}.attn_qkv")
            if lw.q_norm is not None:  # per-head RMSNorm of q and k, before the rotary embedding
                q, k, v = g.op("Split", [qkv, g.const_i64([cfg.n_head * hd, kvh * hd, kvh * hd])], f"{p}.attn_qkv",
                               n_out=3, axis=-1)
                attn_in = [self.head_norm(q, cfg.n_head, lw.q_norm, f"{p}.attn_q_norm"),
                           self.head_norm(k, kvh, lw.k_norm, f"{p}.attn_k_norm"), v]
            else:
                attn_in = [qkv, "", ""]
            attn_in = [self.to_attention(x, f"{p}.attn") for x in attn_in]
            extra = {"softcap": float(cfg.attn_softcap)} if cfg.attn_softcap > 0 else {}
            if swa:  # onnxruntime's window: the keys a query sees, itself included (measured on 1.31)
                extra["local_window_size"] = int(cfg.sliding_window)
            attn, pk, pv = g.op(
                "GroupQueryAttention",
                [*attn_in, past_key(i), past_value(i), seqlens_k, total_len, cos, sin],
                f"{p}.attn",
                n_out=3,
                domain=MS_DOMAIN,
                num_heads=cfg.n_head,
                kv_num_heads=kvh,
                scale=self.attn_scale(),
                do_rotary=1,
                rotary_interleaved=int(cfg.rope_interleaved),
                **extra,
            )
            taps.layers.append(_LayerTaps(attn_in[0], pk, cos, sin, swa))
            g.nodes.append(helper.make_node("Identity", [pk], [present_key(i)], name=f"{p}.present_key"))
            g.nodes.append(helper.make_node("Identity", [pv], [present_value(i)], name=f"{p}.present_value"))
            pending = self.linear(self.from_attention(attn, f"{p}.attn"), lw.o, f"{p}.attn_output")
            if lw.post_attn_norm is not None:
                pending = self.plain_norm(pending, lw.post_attn_norm, f"{p}.post_attention_norm")

            normed, residual = self.norm(pending, residual, lw.ffn_norm, f"{p}.ffn_norm")
            gate_up = self.stacked_linear(normed, [lw.gate, lw.up], f"{p}.ffn_gate_up")
            gate, up = g.op("Split", [gate_up, g.const_i64([cfg.d_ff, cfg.d_ff])], f"{p}.ffn", n_out=2, axis=-1)
            if cfg.activation == "gelu_tanh":
                act = g.op1("Gelu", [gate], f"{p}.ffn", approximate="tanh")
            else:
                act = g.op1("Mul", [gate, g.op1("Sigmoid", [gate], f"{p}.ffn")], f"{p}.ffn")
            pending = self.linear(g.op1("Mul", [act, up], f"{p}.ffn"), lw.down, f"{p}.ffn_down")
            if lw.post_ffn_norm is not None:
                pending = self.plain_norm(pending, lw.post_ffn_norm, f"{p}.post_ffw_norm")

        taps.final, residual = self.norm(pending, residual, w.out_norm, "output_norm")
        taps.residuals.append(residual)
        taps.out_norm = w.out_norm
        return taps

    def attn_scale(self) -> float:
        cfg = self.cfg
        return float(cfg.attn_scale if cfg.attn_scale is not None else 1.0 / np.sqrt(cfg.head_dim))

    # -- the attention's number type (float32, or float16 with the cache) --------
    def half(self) -> bool:
        return self.cfg.kv_dtype == "float16"

    def kv_type(self) -> int:
        if self.cfg.kv_dtype not in ("float32", "float16"):
            raise ValueError(f"a KV cache of {self.cfg.kv_dtype!r}: float32 or float16")
        return TensorProto.FLOAT16 if self.half() else TensorProto.FLOAT

    def to_attention(self, x: str, name: str) -> str:
        """``x`` in GroupQueryAttention's number type (an absent input stays absent)."""
        return self.g.op1("Cast", [x], name, to=TensorProto.FLOAT16) if x and self.half() else x

    def from_attention(self, x: str, name: str) -> str:
        """A value of GroupQueryAttention's number type as float32."""
        return self.g.op1("Cast", [x], name, to=TensorProto.FLOAT) if self.half() else x

    def attention_tables(self, tables: tuple[str, str]) -> tuple[str, str]:
        """The rotary cos and sin as GroupQueryAttention takes them (its inputs
        share one type): with a float16 cache, the float32 tables rounded to
        float16 by a Cast the session folds at load."""
        return tuple(self.to_attention(t, "rotary") for t in tables)

    def half_rounded(self, x: str, name: str) -> str:
        """With a float16 cache, float32 ``x`` rounded to float16 (and float32
        again): what GroupQueryAttention stores of a value it computed in float32."""
        if not self.half():
            return x
        return self.from_attention(self.to_attention(x, name), name)

    def head(self, final: str, w: DecoderWeights) -> str:
        """The logits of the normalized state ``final`` ``[batch, seq, d_model]``:
        the output product and the final soft-cap."""
        g, cfg = self.g, self.cfg
        if w.output is None and self._tied_pieces is not None:
            logits = self.output_from_pieces(final)
        elif w.output is None and self._tied_eight is not None:
            logits = self.output_eight(final)
        elif w.output is None:
            flat = g.op1("Reshape", [final, g.const_i64([-1, cfg.d_model])], "output")
            y = g.op1("Gemm", [flat, self.output_from_embedding()], "output", transB=1)
            lead = g.op1("Shape", [final], "output", start=0, end=-1)
            logits = g.op1("Reshape", [y, g.op1("Concat", [lead, g.const_i64([cfg.vocab_size])], "output", axis=0)],
                           "output")
        else:
            logits = self.linear(final, w.output, "output")
        if cfg.final_softcap > 0:
            c = float(cfg.final_softcap)
            scaled = g.op1("Mul", [logits, g.const_f32(float(np.float32(1.0 / c)))], "softcap")
            logits = g.op1("Mul", [g.op1("Tanh", [scaled], "softcap"), g.const_f32(c)], "softcap")
        return logits

    # -- the inspection graph ------------------------------------------------
    def inspection(self, taps: _Taps, w: DecoderWeights) -> None:
        """The inspection's outputs for the last position of the input (batch 1)."""
        g, cfg = self.g, self.cfg
        d = cfg.d_model
        rows = [self.last_row(r, "inspect.hidden") for r in taps.residuals]  # [1, 1, d] each
        hidden = g.op1("Concat", rows, "inspect.hidden", axis=1)
        g.nodes.append(helper.make_node("Reshape", [hidden, g.const_i64([cfg.n_layer + 1, d])], [INSPECT_HIDDEN],
                                        name="inspect.hidden"))
        # the lens: block l's residual through the final norm and the head; block L's normalized
        # state is the decoder's own (the fused norm of the last sub-layer's output and the residual)
        lens = [self.plain_norm(r, taps.out_norm, "output_norm") for r in rows[1:-1]]
        lens.append(self.last_row(taps.final, "inspect.lens"))
        stacked = g.op1("Concat", lens, "inspect.lens", axis=1) if len(lens) > 1 else lens[0]
        if w.output is None and self._embed8 is not None and self._tied_pieces is None:
            # a tied 8-bit table that the decoder widens into one float32 matrix at load
            # (SmolLM2's 113 MB): here, its 4-bit pieces, cut from the table by constant
            # operators that the session folds (28 MB), not a second float copy
            self._tied_pieces = self.pieces_from_table(*self._embed8)
        logits = self.head(stacked, w)
        g.nodes.append(helper.make_node("Reshape", [logits, g.const_i64([cfg.n_layer, cfg.vocab_size])],
                                        [INSPECT_LENS], name="inspect.lens"))
        weights = [self.attention_weights(t, f"inspect.attention.{i}") for i, t in enumerate(taps.layers)]
        g.nodes.append(helper.make_node("Concat", weights, [INSPECT_ATTENTION], name="inspect.attention", axis=0))

    def last_row(self, x: str, name: str) -> str:
        """``x[:, -1:]``: the last position of ``[batch, seq, n]``."""
        g = self.g
        return g.op1("Slice", [x, g.const_i64([-1]), g.const_i64([2**62]), g.const_i64([1])], name)

    def attention_weights(self, t: _LayerTaps, name: str) -> str:
        """The softmaxed scores ``[1, n_head, total_seq]`` of the last query over every key, as
        GroupQueryAttention computes them: the query rotated at its position, the keys
        as the present cache holds them (rotated), scaled, soft-capped and windowed;
        in float32 (from float16 query, tables and keys with a float16 cache)."""
        g, cfg = self.g, self.cfg
        hd, heads, kvh = cfg.head_dim, cfg.n_head, cfg.n_head_kv
        total = g.op1("Squeeze", [g.op1("Shape", [ATTENTION_MASK], name, start=1, end=2), g.const_i64([0])], name)
        position = g.op1("Sub", [total, g.const_i64([1])], name)  # int64 scalar: the query's position
        q = g.op1("Slice", [t.query, g.const_i64([0]), g.const_i64([heads * hd]), g.const_i64([2])], name)
        q = self.from_attention(g.op1("Reshape", [self.last_row(q, name), g.const_i64([heads, hd])], name), name)
        cos = self.from_attention(g.op1("Gather", [t.cos, position], name, axis=0), name)  # [hd / 2]
        sin = self.from_attention(g.op1("Gather", [t.sin, position], name, axis=0), name)
        if cfg.rope_interleaved:  # (x[2i], x[2i + 1])
            pairs = g.op1("Reshape", [q, g.const_i64([heads, hd // 2, 2])], name)
            x0, x1 = g.op("Split", [pairs, g.const_i64([1, 1])], name, n_out=2, axis=-1)
            cos = g.op1("Unsqueeze", [cos, g.const_i64([-1])], name)
            sin = g.op1("Unsqueeze", [sin, g.const_i64([-1])], name)
        else:  # NeoX: (x[i], x[i + hd / 2])
            x0, x1 = g.op("Split", [q, g.const_i64([hd // 2, hd // 2])], name, n_out=2, axis=-1)
        # rotated in float32; in float16, GroupQueryAttention rounds the rotated query as it does the keys
        r0 = self.half_rounded(g.op1("Sub", [g.op1("Mul", [x0, cos], name), g.op1("Mul", [x1, sin], name)], name), name)
        r1 = self.half_rounded(g.op1("Add", [g.op1("Mul", [x0, sin], name), g.op1("Mul", [x1, cos], name)], name), name)
        q = g.op1("Reshape", [g.op1("Concat", [r0, r1], name, axis=-1), g.const_i64([kvh, heads // kvh, hd])], name)

        keys = g.op1("Slice", [t.present_key, g.const_i64([0]), g.op1("Unsqueeze", [total, g.const_i64([0])], name),
                               g.const_i64([2])], name)  # [1, kvh, total, hd]: the cache may be longer
        keys = self.from_attention(g.op1("Squeeze", [keys, g.const_i64([0])], name), name)
        scores = g.op1("MatMul", [q, g.op1("Transpose", [keys], name, perm=[0, 2, 1])], name)  # [kvh, group, total]
        scores = g.op1("Mul", [g.op1("Reshape", [scores, g.const_i64([1, heads, -1])], name),
                               g.const_f32(self.attn_scale())], name)
        if cfg.attn_softcap > 0:
            c = float(cfg.attn_softcap)
            scores = g.op1("Mul", [g.op1("Tanh", [g.op1("Div", [scores, g.const_f32(c)], name)], name),
                                   g.const_f32(c)], name)
        if t.sliding:  # keys before position - window + 1 are out of sight
            first = g.op1("Sub", [total, g.const_i64([cfg.sliding_window])], name)
            index = g.op1("Range", [g.init("inspect.zero", np.array(0, np.int64)), total,
                                    g.init("inspect.one", np.array(1, np.int64))], name)
            hidden = g.op1("Less", [index, first], name)
            scores = g.op1("Where", [hidden, g.const_f32(float("-inf")), scores], name)
        return g.op1("Softmax", [scores], name, axis=-1)

    def plain_norm(self, x: str, weight: np.ndarray, name: str) -> str:
        """RMS-normalize ``x`` over its last axis."""
        gamma = self.g.init(f"{name}.weight", weight.astype(np.float32))
        return self.g.op1("SimplifiedLayerNormalization", [x, gamma], name, axis=-1, epsilon=self.cfg.rms_eps)

    def head_norm(self, x: str, heads: int, weight: np.ndarray, name: str) -> str:
        """RMS-normalize each head of ``x`` ``[batch, seq, heads * head_dim]`` on its own."""
        g, hd = self.g, self.cfg.head_dim
        split = g.op1("Reshape", [x, g.const_i64([0, 0, heads, hd])], name)
        return g.op1("Reshape", [self.plain_norm(split, weight, name), g.const_i64([0, 0, heads * hd])], name)

    def norm(self, pending: str | None, residual: str, weight: np.ndarray, name: str) -> tuple[str, str]:
        """RMS-normalize ``residual + pending``; return (normalized, new residual)."""
        g = self.g
        if pending is None:
            return self.plain_norm(residual, weight, name), residual
        gamma = g.init(f"{name}.weight", weight.astype(np.float32))
        normed, _, _, summed = g.op(
            "SkipSimplifiedLayerNormalization", [pending, residual, gamma], name, n_out=4,
            domain=MS_DOMAIN, epsilon=self.cfg.rms_eps,
        )
        return normed, summed


    def embed_float(self, table: np.ndarray) -> str:
        """The lookup of a float table: a Gather on it as it is stored. A
        16-bit one (F16, BF16: :meth:`_Graph.init_half`) is gathered in 16 bits
        and the rows widened, exactly; the table stays 16-bit in memory too,
        unless a tied product needs it in float32 (:meth:`output_from_embedding`)."""
        g = self.g
        half = g.init_half("token_embd.weight", table)
        if half is None:
            self._embed_table = g.init("token_embd.weight", np.ascontiguousarray(table, dtype=np.float32))
            return g.op1("Gather", [self._embed_table, INPUT_IDS], "embed", axis=0)
        self._embed_table, self._embed_half = half, True
        return g.op1("Cast", [g.op1("Gather", [half, INPUT_IDS], "embed", axis=0)], "embed", to=TensorProto.FLOAT)

    def embed_blocks(self, e: BlockEmbedding, w: DecoderWeights) -> str:
        """The lookup of a table in blocks (see :class:`BlockEmbedding`): one
        ``GatherBlockQuantized`` gives ``(data - zero) * S`` (small integers
        times the scale: exact), and a table with an offset adds the gathered
        ``c`` of each block, the one rounding, as GGUF's dequantization has it."""
        g, d = self.g, self.cfg.d_model
        v, blocks = e.scales.shape
        offset = None if e.offset is None else self.g.init_factored("token_embd.offset", e.offset, e.offset_parts)
        if e.bits == 8 and w.tied_eight:  # [V, D/B, B]: the 8-bit output product's weight too
            data = g.init("token_embd.qweight", e.data.reshape(v, blocks, e.block))
            scales = g.init_factored("token_embd.scales", e.scales[:, :, None], e.scale_parts)
            flat = g.op1("Reshape", [scales, g.const_i64([-1])], "output_w")  # folded at load
            self._tied_eight = (data, flat, e.block, offset)
            h = g.op1("GatherBlockQuantized", [data, INPUT_IDS, scales], "embed", domain=MS_DOMAIN,
                      bits=8, block_size=e.block, gather_axis=0, quantize_axis=2)  # [b, s, D/B, B]
        elif e.bits == 8:
            data = g.init("token_embd.qweight", e.data)
            scales = g.init_factored("token_embd.scales", e.scales, e.scale_parts)
            self._embed8 = (data, scales, e.block, offset)
            h = g.op1("GatherBlockQuantized", [data, INPUT_IDS, scales], "embed", domain=MS_DOMAIN,
                      bits=8, block_size=e.block, gather_axis=0, quantize_axis=1)
            if offset is None:
                return h
            h = g.op1("Reshape", [h, g.const_i64([0, 0, blocks, e.block])], "embed")
        else:  # [V, D/B, B/2]: the output product's own bytes when they are the same (stored once)
            shared = w.embed_in_output and isinstance(w.output, Int4Weight) and w.output.packed is e.data
            data = g.init("output.qweight" if shared else "token_embd.qweight", e.data)
            scales = g.init_factored("token_embd.scales", e.scales[:, :, None], e.scale_parts)
            inputs = [data, INPUT_IDS, scales]
            if e.zero == 0:  # an explicit zero point 0, made when the session loads (nothing in the file)
                zero = helper.make_tensor("zero", TensorProto.UINT8, [1], [0])
                inputs.append(g.op1("ConstantOfShape", [g.const_i64([v, blocks, 1])], "embed", value=zero))
            h = g.op1("GatherBlockQuantized", inputs, "embed", domain=MS_DOMAIN,
                      bits=4, block_size=e.block, gather_axis=0, quantize_axis=2)  # [b, s, D/B, B]
        if offset is not None:
            rows = g.op1("Unsqueeze", [g.op1("Gather", [offset, INPUT_IDS], "embed", axis=0), g.const_i64([-1])],
                         "embed")
            h = g.op1("Add", [h, rows], "embed")
        return g.op1("Reshape", [h, g.const_i64([0, 0, d])], "embed")

    def embed_from_pieces(self, table: BlockEmbedding) -> str:
        """The embedding lookup of a large tied 8-bit table kept only as the
        output product's two 4-bit pieces (``token_embd.pieces``: each byte
        ``u`` of the table as its low and high nibble, in ``MatMulNBits``
        layout): the rows of the ids are gathered and ``u = lo + 16 hi`` put
        together again, ``(u - 128) * S`` in float32 (small integers times the
        block scale: exactly the table's values). The file holds the table once;
        nothing large is folded at load."""
        g, cfg = self.g, self.cfg
        v, d, block = cfg.vocab_size, cfg.d_model, table.block
        u = table.data.reshape(v, d // block, block)
        packed = np.empty((v, 2 * d // block, block // 2), np.uint8)  # [V, 2 D/B, B/2], made in row slices
        for r in range(0, v, 16384):
            rows = u[r : r + 16384]
            packed[r : r + 16384, : d // block] = pack_pairs(rows & 0x0F)
            packed[r : r + 16384, d // block :] = pack_pairs(rows >> 4)
        pieces = g.init("token_embd.pieces", packed)
        scales = g.init_factored("token_embd.scales", table.scales, table.scale_parts)  # [V, D/B]
        offset = None if table.offset is None else g.init_factored("token_embd.offset", table.offset,
                                                                   table.offset_parts)
        self._tied_pieces = (pieces, scales, block, offset)

        rows = g.op1("Gather", [pieces, INPUT_IDS], "embed", axis=0)  # [b, s, 2 D/B, B/2]
        rows = g.op1("Reshape", [rows, g.const_i64([0, 0, 2, d // block, block // 2])], "embed")
        low, high = g.op("Split", [rows, g.const_i64([1, 1])], "embed", n_out=2, axis=2)
        mask = g.init("embed.low_mask", np.array(15, np.uint8))
        shift = g.init("embed.shift", np.array(4, np.uint8))

        def nibble(x: str, upper: bool) -> str:
            bits = g.op1("BitShift", [x, shift], "embed", direction="RIGHT") if upper else g.op1(
                "BitwiseAnd", [x, mask], "embed")
            return g.op1("Cast", [bits], "embed", to=TensorProto.FLOAT)

        def element(upper: bool) -> str:  # u of the even (low nibble) or odd (high nibble) elements
            return g.op1("Add", [nibble(low, upper), g.op1("Mul", [nibble(high, upper), g.const_f32(16.0)], "embed")],
                         "embed")

        u_rows = g.op1("Concat", [g.op1("Unsqueeze", [element(False), g.const_i64([-1])], "embed"),
                                  g.op1("Unsqueeze", [element(True), g.const_i64([-1])], "embed")], "embed", axis=-1)
        u_rows = g.op1("Reshape", [u_rows, g.const_i64([0, 0, d // block, block])], "embed")
        s_rows = g.op1("Unsqueeze", [g.op1("Gather", [scales, INPUT_IDS], "embed", axis=0), g.const_i64([-1])], "embed")
        values = g.op1("Mul", [g.op1("Sub", [u_rows, g.const_f32(128.0)], "embed"), s_rows], "embed")
        if offset is not None:  # + c, the one rounding
            c_rows = g.op1("Unsqueeze", [g.op1("Gather", [offset, INPUT_IDS], "embed", axis=0), g.const_i64([-1])],
                           "embed")
            values = g.op1("Add", [values, c_rows], "embed")
        return g.op1("Reshape", [values, g.const_i64([0, 0, d])], "embed")

    def pieces_from_table(self, data: str, scales: str, block: int,
                          offset: str | None) -> tuple[str, str, int, str | None]:
        """The pieces of :meth:`embed_from_pieces` (``[V, 2 D/B, B/2]``, the low
        nibbles' blocks, then the high nibbles') made in the graph from the 8-bit
        table ``data`` ``[V, D]``: constants the session folds at load. Byte
        ``i`` of a piece holds elements ``2i`` and ``2i + 1`` (``pack_pairs``)."""
        g, cfg = self.g, self.cfg
        v, d = cfg.vocab_size, cfg.d_model
        pairs = g.op1("Reshape", [data, g.const_i64([v, d // block, block // 2, 2])], "output_pieces")
        even, odd = g.op("Split", [pairs, g.const_i64([1, 1])], "output_pieces", n_out=2, axis=-1)
        low_mask = g.init("output_pieces.low_mask", np.array(0x0F, np.uint8))
        high_mask = g.init("output_pieces.high_mask", np.array(0xF0, np.uint8))
        shift = g.init("output_pieces.shift", np.array(4, np.uint8))
        low = g.op1("BitwiseOr", [g.op1("BitwiseAnd", [even, low_mask], "output_pieces"),
                                  g.op1("BitShift", [odd, shift], "output_pieces", direction="LEFT")], "output_pieces")
        high = g.op1("BitwiseOr", [g.op1("BitShift", [even, shift], "output_pieces", direction="RIGHT"),
                                   g.op1("BitwiseAnd", [odd, high_mask], "output_pieces")], "output_pieces")
        pieces = g.op1("Concat", [low, high], "output_pieces", axis=1)  # [V, 2 D/B, B/2, 1]
        pieces = g.op1("Reshape", [pieces, g.const_i64([v, 2 * d // block, block // 2])], "output_pieces")
        return pieces, scales, block, offset

    def output_from_pieces(self, x: str) -> str:
        """``x @ embed.T`` from the pieces of :meth:`embed_from_pieces`: one
        ``MatMulNBits`` over ``[x, x]`` with scales ``S`` and ``16 S`` (folded
        from ``S`` at load) and the correction ``8 S``, since ``S*(lo - 8) +
        16 S*(hi - 8) + 8 S = S*(u - 128)``. A table with offsets adds ``c``
        as a second correction term (``8 S + c`` would round in float32)."""
        g, cfg = self.g, self.cfg
        pieces, scales, block, offset = self._tied_pieces
        d = cfg.d_model
        both = g.op1("Concat", [scales, g.op1("Mul", [scales, g.const_f32(16.0)], "output_w")], "output_w", axis=1)
        flat = g.op1("Reshape", [both, g.const_i64([-1])], "output_w")
        correction = g.op1("Transpose", [g.op1("Mul", [scales, g.const_f32(8.0)], "output_w")], "output_w",
                           perm=[1, 0])
        sums = self.blocksum(x, d, block)
        if offset is not None:
            correction = g.op1("Concat", [correction, g.op1("Transpose", [offset], "output_w", perm=[1, 0])],
                               "output_w", axis=0)
            sums = self.repeated(sums, 2)
        y = g.op1("MatMulNBits", [self.repeated(x, 2), pieces, flat], "output", domain=MS_DOMAIN,
                  K=2 * d, N=cfg.vocab_size, bits=4, block_size=block, accuracy_level=cfg.accuracy_level)
        return g.op1("Add", [y, g.op1("MatMul", [sums, correction], "output")], "output")

    def output_eight(self, x: str) -> str:
        """``x @ embed.T`` as one 8-bit ``MatMulNBits`` over the table's own
        bytes (``u + 128 - z`` or ``u + 128``, zero point 128: ``S * (u - z)``
        or ``S * u``), plus ``blocksum(x) @ c.T`` for a table with offsets.
        Only with int8 activations (``--fast``): in float32 this product is
        thirty times slower than the 4-bit pieces."""
        g, cfg = self.g, self.cfg
        data, scales, block, offset = self._tied_eight
        y = g.op1("MatMulNBits", [x, data, scales], "output", domain=MS_DOMAIN, K=cfg.d_model, N=cfg.vocab_size,
                  bits=8, block_size=block, accuracy_level=cfg.accuracy_level)
        if offset is None:
            return y
        correction = g.op1("Transpose", [offset], "output_w", perm=[1, 0])  # [D/B, V], folded at load
        return g.op1("Add", [y, g.op1("MatMul", [self.blocksum(x, cfg.d_model, block), correction], "output")],
                     "output")

    def output_from_embedding(self) -> str:
        """The tied output matrix ``embed`` ([vocab, d_model]) as float32, from
        the 8-bit table by one blockwise DequantizeLinear on constants: the
        session folds it into one float32 matrix when it starts (with
        ``session.disable_quant_qdq``, so it is folded rather than kept for a
        quantized product), and the file keeps the table once, in 8 bits.
        ``(q - 128) * d`` is exact in float32: an 8-bit integer times a
        float16 scale needs 19 bits of mantissa; a table with offsets adds them
        (folded too: the float32 rows of the lookup). A 16-bit float table is
        widened by a Cast the session folds (the lookup keeps gathering the
        16-bit one)."""
        g, cfg = self.g, self.cfg
        if self._embed8 is None:  # a float table: the same matrix serves both, stored once
            if self._embed_half:
                return g.op1("Cast", [self._embed_table], "output_w", to=TensorProto.FLOAT)
            return self._embed_table
        data, scales, block, offset = self._embed8
        zero = g.init("output_w.zero_point",
                      np.full((cfg.vocab_size, cfg.d_model // block), 128, np.uint8))
        table = g.op1("DequantizeLinear", [data, scales, zero], "output_w", axis=1, block_size=block)
        if offset is None:
            return table
        v, d = cfg.vocab_size, cfg.d_model
        blocks = g.op1("Reshape", [table, g.const_i64([v, d // block, block])], "output_w")
        blocks = g.op1("Add", [blocks, g.op1("Unsqueeze", [offset, g.const_i64([-1])], "output_w")], "output_w")
        return g.op1("Reshape", [blocks, g.const_i64([v, d])], "output_w")


def build_decoder(cfg: DecoderConfig, weights: DecoderWeights, *, sink: BinaryIO | None = None,
                  location: str = "") -> onnx.ModelProto:
    """The ONNX decoder for ``weights``; see the module text for its inputs and outputs.

    With ``sink`` (a binary file to be named ``location`` beside the graph) the
    weights are streamed there as they are made, and ``weights.layers`` may be
    an iterator that repacks each layer only when the graph reaches it: a
    model converts in little more memory than its largest tensor needs."""
    return _Builder(cfg, sink, location).build(weights)[0]


def build_graphs(cfg: DecoderConfig, weights: DecoderWeights, *, sink: BinaryIO | None = None,
                 location: str = "") -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """The decoder and the inspection graph (see the module text), naming the
    same weights: with ``sink``, both files refer to the one weights file
    ``location``, which holds each weight once."""
    decoder, inspector = _Builder(cfg, sink, location).build(weights, inspector=True)
    assert inspector is not None
    return decoder, inspector

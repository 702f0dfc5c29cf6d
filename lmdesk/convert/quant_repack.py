"""Repack GGUF weight blocks into onnxruntime's quantized operator layouts.

The rule of this module is *exact weights*: every weight the ONNX graph uses
equals, bit for bit, the value llama.cpp would dequantize from the GGUF file.
Nothing is quantized a second time.

* ``Q4_0`` blocks (``w = d * (q - 8)``) become a 4-bit ``MatMulNBits`` weight
  with scale ``d`` and the operator's default zero point 8.
* ``Q4_1`` blocks (``w = d * q + m``) become the same 4-bit weight plus an
  exact per-block correction ``m + 8 d``: ``x @ W.T`` equals
  ``MatMulNBits(x) + blocksum32(x) @ C`` with ``C[b, n] = m + 8 d``.
* ``Q4_K`` super-blocks (256 weights: eight runs of 32, each with a 6-bit
  scale ``sc`` and minimum ``mn`` under the float16 ``d`` and ``dmin``,
  ``w = d*sc * q - dmin*mn``) become the same 4-bit weight with the exact
  float32 scale ``d*sc`` per run of 32 and the correction ``8 d*sc - dmin*mn``.
  That is the bulk of the "Q4_K_M" files most small models come in.
* ``Q5_0``, ``Q5_1``, ``Q8_0``, ``Q5_K``, ``Q6_K``, ``IQ4_NL`` and ``IQ4_XS``
  hold, per block of 16 or 32 weights, an unsigned integer ``u`` of 5 to 8
  bits with a scale ``S`` and an offset ``c`` (``w = S * u + c``; ``S`` and
  ``c`` come from the block's own header fields, ``u`` from the dequantized
  values and is checked to give them back). ``u = lo + 16 * hi`` splits into
  two 4-bit *pieces*: one ``MatMulNBits`` over ``[x, x]`` (the input twice, K
  doubled) with scales ``S`` for ``lo`` and ``16 S`` for ``hi`` computes
  ``S*(lo - 8) + 16 S*(hi - 8)``, and the correction ``c + 136 S`` per block
  makes it ``w`` again. Two bytes of 4 bits for every weight: the size of
  8 bits, not the 32 of a float. For ``import-gguf --fast`` (int8
  activations) they are one 8-bit ``MatMulNBits`` weight instead, the byte
  ``u + 128 - z`` under the operator's default zero point 128 (``w = S *
  (u - z)``: Q8_0, Q5_0, Q6_K, IQ4), or ``u + 128`` with the correction ``c``
  (Q5_1, Q5_K): the weights are still the file's, and one int8 product is
  faster than two (an 8-bit product in float32 is not: 1 s for Gemma 3's
  output, where the pieces take 33 ms).
* everything else is dequantized to float32 (``gguf.quants.dequantize``),
  which is exact for F32/F16/BF16 and for every other block type (the graph
  keeps values that are 16-bit numbers in 16 bits: see onnx_decoder).

Embedding tables (:func:`repack_embedding`) stay in their blocks too, read by
``GatherBlockQuantized``: ``w = S * u + c`` in float32, as gguf-py (and
llama.cpp's ``dequantize_row_*``) computes it. ``S * u`` is exact in float32
for every type here (a float16 scale, times at most 6 bits of sub-scale,
times at most 8 bits of integer), so the one rounding is that of ``+ c``,
fused multiply-add or not: the rows are bit for bit the file's values.

A linear weight here is the GGUF matrix of shape ``(out_features,
in_features)`` (GGUF's ``ne1, ne0``), so ``y = x @ W.T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as QType
from gguf import GGML_QUANT_SIZES as GGML_SIZES
from gguf import quants

BLOCK = 32  # elements per block of Q4_0 / Q4_1 / Q8_0

_Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_Q4_1 = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))])


@dataclass
class Int4Weight:
    """A 4-bit weight in ``MatMulNBits`` layout (``bits=4``, ``block_size`` 32, or 16 for Q6_K);
    with ``bits`` 8, an 8-bit one (``packed`` ``[N, K/B, B]``, a byte a weight, zero point 128).

    ``packed``: uint8 ``[N, P*K/B, B/2]`` for ``P`` pieces of blocks of ``B``
    weights (``P*K`` inputs: the input repeated ``P`` times), element ``2i`` in
    the low nibble of byte ``i``; ``scales``: float32 ``[N, P*K/B]``;
    ``correction``: float32 ``[R*K/B, N]`` added as ``[blocksumB(x)] * R @
    correction`` (``R`` exact terms whose float32 sum would round, usually 1),
    or ``None``.
    ``block_min``: for Q4_1, GGUF's float16 ``m`` ``[K/32, N]``, from which
    the correction is ``m + 8 d`` again (the file stores these two halves
    rather than the float32 sums), or ``None``.
    """

    packed: np.ndarray
    scales: np.ndarray
    correction: np.ndarray | None
    source_type: str
    block_min: np.ndarray | None = None
    pieces: int = 1
    block: int = BLOCK
    bits: int = 4

    @property
    def shape(self) -> tuple[int, int]:
        n, blocks, _ = self.packed.shape
        return n, blocks * self.block // self.pieces

    def dequantize(self) -> np.ndarray:
        """The ``[N, K]`` matrix this weight stands for, summed in float64 (for checks)."""
        n, k = self.shape
        if self.bits == 8:
            q, zero = self.packed.reshape(n, -1, self.block), 128.0
        else:
            lo = self.packed & 0x0F
            hi = self.packed >> 4
            q, zero = np.stack([lo, hi], axis=-1).reshape(n, -1, self.block), 8.0
        w = (q.astype(np.float64) - zero) * self.scales[:, :, None]
        w = w.reshape(n, self.pieces, k // self.block, self.block).sum(axis=1)
        if self.correction is not None:
            corr = self.correction.T.astype(np.float64)
            w = w + corr.reshape(n, self.correction_parts, k // self.block).sum(axis=1)[:, :, None]
        return w.reshape(n, k)

    @property
    def correction_parts(self) -> int:
        """How many exact terms the correction is kept in (``[parts*K/B, N]``, summed by the product)."""
        return 0 if self.correction is None else self.correction.shape[0] * self.block // self.shape[1]


@dataclass
class DenseWeight:
    """A float32 ``[N, K]`` weight."""

    matrix: np.ndarray
    source_type: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape  # type: ignore[return-value]


LinearWeight = Int4Weight | DenseWeight


@dataclass
class Factors:
    """Per-block float32 values kept as ``coarse * fine``: ``coarse`` float16
    ``[n, G]`` (a K-quant's super-block ``d`` or ``dmin``), ``fine`` int8
    ``[n, G * g]`` (its 6-bit sub-scales or minimums), the product exact in
    float32. The folder stores these (1.06 bytes a block of 32, where the
    float32 values take 4); the graph multiplies them when the session loads."""

    coarse: np.ndarray
    fine: np.ndarray

    def values(self) -> np.ndarray:
        n, groups = self.coarse.shape
        fine = self.fine.reshape(n, groups, -1).astype(np.float32)
        return (self.coarse.astype(np.float32)[:, :, None] * fine).reshape(n, -1)


@dataclass
class BlockEmbedding:
    """An embedding table for ``GatherBlockQuantized``: each row in blocks of
    ``block`` weights, ``w = (data - zero) * scales + offset`` in float32.

    ``bits`` 8: ``data`` uint8 ``[V, D]`` holds ``u + zero - z`` for blocks
    ``S * (u - z)`` (the operator's default zero point 128), or ``u + 128`` for
    blocks ``S * u + c``. ``bits`` 4: ``data`` uint8 ``[V, D/B, B/2]`` holds the
    4-bit ``u`` two a byte in ``MatMulNBits`` order (the same bytes a tied
    4-bit output product uses), ``zero`` 8 (the default: Q4_0) or 0 (an
    explicit zero point: Q4_1, Q4_K, whose blocks are ``S * u + c``).
    ``scales`` float32 ``[V, D/B]``; ``offset`` float32 ``[V, D/B]`` (``c``) or
    ``None``; ``scale_parts`` / ``offset_parts``: their :class:`Factors` when
    the file has them so (K-quants), else ``None``."""

    data: np.ndarray
    scales: np.ndarray
    offset: np.ndarray | None = None
    bits: int = 8
    zero: int = 128
    block: int = BLOCK
    scale_parts: Factors | None = None
    offset_parts: Factors | None = None

    def integers(self) -> np.ndarray:
        """``data - zero`` as int32 ``[V, D]``."""
        if self.bits == 4:
            u = np.stack([self.data & 0x0F, self.data >> 4], axis=-1).reshape(self.data.shape[0], -1)
        else:
            u = self.data
        return u.astype(np.int32) - self.zero

    def dequantize(self) -> np.ndarray:
        """The float32 ``[V, D]`` table, in the graph's order of operations."""
        v = self.data.shape[0]
        w = self.integers().astype(np.float32).reshape(v, -1, self.block) * self.scales[:, :, None]
        if self.offset is not None:
            w = w + self.offset[:, :, None]
        return w.reshape(v, -1)


def repack_embedding(raw: np.ndarray, qtype: QType, shape: tuple[int, int]) -> BlockEmbedding | np.ndarray:
    """The embedding table in its blocks (:class:`BlockEmbedding`) for every
    type that is a scale times an integer of at most 8 bits, with or without
    an offset per block; float32 otherwise (F32, F16, BF16, other types)."""
    v, dim = shape
    ints = integer_blocks(raw, qtype, shape)
    if ints is None:
        return dequantize(raw, qtype, shape)
    b = ints.block
    parts = {"scale_parts": ints.scale_parts, "offset_parts": ints.offset_parts}
    if ints.bits <= 4 and ints.centre in (8, None):
        packed = pack_pairs(ints.u.reshape(v, dim // b, b))
        if ints.centre == 8:  # Q4_0: the operator's default zero point 8
            return BlockEmbedding(packed, np.ascontiguousarray(ints.scale), None, 4, 8, b, ints.scale_parts)
        return BlockEmbedding(packed, np.ascontiguousarray(ints.scale), np.ascontiguousarray(ints.offset), 4, 0, b,
                              **parts)
    centred = _bytes_at_128(ints)
    if centred is True:  # the stored byte is q + 128
        return BlockEmbedding(ints.u.reshape(v, dim), np.ascontiguousarray(ints.scale), None, 8, 128, b,
                              ints.scale_parts)
    if centred is False:  # S * u + c: the byte is u + 128
        return BlockEmbedding(ints.u.reshape(v, dim), np.ascontiguousarray(ints.scale),
                              np.ascontiguousarray(ints.offset), 8, 128, b, **parts)
    return dequantize(raw, qtype, shape)


def _bytes_at_128(ints: IntegerBlocks) -> bool | None:
    """Turn ``ints.u``, in place, into the bytes an 8-bit operator with the zero
    point 128 reads: ``u + 128 - z`` for blocks ``S * (u - z)`` (True: nothing
    is added), ``u + 128`` for blocks ``S * u + c`` (False: ``c`` is added).
    None, with ``u`` unchanged, where the bytes would not fit."""
    top = int(ints.u.max(initial=0))
    if ints.centre is not None and ints.centre <= 128 and top + 128 - ints.centre <= 255:
        ints.u += np.uint8(128 - ints.centre)
        return True
    if ints.centre is None and top + 128 <= 255:
        ints.u += np.uint8(128)
        return False
    return None


def shares_nibbles(embed: BlockEmbedding, weight: Int4Weight) -> bool:
    """Whether the 4-bit ``weight`` (a tied output product from the same GGUF
    tensor) holds the table's integers byte for byte wherever a block's scale
    is not zero (where it is, every integer gives the same row): the lookup
    can then read the product's bytes, stored once."""
    if embed.bits != 4 or weight.pieces != 1 or weight.block != embed.block or weight.packed.shape != embed.data.shape:
        return False
    live = embed.scales != 0
    return bool(np.array_equal(weight.packed[live], embed.data[live]))


@dataclass
class IntegerBlocks:
    """A matrix as ``w = scale * u + offset`` per block of ``block`` weights:
    ``u`` uint8 ``[N, K]`` of ``bits`` bits, ``scale`` and ``offset`` float32
    ``[N, K/block]``; ``centre``: the integer ``z`` with ``offset == -z * scale``
    where the type has one (then ``w = scale * (u - z)``), else ``None``."""

    u: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    block: int
    bits: int
    centre: int | None
    scale_parts: Factors | None = None  # scale (and offset) as a K-quant's header has them
    offset_parts: Factors | None = None


@dataclass
class _Header:
    scale: np.ndarray
    offset: np.ndarray
    block: int
    bits: int
    centre: int | None
    scale_parts: Factors | None = None
    offset_parts: Factors | None = None


def _k_factors(d: np.ndarray, fine: np.ndarray, n: int, sign: int = 1) -> Factors:
    """A super-block's float16 ``d`` [n, K/256] times its sub-block integers (``sign`` times them)."""
    return Factors(np.ascontiguousarray(d.reshape(n, -1)), (sign * fine.astype(np.int16)).astype(np.int8).reshape(n, -1))


def _block_scales(raw: np.ndarray, qtype: QType, n: int) -> _Header | None:
    """Scale, offset, block, bits and centre from the header fields of each block,
    or None for a type that is not a scale times an integer per block."""
    f32 = np.float32
    if qtype in (QType.Q8_0, QType.Q5_0, QType.IQ4_NL, QType.Q4_0):
        d = _blocks(raw, np.dtype([("d", "<f2"), ("rest", "u1", (GGML_SIZES[qtype][1] - 2,))]), n)["d"].astype(f32)
        bits, centre = {QType.Q8_0: (8, 128), QType.Q5_0: (5, 16), QType.IQ4_NL: (8, 128), QType.Q4_0: (4, 8)}[qtype]
        return _Header(d, -f32(centre) * d, BLOCK, bits, centre)
    if qtype in (QType.Q5_1, QType.Q4_1):
        b = _blocks(raw, np.dtype([("d", "<f2"), ("m", "<f2"), ("rest", "u1", (GGML_SIZES[qtype][1] - 4,))]), n)
        return _Header(b["d"].astype(f32), b["m"].astype(f32), BLOCK, 5 if qtype == QType.Q5_1 else 4, None)
    if qtype == QType.Q6_K:
        b = _blocks(raw, np.dtype([("q", "u1", (192,)), ("sc", "i1", (16,)), ("d", "<f2")]), n)
        scale = (b["d"].astype(f32)[..., None] * b["sc"].astype(f32)).reshape(n, -1)
        return _Header(scale, -f32(32) * scale, 16, 6, 32, _k_factors(b["d"], b["sc"], n))
    if qtype in (QType.Q5_K, QType.Q4_K):
        rest = GGML_SIZES[qtype][1] - 16
        b = _blocks(raw, np.dtype([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("rest", "u1", (rest,))]), n)
        sc, mn = quants.Q4_K.get_scale_min(b["scales"].reshape(-1, 12))
        d = b["d"].astype(f32).reshape(-1, 1)
        dmin = b["dmin"].astype(f32).reshape(-1, 1)
        return _Header((d * sc.astype(f32)).reshape(n, -1), -(dmin * mn.astype(f32)).reshape(n, -1), BLOCK,
                       5 if qtype == QType.Q5_K else 4, None,
                       _k_factors(b["d"], sc, n), _k_factors(b["dmin"], mn, n, -1))
    if qtype == QType.IQ4_XS:
        b = _blocks(raw, np.dtype([("d", "<f2"), ("sh", "<u2"), ("sl", "u1", (4,)), ("qs", "u1", (128,))]), n)
        j = np.arange(8)
        low = (b["sl"][..., j // 2] >> (4 * (j % 2))).astype(np.int16) & 0x0F
        high = ((b["sh"][..., None].astype(np.int32) >> (2 * j)) & 3).astype(np.int16)
        sub = (low | (high << 4)) - 32
        scale = (b["d"].astype(f32)[..., None] * sub.astype(f32)).reshape(n, -1)
        return _Header(scale, -f32(128) * scale, BLOCK, 8, 128, _k_factors(b["d"], sub, n))
    return None


def integer_blocks(raw: np.ndarray, qtype: QType, shape: tuple[int, int]) -> IntegerBlocks | None:
    """The matrix ``raw`` as :class:`IntegerBlocks`, checked to give back exactly
    GGUF's dequantized values; ``None`` for other types (or a failed check).
    Works through the rows in slices, so a 262,144-row embedding never has a
    float64 copy of itself in memory."""
    n, k = shape
    block_size = GGML_SIZES.get(qtype, (0, 0))[0]
    if block_size == 0 or k % block_size:
        return None
    raw = np.ascontiguousarray(raw).reshape(n, -1)
    header = _block_scales(raw, qtype, n)
    if header is None:
        return None
    scale, offset, block, bits, centre = header.scale, header.offset, header.block, header.bits, header.centre
    u = np.empty((n, k), np.uint8)
    step = max(1, (1 << 22) // k)  # rows per slice: about 4 million weights
    for r in range(0, n, step):
        rows = slice(r, min(n, r + step))
        w = dequantize(raw[rows], qtype, (rows.stop - r, k)).astype(np.float64).reshape(-1, k // block, block)
        s64 = scale[rows].astype(np.float64)[..., None]
        live = s64 != 0
        q = np.where(live, np.rint((w - offset[rows].astype(np.float64)[..., None]) / np.where(live, s64, 1.0)), 0.0)
        if q.min() < 0 or q.max() >= (1 << bits):
            return None
        back = scale[rows][..., None] * q.astype(np.float32) + offset[rows][..., None]
        if not np.array_equal(back.astype(np.float64), w):
            return None
        u[rows] = q.reshape(-1, k)
    return IntegerBlocks(u, scale, offset, block, bits, centre, header.scale_parts, header.offset_parts)


def _pieces(ints: IntegerBlocks, source: str) -> Int4Weight:
    """4-bit ``MatMulNBits`` pieces of integer blocks (see the module text)."""
    n, k = ints.u.shape
    b = ints.block
    u = ints.u.reshape(n, k // b, b)
    packed = np.concatenate([pack_pairs(u & 0x0F), pack_pairs(u >> 4)], axis=1)
    scales = np.concatenate([ints.scale, np.float32(16.0) * ints.scale], axis=1)
    extra = np.float32(136.0) * ints.scale  # the zero points: 8 for lo, 16 * 8 for hi
    correction = ints.offset + extra
    if not np.array_equal(correction.astype(np.float64), ints.offset.astype(np.float64) + extra.astype(np.float64)):
        # the sum rounds in float32 (Q5_K's minimum beside 136 S): keep both terms, each exact
        correction = np.concatenate([ints.offset, extra], axis=1)
    return Int4Weight(packed, np.ascontiguousarray(scales, np.float32), np.ascontiguousarray(correction.T), source,
                      None, 2, b)


def _eight(ints: IntegerBlocks, source: str) -> Int4Weight | None:
    """One 8-bit ``MatMulNBits`` weight of integer blocks (zero point 128; see
    the module text), or ``None`` where the integers do not fit a byte so."""
    n, k = ints.u.shape
    centred = _bytes_at_128(ints)
    if centred is None:
        return None
    correction = None if centred else np.ascontiguousarray(ints.offset.T)  # S * (u - z), or S * u and c per block
    return Int4Weight(ints.u.reshape(n, k // ints.block, ints.block), np.ascontiguousarray(ints.scale, np.float32),
                      correction, source, None, 1, ints.block, 8)


def pack_pairs(elems: np.ndarray) -> np.ndarray:
    """4-bit values ``[..., 32]`` in ``MatMulNBits`` order: elements ``2i,
    2i + 1`` in the low and high nibble of byte ``i``."""
    return (elems[..., 0::2] | (elems[..., 1::2] << 4)).astype(np.uint8)


def _ggml_nibbles_to_ort(qs: np.ndarray) -> np.ndarray:
    """GGUF stores element ``j`` in the low nibble and ``j + 16`` in the high
    nibble of byte ``j``; repacked for ``MatMulNBits``."""
    return pack_pairs(np.concatenate([qs & 0x0F, qs >> 4], axis=-1))


def _blocks(raw: np.ndarray, dtype: np.dtype, rows: int) -> np.ndarray:
    data = np.ascontiguousarray(raw).reshape(rows, -1)
    return data.view(dtype)  # [rows, K/32] structured


_Q4_K = np.dtype([("d", "<f2"), ("dmin", "<f2"), ("scales", "u1", (12,)), ("qs", "u1", (128,))])
QK_K = 256  # weights per K-quant super-block


def _repack_q4_k(raw: np.ndarray, n: int, k: int) -> Int4Weight:
    b = np.ascontiguousarray(raw).reshape(n, -1).view(_Q4_K)  # [N, K/256]
    supers = b.shape[1]
    sc, mn = quants.Q4_K.get_scale_min(b["scales"].reshape(-1, 12))  # [N*K/256, 8] each, 6-bit
    d = b["d"].astype(np.float32).reshape(-1, 1)
    dmin = b["dmin"].astype(np.float32).reshape(-1, 1)
    scale = (d * sc.astype(np.float32)).reshape(n, supers * 8)  # exact: an 11-bit mantissa times 6 bits
    minimum = (dmin * mn.astype(np.float32)).reshape(n, supers * 8)
    # each 32 bytes of qs hold two runs: run 2g in the low nibbles, run 2g+1 in the high ones
    qs = b["qs"].reshape(-1, 4, 1, 32)
    runs = np.concatenate([qs & 0x0F, qs >> 4], axis=2).reshape(n, supers * 8, BLOCK)
    packed = pack_pairs(runs)
    correction = np.ascontiguousarray((np.float32(8.0) * scale - minimum).T)
    return Int4Weight(packed, np.ascontiguousarray(scale), correction, "Q4_K")


def repack_linear(raw: np.ndarray, qtype: QType, shape: tuple[int, int], *, eight_bit: bool = False) -> LinearWeight:
    """Turn one GGUF matrix into the weight form the ONNX graph uses.

    ``raw`` is the tensor's data as ``gguf.GGUFReader`` gives it, ``shape`` is
    ``(out_features, in_features)``. ``eight_bit``: a type of 5 to 8 bits
    becomes one 8-bit weight rather than two 4-bit pieces (for int8
    activations, ``import-gguf --fast``).
    """
    n, k = shape
    if qtype == QType.Q4_K and k % QK_K == 0:
        return _repack_q4_k(raw, n, k)
    if qtype in (QType.Q4_0, QType.Q4_1) and k % BLOCK == 0:
        if qtype == QType.Q4_0:
            b = _blocks(raw, _Q4_0, n)
            d = b["d"].astype(np.float32)
            correction = None
        else:
            b = _blocks(raw, _Q4_1, n)
            d = b["d"].astype(np.float32)
            m = b["m"].astype(np.float32)
            correction = np.ascontiguousarray((m + 8.0 * d).T)
        packed = _ggml_nibbles_to_ort(b["qs"])
        block_min = np.ascontiguousarray(b["m"].T) if qtype == QType.Q4_1 else None
        return Int4Weight(packed, np.ascontiguousarray(d), correction, qtype.name, block_min)
    ints = integer_blocks(raw, qtype, shape)
    if ints is not None:
        eight = _eight(ints, qtype.name) if eight_bit else None
        return eight if eight is not None else _pieces(ints, qtype.name)
    return DenseWeight(dequantize(raw, qtype, shape), qtype.name)


def dequantize(raw: np.ndarray, qtype: QType, shape: tuple[int, ...]) -> np.ndarray:
    """Exact float32 values of any GGUF tensor, in numpy (row-major) shape."""
    if qtype == QType.F32:
        out = np.asarray(raw, dtype=np.float32)
    else:
        out = quants.dequantize(np.asarray(raw), qtype).astype(np.float32, copy=False)
    return np.ascontiguousarray(out.reshape(shape))


def concat_linear(weights: list[LinearWeight]) -> LinearWeight | None:
    """Stack weights that share an input along the output axis (q|k|v,
    gate|up) so one operator computes them, or ``None`` if their kinds differ."""
    kinds = {(w.pieces, w.block, w.correction_parts or 1, w.bits) for w in weights if isinstance(w, Int4Weight)}
    if all(isinstance(w, Int4Weight) for w in weights) and len(kinds) == 1:
        int4 = [w for w in weights if isinstance(w, Int4Weight)]
        corr = None
        if any(w.correction is not None for w in int4):
            # a Q4_0 part next to a Q4_1 part simply has a zero correction
            corr = np.concatenate(
                [
                    w.correction
                    if w.correction is not None
                    else np.zeros((w.shape[1] // w.block, w.shape[0]), np.float32)
                    for w in int4
                ],
                axis=1,
            )
        mins = [w.block_min for w in int4]
        return Int4Weight(
            np.concatenate([w.packed for w in int4], axis=0),
            np.concatenate([w.scales for w in int4], axis=0),
            corr,
            "+".join(sorted({w.source_type for w in int4})),
            None if any(m is None for m in mins) else np.concatenate(mins, axis=1),
            int4[0].pieces,
            int4[0].block,
            int4[0].bits,
        )
    if all(isinstance(w, DenseWeight) for w in weights):
        return DenseWeight(
            np.concatenate([w.matrix for w in weights], axis=0),  # type: ignore[union-attr]
            "+".join(sorted({w.source_type for w in weights})),
        )
    return None

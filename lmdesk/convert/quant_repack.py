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
* everything else is dequantized to float32 (``gguf.quants.dequantize``),
  which is exact for F32/F16/BF16 and Q8_0 and for every other block type.

A linear weight here is the GGUF matrix of shape ``(out_features,
in_features)`` (GGUF's ``ne1, ne0``), so ``y = x @ W.T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as QType
from gguf import quants

BLOCK = 32  # elements per block of Q4_0 / Q4_1 / Q8_0

_Q4_0 = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_Q4_1 = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))])


@dataclass
class Int4Weight:
    """A 4-bit weight in ``MatMulNBits`` layout (``bits=4``, ``block_size=32``).

    ``packed``: uint8 ``[N, K/32, 16]``, element ``2i`` in the low nibble of
    byte ``i``; ``scales``: float32 ``[N, K/32]``; ``correction``: float32
    ``[K/32, N]`` added as ``blocksum32(x) @ correction``, or ``None``.
    ``block_min``: for Q4_1, GGUF's float16 ``m`` ``[K/32, N]``, from which
    the correction is ``m + 8 d`` again (the file stores these two halves
    rather than the float32 sums), or ``None``.
    """

    packed: np.ndarray
    scales: np.ndarray
    correction: np.ndarray | None
    source_type: str
    block_min: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        n, blocks, _ = self.packed.shape
        return n, blocks * BLOCK

    def dequantize(self) -> np.ndarray:
        """The float32 ``[N, K]`` matrix this weight stands for (for checks)."""
        lo = self.packed & 0x0F
        hi = self.packed >> 4
        q = np.stack([lo, hi], axis=-1).reshape(self.packed.shape[0], -1, BLOCK)
        w = (q.astype(np.float32) - 8.0) * self.scales[:, :, None]
        if self.correction is not None:
            w = w + self.correction.T[:, :, None]
        return w.reshape(self.packed.shape[0], -1)


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
class Int8Embedding:
    """A Q8_0 embedding table for ``GatherBlockQuantized`` (``bits=8``,
    ``block_size=32``): ``data`` uint8 ``[V, D]`` holds ``q + 128`` (the
    operator's default zero point is 128), ``scales`` float32 ``[V, D/32]``.
    Each gathered row is ``(data - 128) * d``: exactly GGUF's ``d * q``."""

    data: np.ndarray
    scales: np.ndarray

    def dequantize(self) -> np.ndarray:
        v, dim = self.data.shape
        q = self.data.astype(np.float32).reshape(v, -1, BLOCK) - 128.0
        return (q * self.scales[:, :, None]).reshape(v, dim)


_Q8_0 = np.dtype([("d", "<f2"), ("qs", "i1", (32,))])


def repack_embedding(raw: np.ndarray, qtype: QType, shape: tuple[int, int]) -> Int8Embedding | np.ndarray:
    """The embedding table: 8-bit blocks stay 8-bit, anything else is float32."""
    v, dim = shape
    if qtype == QType.Q8_0 and dim % BLOCK == 0:
        b = _blocks(raw, _Q8_0, v)
        data = (b["qs"].astype(np.int16) + 128).astype(np.uint8).reshape(v, dim)
        return Int8Embedding(data, np.ascontiguousarray(b["d"].astype(np.float32)))
    return dequantize(raw, qtype, shape)


def _pack_pairs(elems: np.ndarray) -> np.ndarray:
    """4-bit values ``[..., 32]`` in ``MatMulNBits`` order: elements ``2i,
    2i + 1`` in the low and high nibble of byte ``i``."""
    return (elems[..., 0::2] | (elems[..., 1::2] << 4)).astype(np.uint8)


def _ggml_nibbles_to_ort(qs: np.ndarray) -> np.ndarray:
    """GGUF stores element ``j`` in the low nibble and ``j + 16`` in the high
    nibble of byte ``j``; repacked for ``MatMulNBits``."""
    return _pack_pairs(np.concatenate([qs & 0x0F, qs >> 4], axis=-1))


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
    packed = _pack_pairs(runs)
    correction = np.ascontiguousarray((np.float32(8.0) * scale - minimum).T)
    return Int4Weight(packed, np.ascontiguousarray(scale), correction, "Q4_K")


def repack_linear(raw: np.ndarray, qtype: QType, shape: tuple[int, int]) -> LinearWeight:
    """Turn one GGUF matrix into the weight form the ONNX graph uses.

    ``raw`` is the tensor's data as ``gguf.GGUFReader`` gives it, ``shape`` is
    ``(out_features, in_features)``.
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
    if all(isinstance(w, Int4Weight) for w in weights):
        int4 = [w for w in weights if isinstance(w, Int4Weight)]
        corr = None
        if any(w.correction is not None for w in int4):
            # a Q4_0 part next to a Q4_1 part simply has a zero correction
            corr = np.concatenate(
                [
                    w.correction
                    if w.correction is not None
                    else np.zeros((w.scales.shape[1], w.scales.shape[0]), np.float32)
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
        )
    if all(isinstance(w, DenseWeight) for w in weights):
        return DenseWeight(
            np.concatenate([w.matrix for w in weights], axis=0),  # type: ignore[union-attr]
            "+".join(sorted({w.source_type for w in weights})),
        )
    return None

"""What the model thought at each position, in numbers a student can read.

For the token at position i (i > 0) the distribution is the model's own,
given everything before it: temperature 1, nothing filtered. From it:
the probability of the actual token, its log-probability (nats), its
surprise in bits (−log2 p), its rank (1 = the model's first choice), the
entropy of the distribution (bits) and the top-k candidates.

Everything is vectorised over positions; a block of logits is reduced to
these few numbers per row and can then be dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LN2 = math.log(2.0)


@dataclass(frozen=True)
class TokenStats:
    """The distribution that predicted one token, and where the token stood in it."""

    prob: float
    logprob: float  # natural log
    bits: float  # −log2 p
    rank: int  # 1 = most likely; ties share the better rank
    entropy: float  # bits
    top_ids: tuple[int, ...]  # most likely first
    top_probs: tuple[float, ...]


@dataclass(frozen=True)
class SpanSummary:
    """Surprise over a run of predicted tokens."""

    tokens: int
    total_bits: float
    bits_per_token: float
    perplexity: float  # 2 ** bits_per_token


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable log-softmax over the last axis, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(logits))


def entropy_bits(logits: np.ndarray) -> np.ndarray:
    """Entropy in bits of the distribution(s) given by ``logits`` (last axis)."""
    lp = log_softmax(logits)
    return -(np.exp(lp) * lp).sum(axis=-1) / LN2


def position_stats(logits: np.ndarray, actual: Sequence[int], k: int) -> list[TokenStats]:
    """Statistics for ``actual[j]`` under the distribution ``logits[j]``.

    ``logits`` is ``[n, vocab]``; rows are processed in float32 with float64
    sums, so a block of a few hundred rows costs one pass over its memory.
    """
    rows = np.asarray(logits, dtype=np.float32)
    n, vocab = rows.shape
    ids = np.asarray(actual, dtype=np.int64)
    if ids.shape != (n,):
        raise ValueError(f"{n} rows of logits for {ids.shape} tokens")
    k = max(1, min(int(k), vocab))
    top_order = np.arange(n)[:, None]

    maxima = rows.max(axis=1, keepdims=True)
    z = rows - maxima  # <= 0
    e = np.exp(z)
    sums = e.sum(axis=1, dtype=np.float64)
    log_sums = np.log(sums)
    actual_z = z[np.arange(n), ids].astype(np.float64)
    logprob = actual_z - log_sums
    # H = log S - sum(p z), with p = e / S
    entropy = (log_sums - (e * z).sum(axis=1, dtype=np.float64) / sums) / LN2
    rank = (z > z[np.arange(n), ids][:, None]).sum(axis=1) + 1

    part = np.argpartition(-z, k - 1, axis=1)[:, :k]
    part_z = z[top_order, part]
    order = np.argsort(-part_z, axis=1, kind="stable")
    top = part[top_order, order]
    top_p = np.exp(z[top_order, top].astype(np.float64) - log_sums[:, None])

    return [
        TokenStats(
            prob=float(np.exp(logprob[j])),
            logprob=float(logprob[j]),
            bits=float(-logprob[j] / LN2),
            rank=int(rank[j]),
            entropy=float(max(entropy[j], 0.0)),
            top_ids=tuple(int(t) for t in top[j]),
            top_probs=tuple(float(p) for p in top_p[j]),
        )
        for j in range(n)
    ]


def summarize(bits: Sequence[float]) -> SpanSummary:
    """Token count, total bits, bits per token and perplexity of a span."""
    values = [b for b in bits if b is not None]
    n = len(values)
    total = float(sum(values))
    per = total / n if n else 0.0
    return SpanSummary(tokens=n, total_bits=total, bits_per_token=per, perplexity=float(2.0**per) if n else 1.0)

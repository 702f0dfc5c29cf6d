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


def top_indices(values: np.ndarray, k: int) -> np.ndarray:
    """The indices of the ``k`` largest values, largest first and ties by
    index: ``np.argsort(-values, kind="stable")[:k]``, without sorting the
    whole vocabulary (Gemma 3's 262,144 candidates: 34 ms a sort)."""
    values = np.asarray(values)
    n = values.size
    if k >= n:
        return np.argsort(-values, kind="stable")
    if k <= 0:
        return np.zeros(0, np.int64)
    kth = values[np.argpartition(-values, k - 1)[k - 1]]
    above = np.flatnonzero(values > kth)
    ties = np.flatnonzero(values == kth)[: k - above.size]
    chosen = np.concatenate([above, ties])
    return chosen[np.lexsort((chosen, -values[chosen]))]


def entropy_bits(logits: np.ndarray) -> np.ndarray:
    """Entropy in bits of the distribution(s) given by ``logits`` (last axis)."""
    lp = log_softmax(logits)
    return -(np.exp(lp) * lp).sum(axis=-1) / LN2


class _StatsKernel:
    """The reductions over the vocabulary, as a small onnxruntime graph.

    onnxruntime's TopK and reductions run on all cores and need no numpy
    temporaries of the block's size; numpy's argpartition alone took 4× the
    time of this whole graph on a 256 × 49,152 block.
    """

    # One row per run, in memory kept by the session's arena for the next: a row's
    # intermediates (a few of the vocabulary's size) are then the same few blocks each
    # run, where larger runs without an arena had each of them given fresh pages by the
    # system. Measured (ms a row, 2 threads): Gemma 3's 262,144 candidates 0.9-1.3
    # against 3.5-6.0 for 64 rows without an arena; SmolLM2's 49,152: 0.37 against 0.80.
    ROWS = 1

    def __init__(self, threads: int) -> None:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        f, i64 = TensorProto.FLOAT, TensorProto.INT64
        one = helper.make_tensor("one", i64, [1], [1])
        nodes = [
            helper.make_node("ReduceMax", ["logits", "one"], ["m"], keepdims=1),
            helper.make_node("Sub", ["logits", "m"], ["z"]),
            helper.make_node("Exp", ["z"], ["e"]),
            helper.make_node("ReduceSum", ["e", "one"], ["sum_e"], keepdims=1),
            helper.make_node("Mul", ["e", "z"], ["ez"]),
            helper.make_node("ReduceSum", ["ez", "one"], ["sum_ez"], keepdims=1),
            helper.make_node("Unsqueeze", ["targets", "one"], ["t"]),
            helper.make_node("GatherElements", ["z", "t"], ["z_actual"], axis=1),
            helper.make_node("Greater", ["z", "z_actual"], ["above"]),
            helper.make_node("Cast", ["above"], ["above_f"], to=f),
            helper.make_node("ReduceSum", ["above_f", "one"], ["above_n"], keepdims=1),
            helper.make_node("TopK", ["z", "k"], ["top_z", "top_ids"], axis=1, largest=1, sorted=1),
        ]
        outputs = ["sum_e", "sum_ez", "z_actual", "above_n", "top_z", "top_ids"]
        graph = helper.make_graph(
            nodes, "lmdesk-stats",
            [helper.make_tensor_value_info("logits", f, ["n", "vocab"]),
             helper.make_tensor_value_info("targets", i64, ["n"]),
             helper.make_tensor_value_info("k", i64, [1])],
            [helper.make_tensor_value_info(o, i64 if o == "top_ids" else f, None) for o in outputs],
            initializer=[one],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
        model.ir_version = 10
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # the arena keeps what one row needs (about 5 MB for 262,144 candidates): see ROWS
        # Its threads must not spin after a run: they would take the cores from the
        # model's next step (Gemma 3, 262,144 candidates: decode 81 → 55 ms a token;
        # the model's own threads do spin, which is 18 rather than 22 ms on SmolLM2)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.outputs = outputs

    def run(self, logits: np.ndarray, targets: np.ndarray, k: int) -> list[np.ndarray]:
        top = np.array([k], np.int64)
        parts = [
            self.session.run(self.outputs, {
                "logits": logits[a : a + self.ROWS], "targets": targets[a : a + self.ROWS], "k": top,
            })
            for a in range(0, len(logits), self.ROWS)
        ]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(self.outputs))]


_kernels: dict[int, _StatsKernel] = {}


def _kernel(threads: int) -> _StatsKernel:
    if threads not in _kernels:
        _kernels[threads] = _StatsKernel(threads)
    return _kernels[threads]


def position_stats(logits: np.ndarray, actual: Sequence[int], k: int, *, threads: int = 2) -> list[TokenStats]:
    """Statistics for ``actual[j]`` under the distribution ``logits[j]``.

    ``logits`` is ``[n, vocab]`` (float32). The sums over the vocabulary are
    taken in float32 after subtracting each row's maximum; logs in float64.
    Ties in the top-k list keep the lower id first; a token tied with others
    gets the best rank among them.
    """
    rows = np.ascontiguousarray(logits, dtype=np.float32)
    n, vocab = rows.shape
    ids = np.asarray(actual, dtype=np.int64)
    if ids.shape != (n,):
        raise ValueError(f"{n} rows of logits for {ids.shape} tokens")
    if n == 0:
        return []
    k = max(1, min(int(k), vocab))
    sum_e, sum_ez, z_actual, above, top_z, top_ids = _kernel(threads).run(rows, ids, k)
    log_sums = np.log(sum_e[:, 0].astype(np.float64))
    logprob = z_actual[:, 0].astype(np.float64) - log_sums
    entropy = (log_sums - sum_ez[:, 0].astype(np.float64) / sum_e[:, 0]) / LN2
    top_p = np.exp(top_z.astype(np.float64) - log_sums[:, None])
    return [
        TokenStats(
            prob=float(np.exp(logprob[j])),
            logprob=float(logprob[j]),
            bits=float(-logprob[j] / LN2),
            rank=int(above[j, 0]) + 1,
            entropy=float(max(entropy[j], 0.0)),
            top_ids=tuple(int(t) for t in top_ids[j]),
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

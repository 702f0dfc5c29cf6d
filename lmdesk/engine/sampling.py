"""Choosing the next token: greedy, or sampled with temperature, top-k, top-p.

The settings change only how a token is *chosen*; the statistics the window
shows are always the model's own distribution. Both are available here: the
model's probabilities and those after the settings' transforms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stats import softmax


@dataclass(frozen=True)
class SamplingSettings:
    greedy: bool = False
    temperature: float = 1.0  # <= 0 means greedy
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0  # 1: no limit
    seed: int | None = None  # None: a fresh seed is drawn (and reported) per generation

    def __post_init__(self) -> None:
        if self.top_k < 0:
            raise ValueError("top-k must be 0 (off) or a positive number")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError("top-p must be above 0 and at most 1")

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature <= 0.0


def transformed_probs(logits: np.ndarray, settings: SamplingSettings) -> np.ndarray:
    """The distribution the next token is drawn from (float64, sums to 1).

    Order as in common practice: temperature, then top-k, then top-p
    (the smallest set of most likely tokens whose probability reaches p).
    """
    x = np.asarray(logits, dtype=np.float64)
    if settings.is_greedy:
        out = np.zeros_like(x)
        out[int(np.argmax(x))] = 1.0
        return out
    probs = softmax(x / settings.temperature)
    if settings.top_k and settings.top_k < probs.size:
        keep = np.argpartition(-probs, settings.top_k - 1)[: settings.top_k]
        mask = np.zeros(probs.size, dtype=bool)
        mask[keep] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    if settings.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        n_keep = int(np.searchsorted(cumulative, settings.top_p, side="left")) + 1
        mask = np.zeros(probs.size, dtype=bool)
        mask[order[:n_keep]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return probs


SEED_LIMIT = 1_000_000  # seeds have at most six digits: easy to read out to a class and type in


def new_seed() -> int:
    """A fresh seed for a sampled run, short enough to share."""
    return int(np.random.SeedSequence().entropy % SEED_LIMIT)


# -- the draw made visible ------------------------------------------------------------------------
#
# A draw, as the course's notes explain it: line the tokens up from most to
# least likely (after the settings), stack their probabilities end to end
# from 0 to 1, draw one uniform number r in [0, 1) and take the token whose
# stretch r falls in. :func:`draw` does exactly that, so what
# :func:`explain_draw` shows is the draw that was made, not a retelling.


def draw_order(probs: np.ndarray) -> np.ndarray:
    """The tokens that can be drawn, most likely first (ties by id)."""
    p = np.asarray(probs, dtype=np.float64)
    live = np.flatnonzero(p > 0.0)
    return live[np.argsort(-p[live], kind="stable")]  # stable: equal probabilities keep the ids' order


def draw_with(probs: np.ndarray, r: float) -> int:
    """The token whose stretch of the stacked probabilities (most likely first)
    holds ``r`` (0 <= r < 1)."""
    p = np.asarray(probs, dtype=np.float64)
    target = r * float(p.sum())
    for n in _HEADS:  # nearly always r falls among the most likely few: sort only those
        if n >= p.size:
            break
        v = np.partition(p, p.size - n)[p.size - n]
        head = np.flatnonzero(p > v)  # exactly the first tokens of the whole order
        head = head[np.argsort(-p[head], kind="stable")]
        cumulative = np.cumsum(p[head])
        if head.size and target < cumulative[-1]:
            return int(head[int(np.searchsorted(cumulative, target, side="right"))])
    order = draw_order(p)
    cumulative = np.cumsum(p[order])
    i = int(np.searchsorted(cumulative, target, side="right"))
    return int(order[min(i, order.size - 1)])


_HEADS = (64, 4096)  # draw_with sorts this many tokens first, the whole vocabulary only when r lies beyond them


def draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """One token from ``probs`` with one uniform number from ``rng``."""
    return draw_with(probs, float(rng.random()))


@dataclass(frozen=True)
class Stage:
    """One candidate on its way through the settings."""

    token_id: int
    logit: float  # the model's raw score
    scaled: float  # logit / T (the logit itself when greedy)
    p_model: float  # softmax of the logits: the model's own probability
    p_temperature: float  # softmax of logit / T
    kept: bool  # still in after top-k and top-p
    p_final: float  # after top-k / top-p, renormalised: what the draw uses
    low: float  # its stretch of [0, 1) in the draw, [low, high); 0, 0 when not kept
    high: float


@dataclass(frozen=True)
class Pipeline:
    """What the settings do to the next-token distribution, step by step."""

    settings: SamplingSettings
    rows: tuple[Stage, ...]  # the most likely candidates (by the model), most likely first
    vocab_size: int
    n_kept: int  # tokens left after top-k and top-p (1 when greedy)
    kept_mass: float  # their probability after temperature, before renormalising (divided by it)
    others_model: float  # the probability of all tokens not in rows, model's own
    others_temperature: float
    others_final: float
    entropy_model: float  # bits
    entropy_final: float  # bits


def _entropy_bits(p: np.ndarray) -> float:
    nz = p[p > 0.0]
    return float(-(nz * np.log2(nz)).sum())


def pipeline(logits: np.ndarray, settings: SamplingSettings, shown: int = 12) -> Pipeline:
    """Each stage of :func:`transformed_probs` for the ``shown`` most likely
    tokens: logits, ÷ T, softmax, top-k / top-p, renormalised, and where each
    kept token lies on the line the draw picks from."""
    x = np.asarray(logits, dtype=np.float64)
    p_model = softmax(x)
    greedy = settings.is_greedy
    p_temp = p_model if greedy else softmax(x / settings.temperature)
    final = transformed_probs(x, settings)
    order = draw_order(final)
    cumulative = np.cumsum(final[order])
    lows = np.concatenate([[0.0], cumulative[:-1]])
    place = {int(t): (float(lo), float(hi)) for t, lo, hi in zip(order, lows, cumulative)}
    top = np.lexsort((np.arange(x.size), -x))[:shown]
    rows = []
    for t in top:
        t = int(t)
        lo, hi = place.get(t, (0.0, 0.0))
        rows.append(Stage(t, float(x[t]), float(x[t]) if greedy else float(x[t] / settings.temperature),
                          float(p_model[t]), float(p_temp[t]), bool(final[t] > 0.0), float(final[t]), lo, hi))
    kept_mask = final > 0.0
    return Pipeline(
        settings=settings, rows=tuple(rows), vocab_size=int(x.size), n_kept=int(kept_mask.sum()),
        kept_mass=float(p_temp[kept_mask].sum()),
        others_model=max(0.0, 1.0 - float(p_model[top].sum())),
        others_temperature=max(0.0, 1.0 - float(p_temp[top].sum())),
        others_final=max(0.0, 1.0 - float(final[top].sum())),
        entropy_model=_entropy_bits(p_model), entropy_final=_entropy_bits(final),
    )


@dataclass(frozen=True)
class Draw:
    """One sampled token and how it was drawn."""

    pipeline: Pipeline
    r: float  # the uniform number in [0, 1)
    token_id: int  # the token whose stretch holds r
    low: float  # that stretch, [low, high)
    high: float
    rank: int  # 1 = the most likely after the settings
    seed: int | None  # the seed of the stream r came from (None: greedy, nothing drawn)
    step: int  # which number of the seed's stream r is (1 = the reply's first token)


def explain_draw(logits: np.ndarray, settings: SamplingSettings, rng: np.random.Generator | None, *,
                 seed: int | None = None, step: int = 1, shown: int = 12) -> Draw:
    """Draw the next token as :func:`draw` does, keeping the number drawn
    and each stage on the way. Greedy takes the most likely token and draws
    nothing (``r`` is 0, ``seed`` None)."""
    pipe = pipeline(logits, settings, shown)
    final = transformed_probs(logits, settings)
    r = 0.0 if settings.is_greedy or rng is None else float(rng.random())
    token = int(np.argmax(final)) if settings.is_greedy else draw_with(final, r)
    order = draw_order(final)
    rank = int(np.flatnonzero(order == token)[0]) + 1
    cumulative = np.cumsum(final[order])
    high = float(cumulative[rank - 1])
    low = float(cumulative[rank - 2]) if rank > 1 else 0.0
    return Draw(pipe, r, token, low, high, rank, None if settings.is_greedy else seed, step)

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


def draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """One token from ``probs`` with one uniform number from ``rng``."""
    cumulative = np.cumsum(probs)
    u = rng.random() * cumulative[-1]
    return int(min(np.searchsorted(cumulative, u, side="right"), probs.size - 1))


SEED_LIMIT = 1_000_000  # seeds have at most six digits: easy to read out to a class and type in


def new_seed() -> int:
    """A fresh seed for a sampled run, short enough to share."""
    return int(np.random.SeedSequence().entropy % SEED_LIMIT)

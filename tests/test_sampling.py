"""The draw made visible: each stage of the sampling settings, and the
uniform number that picked the token (lmdesk.engine.sampling). Expected
values are worked out by hand here, not by the code under test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmdesk.engine.sampling import SamplingSettings, draw, draw_with, explain_draw, pipeline, transformed_probs


def test_the_draw_stacks_the_tokens_most_likely_first() -> None:
    probs = np.array([0.1, 0.5, 0.4])  # stacked: token 1 [0, .5), token 2 [.5, .9), token 0 [.9, 1)
    assert [draw_with(probs, r) for r in (0.0, 0.49, 0.5, 0.89, 0.9, 0.999)] == [1, 1, 2, 2, 0, 0]
    ties = np.array([0.25, 0.25, 0.5])  # equal probabilities keep the ids' order
    assert [draw_with(ties, r) for r in (0.4, 0.6, 0.8)] == [2, 0, 1]
    assert draw_with(np.array([0.0, 1.0, 0.0]), 0.99) == 1  # a token left out is never drawn


def test_a_long_tail_is_drawn_like_a_short_one() -> None:
    """The draw sorts only the head of a big vocabulary when r falls in it;
    beyond it, the whole order: the same token either way."""
    rng = np.random.default_rng(1)
    probs = rng.random(70_000) ** 8
    probs /= probs.sum()
    order = sorted(range(probs.size), key=lambda i: (-probs[i], i))
    edges = np.cumsum(probs[order])
    for r in (0.0, 0.01, 0.3, 0.7, 0.95, 0.999999):
        want = order[int(np.searchsorted(edges, r, side="right"))]
        assert draw_with(probs, r) == want


def test_the_pipeline_by_hand() -> None:
    logits = np.array([2.0, 1.0, 0.0, -1.0])
    s = SamplingSettings(temperature=2.0, top_k=2)
    pipe = pipeline(logits, s, shown=3)
    e = [math.exp(v) for v in (1.0, 0.5, 0.0, -0.5)]  # logits / 2
    p_t = [v / sum(e) for v in e]
    m = [math.exp(v) for v in (2.0, 1.0, 0.0, -1.0)]
    p_model = [v / sum(m) for v in m]
    kept = p_t[0] + p_t[1]
    assert [r.token_id for r in pipe.rows] == [0, 1, 2]
    assert [r.scaled for r in pipe.rows] == [1.0, 0.5, 0.0]
    assert [r.p_temperature for r in pipe.rows] == pytest.approx(p_t[:3])
    assert [r.p_model for r in pipe.rows] == pytest.approx(p_model[:3])
    assert [r.kept for r in pipe.rows] == [True, True, False]
    assert [r.p_final for r in pipe.rows] == pytest.approx([p_t[0] / kept, p_t[1] / kept, 0.0])
    assert (pipe.rows[0].low, pipe.rows[0].high) == pytest.approx((0.0, p_t[0] / kept))
    assert (pipe.rows[1].low, pipe.rows[1].high) == pytest.approx((p_t[0] / kept, 1.0))
    assert pipe.n_kept == 2 and pipe.kept_mass == pytest.approx(kept)
    assert pipe.others_model == pytest.approx(p_model[3]) and pipe.others_temperature == pytest.approx(p_t[3])
    assert pipe.others_final == pytest.approx(0.0)
    assert pipe.entropy_final == pytest.approx(-sum(q * math.log2(q) for q in (p_t[0] / kept, p_t[1] / kept)))


def test_top_p_keeps_the_fewest_that_reach_it() -> None:
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    pipe = pipeline(np.log(probs), SamplingSettings(top_p=0.81))
    assert [r.kept for r in pipe.rows] == [True, True, True, False]
    assert pipe.kept_mass == pytest.approx(0.95)
    assert [r.p_final for r in pipe.rows] == pytest.approx([0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0])


def test_the_explained_draw_is_the_draw() -> None:
    """The same stream gives the same token through draw() and
    explain_draw(), whose r is the stream's next number and lies in the
    token's stretch."""
    logits = np.random.default_rng(0).normal(size=500) * 3
    s = SamplingSettings(temperature=0.8, top_p=0.95)
    for seed in range(20):
        d = explain_draw(logits, s, np.random.default_rng(seed), seed=seed)
        assert d.r == np.random.default_rng(seed).random()
        assert d.token_id == draw(transformed_probs(logits, s), np.random.default_rng(seed))
        assert d.low <= d.r < d.high
        row = next((r for r in d.pipeline.rows if r.token_id == d.token_id), None)
        if row is not None:
            assert (row.low, row.high) == (d.low, d.high)
    greedy = explain_draw(logits, SamplingSettings(greedy=True), None)
    assert greedy.token_id == int(np.argmax(logits)) and greedy.seed is None and greedy.rank == 1

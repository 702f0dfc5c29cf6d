"""Self-checks that make tests/reference.py (and tests/tiny_gguf.py) trustworthy.

Every test here asserts on concrete values and fails if the reference's
semantics are broken (wrong RoPE layout, wrong GQA mapping, non-causal mask,
wrong weight orientation, broken dequantization, broken tokenizer ...).
"""

import sys
import pathlib

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import math

import numpy as np
import pytest
import gguf
from gguf import GGMLQuantizationType as Q

from reference import ReferenceModel, build_hf_tokenizer
from tiny_gguf import write_tiny_gguf, tiny_tokenizer_vocab, CHATML_TEMPLATE

# ChatML prompt for "What is the capital of France?" in the SmolLM2 vocab,
# derived by looking tokens up in tokenizer.ggml.tokens ('assistant' is
# 'ass' + 'istant' in this vocab).
SMOLLM_CHAT_IDS = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198]
SMOLLM_CHAT_TEXT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
# "The capital of France is" -> The, Ġcapital, Ġof, ĠFrance, Ġis
SMOLLM_PARIS_IDS = [504, 3575, 282, 4649, 314]


# ----------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------
def softmax(x):
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def rng_ids(n, vocab, seed=0):
    return [int(i) for i in np.random.default_rng(seed).integers(0, vocab, size=n)]


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="module")
def tiny(tiny_path):
    return ReferenceModel(tiny_path)


def naive_forward(path, token_ids):
    """Deliberately loop-heavy second implementation, reading the GGUF itself.

    Works only for F32 files (no dequantization needed).  Scalar python loops
    for RoPE (adjacent pairs), attention (per query, per head, per key) and
    softmax, so it shares no vectorisation tricks with reference.py.
    """
    r = gguf.GGUFReader(str(path))
    md = {k: f.contents() for k, f in r.fields.items()}
    a = md["general.architecture"]
    n_layer = md[f"{a}.block_count"]
    d = md[f"{a}.embedding_length"]
    n_head = md[f"{a}.attention.head_count"]
    n_kv = md.get(f"{a}.attention.head_count_kv", n_head)
    hd = d // n_head
    n_rot = md.get(f"{a}.rope.dimension_count", hd)
    base = md.get(f"{a}.rope.freq_base", 10000.0)
    eps = md[f"{a}.attention.layer_norm_rms_epsilon"]
    W = {}
    for t in r.tensors:
        assert t.tensor_type == Q.F32
        # GGUF shape [ne0, ne1] is stored row-major as ne1 rows of ne0 values
        W[t.name] = np.array(t.data, dtype=np.float64).reshape([int(x) for x in reversed(t.shape)])
    out_w = W.get("output.weight", W["token_embd.weight"])

    def rmsnorm(v, w):
        ms = sum(float(z) * float(z) for z in v) / len(v)
        return np.array([float(z) / math.sqrt(ms + eps) for z in v]) * w

    def rope_vec(v, pos):
        v = list(v)
        for i in range(0, n_rot, 2):
            theta = pos * base ** (-i / n_rot)
            x0, x1 = v[i], v[i + 1]
            v[i] = x0 * math.cos(theta) - x1 * math.sin(theta)
            v[i + 1] = x0 * math.sin(theta) + x1 * math.cos(theta)
        return np.array(v)

    xs = [W["token_embd.weight"][t].copy() for t in token_ids]
    T = len(xs)
    for L in range(n_layer):
        p = f"blk.{L}."
        hs = [rmsnorm(x, W[p + "attn_norm.weight"]) for x in xs]
        qs = [W[p + "attn_q.weight"] @ h for h in hs]  # (out,in) @ in
        ks = [W[p + "attn_k.weight"] @ h for h in hs]
        vs = [W[p + "attn_v.weight"] @ h for h in hs]
        qs = [[rope_vec(q[hh * hd:(hh + 1) * hd], pos) for hh in range(n_head)] for pos, q in enumerate(qs)]
        ks = [[rope_vec(k[hh * hd:(hh + 1) * hd], pos) for hh in range(n_kv)] for pos, k in enumerate(ks)]
        vs = [[v[hh * hd:(hh + 1) * hd] for hh in range(n_kv)] for v in vs]
        new_xs = []
        for i in range(T):
            heads = []
            for hh in range(n_head):
                kvh = hh * n_kv // n_head
                scores = [float(np.dot(qs[i][hh], ks[j][kvh])) / math.sqrt(hd) for j in range(i + 1)]
                m = max(scores)
                ex = [math.exp(s - m) for s in scores]
                z = sum(ex)
                o = sum((ex[j] / z) * vs[j][kvh] for j in range(i + 1))
                heads.append(o)
            attn = W[p + "attn_output.weight"] @ np.concatenate(heads)
            x = xs[i] + attn
            h = rmsnorm(x, W[p + "ffn_norm.weight"])
            g = W[p + "ffn_gate.weight"] @ h
            u = W[p + "ffn_up.weight"] @ h
            act = np.array([gi / (1.0 + math.exp(-gi)) for gi in g]) * u
            new_xs.append(x + W[p + "ffn_down.weight"] @ act)
        xs = new_xs
    return np.stack([out_w @ rmsnorm(x, W["output_norm.weight"]) for x in xs])


def unpermute_llamacpp(w, n_head):
    """Inverse of convert_hf_to_gguf.py's LlamaModel.permute (GGUF -> HF rows).

    permute: w.reshape(n_head, 2, rows//n_head//2, in).swapaxes(1, 2)
    (HF half-split rows [j, j+hd/2] become adjacent rows [2j, 2j+1]).
    """
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ----------------------------------------------------------------------
# tiny-model checks
# ----------------------------------------------------------------------
def test_tiny_metadata_and_shapes(tiny):
    tokens, _, _ = tiny_tokenizer_vocab()
    assert tiny.vocab_size == len(tokens) == 315
    assert (tiny.n_layer, tiny.d_model, tiny.n_head, tiny.n_head_kv, tiny.d_ff) == (2, 64, 4, 2, 128)
    assert (tiny.head_dim, tiny.rope_dim, tiny.rope_base) == (16, 16, 10000.0)
    assert tiny.eps == pytest.approx(1e-5, rel=1e-6)
    assert tiny.tied_output
    # GGUF shape [ne0, ne1] -> numpy (ne1, ne0) == (out, in)
    assert tiny.tensor_gguf_shapes["blk.0.attn_k.weight"] == (64, 32)
    assert tiny.tensors["blk.0.attn_k.weight"].shape == (32, 64)
    assert tiny.tensors["blk.0.ffn_down.weight"].shape == (64, 128)
    assert tiny.tensors["token_embd.weight"].shape == (315, 64)


def test_tiny_logits_shape_and_nontrivial(tiny):
    ids = rng_ids(12, tiny.vocab_size, seed=1)
    lg = tiny.forward(ids)
    assert lg.shape == (12, 315)
    assert lg.dtype == np.float64
    assert np.all(np.isfinite(lg))
    # not saturated, not flat
    assert 0.5 < lg.std() < 10
    p = softmax(lg)
    assert 0.02 < p.max(axis=-1).mean() < 0.9
    # different positions give different distributions
    assert np.abs(lg[1:] - lg[:-1]).max() > 0.5


def test_matches_naive_loop_implementation(tiny_path, tiny):
    ids = rng_ids(7, tiny.vocab_size, seed=2)
    ref = tiny.forward(ids)
    naive = naive_forward(tiny_path, ids)
    np.testing.assert_allclose(ref, naive, rtol=0, atol=1e-9)


@pytest.mark.parametrize("n_head,n_head_kv,tied", [(4, 4, True), (4, 1, False), (8, 2, True)])
def test_matches_naive_other_configs(tmp_path, n_head, n_head_kv, tied):
    path = write_tiny_gguf(tmp_path / "m.gguf", n_head=n_head, n_head_kv=n_head_kv, tied=tied,
                           seed=3, rope_base=500.0)
    m = ReferenceModel(path)
    assert m.tied_output == tied
    ids = rng_ids(6, m.vocab_size, seed=4)
    np.testing.assert_allclose(m.forward(ids), naive_forward(path, ids), rtol=0, atol=1e-9)


def test_untied_output_is_used(tmp_path):
    path = write_tiny_gguf(tmp_path / "u.gguf", tied=False, seed=5)
    m = ReferenceModel(path)
    assert not m.tied_output
    ids = rng_ids(4, m.vocab_size, seed=6)
    lg = m.forward(ids)
    h = m.rms_norm(m.hidden_states(ids)[-1], m.w("output_norm.weight"))
    np.testing.assert_allclose(lg, h @ m.w("output.weight").T, atol=1e-12)
    assert np.abs(lg - h @ m.w("token_embd.weight").T).max() > 1.0


def test_causality_prefix_identical(tiny):
    ids = rng_ids(11, tiny.vocab_size, seed=7)
    full = tiny.forward(ids)
    for n in (1, 5, 10):
        np.testing.assert_allclose(tiny.forward(ids[:n]), full[:n], rtol=0, atol=1e-10)
    # and changing a LATER token must not change earlier logits, but must
    # change the logits at and after it
    ids2 = list(ids)
    ids2[6] = (ids2[6] + 1) % tiny.vocab_size
    full2 = tiny.forward(ids2)
    np.testing.assert_allclose(full2[:6], full[:6], rtol=0, atol=1e-10)
    assert np.abs(full2[6:] - full[6:]).max(axis=-1).min() > 1e-3


def test_repeated_token_gives_identical_positions(tiny):
    # all keys/values identical -> attention output identical for any
    # (normalised) attention weights -> every position identical, RoPE or not
    lg = tiny.forward([42] * 6)
    np.testing.assert_allclose(lg, np.broadcast_to(lg[0], lg.shape), rtol=0, atol=1e-10)


def test_rope_relative_position_invariance(tiny):
    # q.k after RoPE depends only on position differences: shifting all
    # positions by a constant must not change anything
    ids = rng_ids(8, tiny.vocab_size, seed=8)
    base = tiny.forward(ids)
    shifted = tiny.forward(ids, positions=np.arange(8) + 37)
    np.testing.assert_allclose(shifted, base, rtol=0, atol=1e-9)
    # ... whereas changing the relative spacing does change the logits
    spread = tiny.forward(ids, positions=np.arange(8) * 3)
    assert np.abs(spread[1:] - base[1:]).max() > 1e-2


def test_rope_makes_order_matter(tmp_path):
    # One layer: without RoPE the last position attends to a SET of tokens,
    # so swapping two earlier tokens leaves its logits unchanged.  With RoPE
    # it must change them.
    path = write_tiny_gguf(tmp_path / "one.gguf", n_layer=1, seed=9)
    m = ReferenceModel(path)
    a, b, c = 17, 200, 99
    with_rope = m.forward([a, b, c])[-1], m.forward([b, a, c])[-1]
    assert np.abs(with_rope[0] - with_rope[1]).max() > 1e-2
    m.inv_freq = np.zeros_like(m.inv_freq)  # rotation angle 0 everywhere
    no_rope = m.forward([a, b, c])[-1], m.forward([b, a, c])[-1]
    np.testing.assert_allclose(no_rope[0], no_rope[1], rtol=0, atol=1e-10)


def test_rope_formula_adjacent_pairs(tiny):
    # explicit expected values: e_{2i} at position p -> cos(p*th_i) e_{2i} + sin(p*th_i) e_{2i+1}
    hd, base = tiny.head_dim, tiny.rope_base
    for i in range(hd // 2):
        x = np.zeros((1, 1, hd))
        x[0, 0, 2 * i] = 1.0
        pos = 5
        y = tiny.rope(x, np.array([pos]))[0, 0]
        th = pos * base ** (-2.0 * i / hd)
        expect = np.zeros(hd)
        expect[2 * i] = math.cos(th)
        expect[2 * i + 1] = math.sin(th)
        np.testing.assert_allclose(y, expect, atol=1e-14)
    # position 0 is the identity; rotation preserves norms
    x = np.random.default_rng(0).normal(size=(3, 2, hd))
    np.testing.assert_allclose(tiny.rope(x[:1], np.array([0])), x[:1], atol=0)
    y = tiny.rope(x, np.array([1, 100, 12345]))
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)


def test_huge_rope_base_leaves_only_first_pair_rotating(tmp_path):
    # base**(-2i/n) with base=1e30: pair 0 always has frequency 1 (not an
    # identity!), all other pairs become (numerically) fixed.
    path = write_tiny_gguf(tmp_path / "huge.gguf", rope_base=1e30, seed=10)
    m = ReferenceModel(path)
    assert m.inv_freq[0] == 1.0
    assert np.all(m.inv_freq[1:] < 1e-3)
    x = np.random.default_rng(1).normal(size=(1, 1, m.head_dim))
    y = m.rope(x, np.array([3]))
    np.testing.assert_allclose(y[..., 2:], x[..., 2:], atol=1e-2 * 3)
    assert np.abs(y[..., :2] - x[..., :2]).max() > 0.1


def test_partial_rotary_dims_pass_through(tmp_path):
    path = write_tiny_gguf(tmp_path / "partial.gguf", seed=11,
                           extra_metadata={"{arch}.rope.dimension_count": 8})
    m = ReferenceModel(path)
    assert (m.rope_dim, m.head_dim) == (8, 16)
    x = np.random.default_rng(2).normal(size=(4, 2, 16))
    y = m.rope(x, np.arange(4) + 1)
    np.testing.assert_array_equal(y[..., 8:], x[..., 8:])
    assert np.abs(y[..., :8] - x[..., :8]).max() > 0.1
    # and the naive implementation agrees on the full model
    ids = rng_ids(5, m.vocab_size, seed=12)
    np.testing.assert_allclose(m.forward(ids), naive_forward(path, ids), rtol=0, atol=1e-9)


def test_normal_rope_on_gguf_equals_hf_neox_on_unpermuted_weights(tiny):
    """The claim behind 'normal' mode: llama.cpp's converter permutes HF q/k
    rows so that adjacent-pair RoPE on GGUF weights == HF rotate_half RoPE on
    the original HF weights.  Undo the permutation, switch to neox -> same logits."""
    ids = rng_ids(9, tiny.vocab_size, seed=13)
    expected = tiny.forward(ids)
    hf = ReferenceModel(tiny.path, rope_mode="neox")
    for L in range(hf.n_layer):
        q, k = f"blk.{L}.attn_q.weight", f"blk.{L}.attn_k.weight"
        hf.tensors[q] = unpermute_llamacpp(hf.tensors[q], hf.n_head)
        hf.tensors[k] = unpermute_llamacpp(hf.tensors[k], hf.n_head_kv)
    np.testing.assert_allclose(hf.forward(ids), expected, rtol=0, atol=1e-9)
    # sanity: neox on the GGUF (permuted) weights is NOT the same model
    wrong = ReferenceModel(tiny.path, rope_mode="neox").forward(ids)
    assert np.abs(wrong - expected).max() > 1e-2


def test_gqa_mapping_matters(tiny):
    # Swapping the two kv heads' k/v rows must change the output, so the
    # q-head -> kv-head mapping is actually exercised (and the naive loop,
    # using h*n_kv//n_head, agrees with the reference elsewhere).
    ids = rng_ids(6, tiny.vocab_size, seed=14)
    base = tiny.forward(ids)
    m = ReferenceModel(tiny.path)
    hd = m.head_dim
    for name in ("blk.0.attn_k.weight", "blk.0.attn_v.weight"):
        w = m.tensors[name]
        m.tensors[name] = np.concatenate([w[hd:2 * hd], w[:hd]])
    assert np.abs(m.forward(ids) - base).max() > 1e-2
    # The interleaved mapping (kv head = h % n_kv) would be a different
    # model: emulate it by reordering q heads [0,2,1,3] together with the
    # matching attn_output input columns (so only the q->kv pairing changes).
    m2 = ReferenceModel(tiny.path)
    perm = [0, 2, 1, 3]
    for L in range(m2.n_layer):
        wq = m2.tensors[f"blk.{L}.attn_q.weight"]
        m2.tensors[f"blk.{L}.attn_q.weight"] = wq.reshape(4, hd, -1)[perm].reshape(wq.shape)
        wo = m2.tensors[f"blk.{L}.attn_output.weight"]
        m2.tensors[f"blk.{L}.attn_output.weight"] = wo.reshape(wo.shape[0], 4, hd)[:, perm].reshape(wo.shape)
    assert np.abs(m2.forward(ids) - base).max() > 1e-2
    # control: a permutation that keeps every q head on its kv head is a no-op
    m3 = ReferenceModel(tiny.path)
    perm = [1, 0, 3, 2]
    for L in range(m3.n_layer):
        wq = m3.tensors[f"blk.{L}.attn_q.weight"]
        m3.tensors[f"blk.{L}.attn_q.weight"] = wq.reshape(4, hd, -1)[perm].reshape(wq.shape)
        wo = m3.tensors[f"blk.{L}.attn_output.weight"]
        m3.tensors[f"blk.{L}.attn_output.weight"] = wo.reshape(wo.shape[0], 4, hd)[:, perm].reshape(wo.shape)
    np.testing.assert_allclose(m3.forward(ids), base, rtol=0, atol=1e-10)


# per-type bound on |dequant(quant(w)) - w| as a fraction of max|w| of the tensor
# (half a quantization step; a full step for the symmetric Q4_0/Q5_0 whose
# scale is set by the signed max, so -max clips to +7 / +15)
_QUANT_TOL = {
    Q.F16: 1e-3, Q.BF16: 8e-3,
    Q.Q8_0: 1 / 254 + 2e-3, Q.Q5_0: 1 / 16 + 2e-3, Q.Q5_1: 1 / 31 + 2e-3,
    Q.Q4_0: 1 / 8 + 2e-3, Q.Q4_1: 1 / 15 + 2e-3,
}


@pytest.mark.parametrize("qtype", list(_QUANT_TOL), ids=lambda t: t.name)
def test_quantized_tiny_models_dequantize_close_to_f32(tmp_path, qtype):
    f32 = ReferenceModel(write_tiny_gguf(tmp_path / "f32.gguf", seed=15, tied=False))
    path = write_tiny_gguf(tmp_path / f"{qtype.name}.gguf", seed=15, tied=False, weight_type=qtype)
    qm = ReferenceModel(path)
    for name, ref in f32.tensors.items():
        got = qm.tensors[name]
        assert got.shape == ref.shape, name
        want_type = Q.F32 if name.endswith("norm.weight") else qtype
        assert qm.tensor_types[name] == want_type, name
        err = np.abs(got.astype(np.float64) - ref).max()
        if want_type == Q.F32:
            assert err == 0.0, name
        else:
            assert 0 < err <= _QUANT_TOL[qtype] * np.abs(ref).max(), (name, err)
    ids = rng_ids(8, f32.vocab_size, seed=16)
    a, b = f32.forward(ids), qm.forward(ids)
    # same model up to quantization noise: same argmax for most positions,
    # logits strongly correlated
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > (0.999 if qtype in (Q.F16, Q.BF16, Q.Q8_0) else 0.97), corr


def test_embed_type_separate(tmp_path):
    path = write_tiny_gguf(tmp_path / "e.gguf", weight_type=Q.Q4_1, embed_type=Q.Q8_0, seed=17)
    m = ReferenceModel(path)
    assert m.tensor_types["token_embd.weight"] == Q.Q8_0
    assert m.tensor_types["blk.1.ffn_up.weight"] == Q.Q4_1
    assert m.tied_output


def test_tiny_tokenizer_is_real(tiny):
    md = tiny.metadata
    assert md["tokenizer.ggml.model"] == "gpt2"
    assert md["tokenizer.ggml.pre"] == "default"
    assert md["tokenizer.ggml.eos_token_id"] == 2
    assert md["tokenizer.ggml.add_bos_token"] is False
    assert md["tokenizer.chat_template"] == CHATML_TEMPLATE
    toks = md["tokenizer.ggml.tokens"]
    types = md["tokenizer.ggml.token_type"]
    assert toks[:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert list(types[:3]) == [3, 3, 3] and set(types[3:]) == {1}
    assert len(toks) == tiny.vocab_size
    tk = build_hf_tokenizer(md)
    enc = tk.encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n")
    assert enc.tokens == ["<|im_start|>", "user", "Ċ", "W", "h", "at", "Ġis", "Ġthe", "Ġcapital",
                          "Ġof", "ĠF", "ran", "c", "e", "?", "<|im_end|>", "Ċ"]
    assert enc.ids[0] == 1 and enc.ids[-2] == 2
    for text in ["the cat and the hat", "héllo wörld ✓ 123\n\n  x", "Paris"]:
        ids = tk.encode(text).ids
        assert max(ids) < tiny.vocab_size
        assert tk.decode(ids) == text
    assert len(tk.encode(" the the the").ids) == 3  # merges really fire


def test_tiny_chat_template_renders():
    jinja2 = pytest.importorskip("jinja2")
    out = jinja2.Template(CHATML_TEMPLATE).render(
        messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert out == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


# ----------------------------------------------------------------------
# real model
# ----------------------------------------------------------------------
needs_real = pytest.mark.realmodel


@pytest.fixture(scope="module")
def real(real_gguf):
    return ReferenceModel(real_gguf)


def _top5(m, logits):
    toks = m.metadata["tokenizer.ggml.tokens"]
    p = softmax(logits)
    order = np.argsort(-p)[:5]
    return [(int(i), toks[i], float(p[i])) for i in order]


@needs_real
def test_real_metadata_and_layout(real):
    assert (real.n_layer, real.d_model, real.n_head, real.n_head_kv, real.head_dim) == (30, 576, 9, 3, 64)
    assert (real.d_ff, real.vocab_size, real.rope_base, real.rope_dim) == (1536, 49152, 100000.0, 64)
    assert real.tied_output
    assert real.tensor_types["token_embd.weight"] == Q.Q8_0
    assert real.tensor_types["blk.0.attn_q.weight"] == Q.Q4_1
    assert real.tensor_gguf_shapes["blk.0.attn_k.weight"] == (576, 192)
    assert real.tensors["blk.0.attn_k.weight"].shape == (192, 576)   # (out, in)
    assert real.tensor_gguf_shapes["blk.0.ffn_down.weight"] == (1536, 576)
    assert real.tensors["blk.0.ffn_down.weight"].shape == (576, 1536)


@needs_real
def test_real_tokenizer_ids(real):
    toks = real.metadata["tokenizer.ggml.tokens"]
    assert [toks[i] for i in SMOLLM_PARIS_IDS] == ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]
    tk = build_hf_tokenizer(real.metadata)
    assert tk.encode(SMOLLM_CHAT_TEXT).ids == SMOLLM_CHAT_IDS
    assert tk.encode("The capital of France is").ids == SMOLLM_PARIS_IDS


@needs_real
def test_real_chat_prompt_answer(real):
    lg = real.forward(SMOLLM_CHAT_IDS)
    top = _top5(real, lg[-1])
    assert lg.shape == (len(SMOLLM_CHAT_IDS), 49152)
    assert top[0][1] == "The"          # observed: 'The' p~0.56
    assert top[0][2] > 0.3
    assert "Paris" in [t for _, t, _ in top]


@needs_real
def test_real_paris(real):
    lg = real.forward(SMOLLM_PARIS_IDS)
    top = _top5(real, lg[-1])
    print("\n'The capital of France is' top5:", top)
    assert top[0][1] == "ĠParis"       # observed: p~0.77
    assert top[0][2] > 0.5


@needs_real
def test_real_rope_layout_by_likelihood(real):
    """On the real weights, adjacent-pair ('normal') RoPE must model text far
    better than half-split ('neox') RoPE or no RoPE at all."""
    tk = build_hf_tokenizer(real.metadata)
    ids = tk.encode("The capital of France is Paris. It is known for the Eiffel Tower, which was "
                    "built in 1889 for the World's Fair. Paris is also famous for its museums, "
                    "such as the Louvre.").ids

    def nll(**kw):
        saved = (real.rope_mode, real.inv_freq)
        try:
            for k, v in kw.items():
                setattr(real, k, v)
            lp = np.log(softmax(real.forward(ids)))
            return -float(np.mean(lp[np.arange(len(ids) - 1), ids[1:]]))
        finally:
            real.rope_mode, real.inv_freq = saved

    normal = nll()
    neox = nll(rope_mode="neox")
    none = nll(inv_freq=np.zeros_like(real.inv_freq))
    print(f"\nmean NLL: normal={normal:.3f} neox={neox:.3f} no-rope={none:.3f}")
    # observed: normal=1.297 neox=2.585 no-rope=3.026
    assert normal < 1.6
    assert neox > normal + 0.8
    assert none > normal + 0.8



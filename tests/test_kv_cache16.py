"""A float16 KV cache (``import_gguf(..., kv_cache="float16")``) against the
float64 reference rounded as onnxruntime's float16 GroupQueryAttention rounds
(tests/reference.py, ``kv_cache="float16"``), and against the plain float64
reference, which shows the difference is real.

How close is close: float16 rounding is a step function. Where the graph's
float32 value and the reference's float64 one lie either side of a rounding
boundary (about 1 value in 1,000 in the first layer here), they round to
neighbouring float16 numbers, and that one step (2^-11 of the value) travels
on through the later layers and positions, where it moves other values across
boundaries. So the float16 folder cannot match its reference to float32's 1e-6;
what holds on every tiny model of test_gguf_import (23 of them, measured over
120 tokens) is

* the first layer's cached keys and values are the reference's, bit for bit,
  for 99 % of the numbers or more (measured 99.7 to 100 %), and a float16 step
  or two off for the rest;
* logits within 5e-3 of the rounded reference (measured at most 3.4e-3; the
  reference itself, nudged by float32-sized noise of 2^-24 before each
  rounding, moves by as much: up to 2.5e-3), where a float32 cache is within
  1e-5 of the plain one;
* on average less than half as far from the rounded reference as from the
  plain one (the mean |difference| of the logits: 0.01 to 0.45 of it; 0.65 for
  models whose 4-bit pieces compute 3e-5 away from float64, Q5_0's, so the
  Gemma 3 model here has Q8_0 weights), which also shows that the float16
  folder is not simply the float32 one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from gguf import GGMLQuantizationType as Q
from reference import ReferenceModel
from test_gguf_import import TEXT, TINY_CASES
from test_undo import Counting
from tiny_gguf import write_tiny_gguf

from lmdesk.convert.gguf_import import import_gguf
from lmdesk.engine.errors import ModelImportError
from lmdesk.engine.inspect import Inspector
from lmdesk.engine.model import LoadedModel
from lmdesk.engine.session import Session

LOGITS_TOL = 5e-3  # max |logit difference| against the rounded reference (see the module text)
PROBS_TOL = 1e-3  # attention weights, the lens' probabilities
LOGPROB_TOL = 5e-3  # a session's log-probabilities

CASES = {
    "llama": TINY_CASES["q4_1-gqa2"],
    "qwen2": TINY_CASES["qwen2-biases-neox"],
    # sliding-window and global layers (each with its own rotary tables), q/k norms
    "gemma3": dict(TINY_CASES["gemma3-window-qk-norm"], weight_type=Q.Q8_0),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Each case's GGUF file and its folder imported with a float16 cache."""
    base = tmp_path_factory.mktemp("kv16")
    made = {}
    for name, kw in CASES.items():
        src = write_tiny_gguf(base / f"{name}.gguf", **dict(kw, ctx=512))
        import_gguf(src, base / name, kv_cache="float16")
        made[name] = (src, base / name)
    return made


def _references(src: Path) -> tuple[ReferenceModel, ReferenceModel]:
    return ReferenceModel(src, kv_cache="float16"), ReferenceModel(src)


def _closer(got: np.ndarray, rounded: np.ndarray, plain: np.ndarray, tol: float) -> None:
    """``got`` within ``tol`` of the rounded reference, and on average less than
    half as far from it as from the plain one (which it therefore differs from)."""
    got = np.asarray(got, np.float64)
    assert got.shape == rounded.shape == plain.shape
    assert np.abs(got - rounded).max() < tol
    assert np.abs(got - rounded).mean() < 0.5 * np.abs(got - plain).mean()


def _first_layer_matches(keys: np.ndarray, values: np.ndarray, kv: list, n: int) -> None:
    """The first layer's cached keys and values ``[1, kv_heads, >= n, head_dim]`` are the
    rounded reference's ([n, kv_heads, head_dim]), but for a float16 step here and there
    (where the reference's float64 and the graph's float32 round either way)."""
    ref_k, ref_v = kv[0]
    for cached, want in ((keys, ref_k), (values, ref_v)):
        assert cached.dtype == np.float16
        got = cached[0, :, :n].transpose(1, 0, 2)
        assert np.mean(got.astype(np.float64) == want) >= 0.99
        # one float16 step of an input of the rotation moves the pair it makes by that step's size,
        # however small the result: steps of the head's largest number (x 2: the rounding after it)
        step = np.spacing(np.abs(want).max(axis=-1, keepdims=True).astype(np.float16)).astype(np.float64)
        assert (np.abs(got - want) <= 2 * step).all()


@pytest.mark.parametrize("arch", list(CASES))
def test_a_float16_cache_is_the_rounded_reference(folders, arch: str) -> None:
    src, folder = folders[arch]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["io"]["kv_dtype"] == "float16"
    graph = onnx.load(folder / "model.onnx", load_external_data=False)
    kinds = {v.name: v.type.tensor_type.elem_type for v in [*graph.graph.input, *graph.graph.output]}
    assert kinds["past_key_values.0.key"] == kinds["present.0.value"] == onnx.TensorProto.FLOAT16
    assert kinds["logits"] == onnx.TensorProto.FLOAT
    model = LoadedModel(folder, threads=1)
    assert model.empty_cache().keys[0].dtype == np.float16
    rounded, plain = _references(src)
    ids = model.tokenizer.encode(TEXT * 3).ids
    logits, cache = model.forward(ids, model.empty_cache())
    kv: list = []
    want = rounded.head(rounded.hidden_states(ids, kv=kv)[-1])
    assert np.abs(want).max() > 0.5
    _closer(logits, want, plain.forward(ids), LOGITS_TOL)
    assert np.abs(logits - plain.forward(ids)).mean() > 1e-4  # a float32 cache: 4e-7
    _first_layer_matches(cache.keys[0], cache.values[0], kv, len(ids))


@pytest.mark.parametrize("arch", list(CASES))
def test_decoding_after_a_prefill_writes_the_float16_cache_in_place(folders, arch: str) -> None:
    src, folder = folders[arch]
    model = LoadedModel(folder, threads=1)
    assert model.cache_in_place
    rounded, plain = _references(src)
    ids = model.tokenizer.encode(TEXT * 3).ids
    head, cache = model.forward(ids[:50], model.empty_cache())
    rows = [head]
    for t in ids[50:]:
        before = cache
        row, cache = model.forward([t], cache)
        rows.append(row)
        if before.capacity >= cache.length:  # room left: the same float16 arrays, written in place
            assert cache.keys[0] is before.keys[0] and cache.values[-1] is before.values[-1]
    assert cache.length == len(ids) and cache.keys[-1].dtype == np.float16
    kv: list = []
    want = rounded.head(rounded.hidden_states(ids, kv=kv)[-1])
    _closer(np.concatenate(rows), want, plain.forward(ids), LOGITS_TOL)
    _first_layer_matches(cache.keys[0], cache.values[0], kv, len(ids))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _check_session(s: Session, rounded: ReferenceModel, plain: ReferenceModel) -> None:
    """The document's log-probabilities and the next token's distribution against the references."""
    ids = s.ids
    lp16, lp = _log_softmax(rounded.forward(ids)), _log_softmax(plain.forward(ids))
    at = np.arange(1, len(ids))
    got = np.array([t.stats.logprob for t in s.doc.tokens[1:]] + list(_log_softmax(s.next_logits())))
    _closer(got, np.concatenate([lp16[at - 1, ids[1:]], lp16[-1]]), np.concatenate([lp[at - 1, ids[1:]], lp[-1]]),
            LOGPROB_TOL)


@pytest.mark.parametrize("arch", list(CASES))
def test_replace_and_undo_in_a_session_keep_the_float16_cache(folders, arch: str) -> None:
    src, folder = folders[arch]
    model = LoadedModel(folder, threads=1)
    rounded, plain = _references(src)
    s = Session(model, chunk_size=32)
    s.load_text(TEXT * 3)
    n = len(s.doc)
    _check_session(s, rounded, plain)
    kept = [a[:, :, :n].copy() for a in (*s.cache.keys, *s.cache.values)]
    with Counting(model) as replace:
        s.replace(5, s.doc.tokens[5].id + 1)
    assert len(s.doc) == 6
    _check_session(s, rounded, plain)
    s.append_text(TEXT)  # writes over the cache positions the undo needs
    with Counting(model) as undo:
        assert s.undo() and s.undo()
    assert len(s.doc) == n
    assert undo.positions <= 2  # the positions written over were put back, not computed again
    assert replace.positions >= 1
    # the float16 cache as it was, bit for bit; but the positions the session computes again
    # in a step of their own, not in a chunk (float32 sums in another order, rounded either
    # way): the one before the replaced token (the edit's) and the last one (the undo's)
    again = [4, n - 1]
    for a, b in zip((*s.cache.keys, *s.cache.values), kept):
        assert a.dtype == np.float16
        assert np.array_equal(np.delete(a[:, :, :n], again, axis=2), np.delete(b, again, axis=2))
        assert np.abs(a[:, :, again].astype(np.float64) - b[:, :, again]).max() < 1e-2
    _check_session(s, rounded, plain)


@pytest.mark.parametrize("arch", list(CASES))
def test_the_inspection_reads_the_float16_keys(folders, arch: str) -> None:
    """The attention weights, recomputed from GroupQueryAttention's float16 present keys
    and its rounded rotated query, and the logit lens, with and without a session's cache."""
    src, folder = folders[arch]
    model = LoadedModel(folder, threads=1)
    rounded, plain = _references(src)
    session = Session(model)
    session.load_text(TEXT)
    ids = session.ids
    n = len(ids)
    inspector = Inspector(model)
    found, ref16, ref = [], [], []
    for position in (9, n // 2, n):
        for cache in (None, session.cache):
            f = inspector.inspect(ids, position, cache=cache)
            found.append(f)
            ref16.append(rounded.inspect(ids, position - 1))
            ref.append(plain.inspect(ids, position - 1))
    for key, get in (("attention", lambda f: f.attention), ("lens", lambda f: _softmax(f.lens_logits))):
        got = np.concatenate([get(f).ravel() for f in found])
        conv = (lambda x: x) if key == "attention" else _softmax
        _closer(got, np.concatenate([conv(r[key]).ravel() for r in ref16]),
                np.concatenate([conv(r[key]).ravel() for r in ref]), PROBS_TOL)
    # the first layer's weights are GroupQueryAttention's to float32 rounding (its keys bit for bit)
    first = np.concatenate([f.attention[0].ravel() for f in found])
    assert np.abs(first - np.concatenate([r["attention"][0].ravel() for r in ref16])).max() < 1e-4


def _softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def test_the_cache_type_is_checked_in_one_sentence(tmp_path: Path) -> None:
    src = write_tiny_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(ModelImportError, match=r"^The KV cache can be kept in float32 or float16, not in 'bf16'\.$"):
        import_gguf(src, tmp_path / "m", kv_cache="bf16")
    assert not (tmp_path / "m").exists()
    proc = subprocess.run([sys.executable, "-m", "lmdesk", "import-gguf", str(src), "--out", str(tmp_path / "m"),
                           "--kv-cache", "half"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "lmdesk: The KV cache can be kept in float32 or float16, not in 'half'."


def test_the_command_line_imports_with_a_float16_cache(tmp_path: Path) -> None:
    src = write_tiny_gguf(tmp_path / "tiny.gguf", weight_type=Q.Q4_0)
    for kind in ("float16", "float32", None):
        out = tmp_path / f"m-{kind}"
        flag = ["--kv-cache", kind] if kind else []
        proc = subprocess.run([sys.executable, "-m", "lmdesk", "import-gguf", str(src), "--out", str(out), *flag],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert json.loads((out / "manifest.json").read_text())["io"]["kv_dtype"] == (kind or "float32")
        assert LoadedModel(out, threads=1).empty_cache().keys[0].dtype == np.dtype(kind or "float32")

"""Every embedding table compact and exact (issue 12).

For each GGUF type a table comes in, tied to the output and not: the rows the
graph looks up are bit for bit gguf-py's dequantized rows (every row, from the
decoder graph's own lookup, and a few from the inspection graph's documented
residual after the embeddings), the logits match the float64 reference
(tests/reference.py), the folder holds the table in about the file's own bytes
(computed from the type's block size, against the same model with an F32
table), and the session does not widen it into a float32 copy in memory
(onnxruntime's optimized graph, which holds every folded constant). F16 and
BF16 matrices stay 16-bit in the folder too.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from gguf import GGMLQuantizationType as Q
from onnx import TensorProto, helper
from reference import ReferenceModel
from tiny_gguf import write_tiny_gguf

from lmdesk.convert.gguf_import import import_gguf
from lmdesk.engine.inspect import Inspector
from lmdesk.engine.model import LoadedModel

TOL = 1e-3  # max |logit difference| against the float64 reference
V, D = 1024, 256  # a table that is most of the folder; 256: a K-quant's super-block
SHAPE = dict(vocab=V, d_model=D, n_head=4, n_head_kv=2, d_ff=256, n_layer=1, ctx=V, weight_type=Q.F32,
             output_type=Q.Q8_0)
KINDS = [Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS, Q.F16, Q.BF16, Q.F32]
CASES = [(kind, tied) for kind in KINDS for tied in (True, False)]
IDS = [f"{kind.name}-{'tied' if tied else 'untied'}" for kind, tied in CASES]
TEXT = "the cat sat on the mat, then thought about it: 12 + 30 = 42"


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir())


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    """(GGUF file, model folder) of each case, made once for the module."""
    made: dict[tuple[Q, bool], tuple[Path, Path]] = {}

    def get(kind: Q, tied: bool, **extra) -> tuple[Path, Path]:
        key = (kind, tied, tuple(sorted(extra.items())))
        if key not in made:
            root = tmp_path_factory.mktemp(f"{kind.name}-{tied}")
            src = write_tiny_gguf(root / "tiny.gguf", **{**SHAPE, "embed_type": kind, "tied": tied, **extra})
            made[key] = (src, import_gguf(src, root / "model").folder)
        return made[key]

    return get


def _gguf_table(src: Path) -> np.ndarray:
    """token_embd as gguf-py dequantizes it, float32 [V, D]."""
    t = next(t for t in gguf.GGUFReader(str(src)).tensors if t.name == "token_embd.weight")
    return np.asarray(gguf.quants.dequantize(t.data, t.tensor_type), np.float32).reshape(V, D)


def _looked_up_rows(folder: Path, ids: list[int]) -> np.ndarray:
    """The rows the decoder graph gathers for ``ids``: its first layer's norm
    reads the residual after the embeddings; that value is made an output."""
    model = onnx.load(str(folder / "model.onnx"))  # the weights too: a few MB
    first = next(n for n in model.graph.node if n.op_type == "SimplifiedLayerNormalization")
    model.graph.output.append(helper.make_tensor_value_info(first.input[0], TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {"input_ids": np.array([ids], np.int64), "attention_mask": np.ones((1, len(ids)), np.int64)}
    for i in session.get_inputs():
        if i.name.startswith("past_key_values"):
            feeds[i.name] = np.zeros((1, SHAPE["n_head_kv"], 0, D // SHAPE["n_head"]), np.float32)
    return session.run([first.input[0]], feeds)[0][0]


@pytest.mark.parametrize("kind,tied", CASES, ids=IDS)
def test_the_rows_looked_up_are_the_gguf_values(models, kind: Q, tied: bool) -> None:
    src, folder = models(kind, tied)
    expected = _gguf_table(src)
    assert expected.std() > 0.01  # real rows, not zeros
    ids = list(range(V))[::-1]  # every row, in an order the graph cannot take for granted
    assert np.array_equal(_looked_up_rows(folder, ids), expected[ids])
    model = LoadedModel(folder, threads=1)
    text = model.tokenizer.encode(TEXT).ids
    inspector = Inspector(model)
    for position in (1, 7, len(text)):  # the inspection graph's residual after the embeddings
        hidden = inspector.inspect(text, position).hidden
        assert np.array_equal(hidden[0], expected[text[position - 1]])


@pytest.mark.parametrize("kind,tied", CASES, ids=IDS)
def test_the_logits_match_the_reference(models, kind: Q, tied: bool) -> None:
    src, folder = models(kind, tied)
    model = LoadedModel(folder, threads=1)
    ids = model.tokenizer.encode(TEXT).ids
    logits, _ = model.forward(ids, model.empty_cache())
    ref = ReferenceModel(src).forward(ids)
    assert np.abs(ref).max() > 0.5
    assert np.abs(logits - ref).max() < TOL
    lens = Inspector(model).inspect(ids, 9).lens_logits  # the inspection graph's own output product
    assert np.abs(lens[-1] - ref[8]).max() < TOL


def _gguf_bytes_per_weight(kind: Q) -> float:
    elements, nbytes = gguf.GGML_QUANT_SIZES[kind]
    return nbytes / elements


@pytest.mark.parametrize("kind,tied", CASES, ids=IDS)
def test_the_folder_holds_the_table_compactly(models, kind: Q, tied: bool) -> None:
    """The same model with an F32 table takes 4 bytes a weight for it (a random
    float32 table cannot be stored in fewer); what a type's table takes is the
    difference plus those. A 16-bit or 4-bit table takes about the file's own
    bytes (a tied 4-bit one: with the output product's own scales beside it,
    at most 1.5 times); a table of 5 to 8 bits a weight, read by the lookup a
    byte a weight, at most 1.2 bytes with its scales and offsets."""
    _, folder = models(kind, tied)
    _, f32_folder = models(Q.F32, tied)
    table = _folder_bytes(folder) - _folder_bytes(f32_folder) + 4 * V * D
    elements, nbytes = gguf.GGML_QUANT_SIZES[kind]
    in_file = nbytes / elements * V * D  # the GGUF file's bytes for the table
    if kind in (Q.F16, Q.BF16, Q.F32):
        bound = in_file
    elif kind in (Q.Q4_0, Q.Q4_1, Q.Q4_K):
        bound = (1.5 if tied else 1.05) * in_file
    else:
        bound = 1.2 * V * D
    assert table <= bound + 4096, f"{table / (V * D):.3f} bytes a weight; the file has {nbytes / elements:.3f}"


def _float_tables_in_memory(folder: Path, tmp_path: Path) -> int:
    """Float32 constants of a table's size in the session, once it has folded
    what it folds at load (as lmdesk's engine opens it)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimized.onnx"), load_external_data=False).graph
    return sum(1 for t in graph.initializer if t.data_type == TensorProto.FLOAT and int(np.prod(t.dims)) >= V * D)


@pytest.mark.parametrize("kind,tied", CASES, ids=IDS)
def test_the_table_is_not_widened_in_memory(models, tmp_path: Path, kind: Q, tied: bool) -> None:
    """The lookup reads the table as stored; only a tied product of a small
    8-bit or float table is one float32 matrix at load (the fastest exact
    product; TIED_FLOAT_BYTES), a 4-bit one keeps its 4 bits."""
    _, folder = models(kind, tied)
    widened = _float_tables_in_memory(folder, tmp_path)
    if kind == Q.F32 or (tied and kind not in (Q.Q4_0, Q.Q4_1, Q.Q4_K)):
        assert widened == 1  # the F32 table itself, or the tied product
    else:
        assert widened == 0


@pytest.mark.parametrize("kind", [Q.F16, Q.BF16], ids=["F16", "BF16"])
def test_16_bit_matrices_stay_16_bit_in_the_folder(models, kind: Q) -> None:
    src, folder = models(Q.Q8_0, False, weight_type=kind)
    _, f32_folder = models(Q.Q8_0, False, weight_type=Q.F32)
    reader = gguf.GGUFReader(str(src))
    matrices = sum(int(np.prod(t.shape)) for t in reader.tensors
                   if t.tensor_type == kind and len(t.shape) == 2)
    assert matrices > V * D // 2  # the layers' matrices are a good part of the folder
    assert _folder_bytes(folder) <= _folder_bytes(f32_folder) - 2 * matrices + 4096
    model = LoadedModel(folder, threads=1)
    ids = model.tokenizer.encode(TEXT).ids
    logits, _ = model.forward(ids, model.empty_cache())
    assert np.abs(logits - ReferenceModel(src).forward(ids)).max() < TOL

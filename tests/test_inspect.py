"""Looking inside the model (lmdesk.engine.inspect, lmdesk inspect) against
the independent float64 reference (tests/reference.py): the logit lens of
every layer, every layer's attention weights, the residual stream, and the
last layer's lens against the model's own distribution (what `score` gives)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from reference import ReferenceModel
from test_gguf_import import TEXT, TINY_CASES
from test_model_folder import _make_hf
from tiny_gguf import write_tiny_gguf

from lmdesk import cli_inspect
from lmdesk.convert.gguf_import import import_gguf
from lmdesk.engine.errors import Cancelled, ModelLoadError
from lmdesk.engine.inspect import InspectionError, Inspector
from lmdesk.engine.model import LoadedModel
from lmdesk.engine.session import Session

TOL = 1e-4  # probabilities and attention weights against the reference
SAME = 1e-5  # the last layer's lens against the model's own distribution

# every family the importer knows, and the kinds of weights and heads that change the graph
FAMILIES = ["f32-gqa2", "q4_1-gqa2", "f16-untied-3heads-mqa", "q5_0-pieces", "llama3-rope-freqs",
            "qwen2-biases-neox", "qwen3-qk-norm", "gemma-gelu", "gemma2-window-softcaps",
            "gemma3-window-qk-norm", "phi3-fused", "phi3-longrope"]


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _check_against_reference(found, ref: dict, top: int) -> None:
    """The lens of every layer (the whole distribution, its top tokens and
    probabilities), the attention and the residual stream against the reference's."""
    want = _softmax(ref["lens"])
    got = _softmax(found.lens_logits.astype(np.float64))
    assert np.abs(got - want).max() < TOL
    for lens, row in zip(found.layers, want):
        assert len(lens.top_ids) == top
        # the reference's k most likely probabilities, in order; the ids where no near-tie makes them ambiguous
        best = np.sort(row)[::-1][:top]
        assert np.abs(np.array(lens.top_probs) - best).max() < TOL
        assert np.abs(row[list(lens.top_ids)] - best).max() < TOL
        if found.actual_id is not None:
            p = row[found.actual_id]
            assert abs(lens.actual_prob - p) < TOL
            # 1 + the tokens more likely, give or take those within the tolerance of it
            assert 1 + np.count_nonzero(row > p + TOL) <= lens.actual_rank <= 1 + np.count_nonzero(row > p - TOL)
    assert found.attention.shape == ref["attention"].shape
    assert np.abs(found.attention - ref["attention"]).max() < TOL
    scale = np.abs(ref["hidden"]).max()
    assert np.abs(found.hidden - ref["hidden"]).max() < TOL * max(scale, 1.0)  # float32 through every block
    assert np.allclose(found.hidden_norms, np.linalg.norm(ref["hidden"], axis=-1), rtol=TOL)


def _check_rows(found, windows: list[int | None]) -> None:
    """Each head's weights sum to 1 over keys 0 … P-1, and a windowed layer
    (``windows[layer]``: its window, or None) sees only its window."""
    p = found.position
    att = found.attention.astype(np.float64)
    assert att.shape[0] == len(windows) and att.shape[-1] == p
    assert np.abs(att.sum(axis=-1) - 1).max() < 1e-5
    assert (att >= 0).all()
    for layer, window in enumerate(windows):
        if window is not None:
            assert (att[layer, :, : max(0, p - window)] == 0).all()
            assert (att[layer, :, max(0, p - window):] > 0).all()


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """The tiny GGUF file and its imported folder of each case, made once."""
    made: dict[str, tuple[Path, Path]] = {}
    base = tmp_path_factory.mktemp("inspect")
    for case in FAMILIES:
        src = write_tiny_gguf(base / f"{case}.gguf", **TINY_CASES[case])
        import_gguf(src, base / case)
        made[case] = (src, base / case)
    return made


def _windows(src: Path) -> list[int | None]:
    ref = ReferenceModel(src)
    return [ref.window if ref.swa[layer] and ref.window else None for layer in range(ref.n_layer)]


@pytest.mark.parametrize("case", FAMILIES)
def test_the_lens_and_the_attention_of_every_family_are_the_references(tiny_folders, case: str) -> None:
    src, folder = tiny_folders[case]
    model = LoadedModel(folder, threads=1)
    ref = ReferenceModel(src)
    ids = model.tokenizer.encode(TEXT).ids
    n = len(ids)
    inspector = Inspector(model)
    windows = _windows(src)
    # the first token, early ones, past a window of 5 or 6, and the token after the text; out of order
    for position in (n, 1, 2, 9, n - 1, n // 2):
        found = inspector.inspect(ids, position, top=4)
        assert found.position == position and found.query == position - 1
        assert found.actual_id == (ids[position] if position < n else None)
        assert len(found.layers) == ref.n_layer and [x.layer for x in found.layers] == list(range(1, ref.n_layer + 1))
        _check_against_reference(found, ref.inspect(ids, position - 1), 4)
        _check_rows(found, windows)


@pytest.mark.parametrize("case", ["gemma2-window-softcaps", "q4_1-gqa2", "phi3-fused"])
def test_the_last_layer_is_the_models_own_distribution(tiny_folders, case: str) -> None:
    """What `score` gives for each token (a session's statistics) and for the next one."""
    _, folder = tiny_folders[case]
    model = LoadedModel(folder, threads=1)
    session = Session(model, top_k=5)
    session.load_text(TEXT)
    ids = session.ids
    inspector = Inspector(model)
    for position in range(1, len(ids) + 1):
        found = inspector.inspect(ids, position, top=5)
        last = found.layers[-1]
        if position < len(ids):
            st = session.doc.tokens[position].stats
            assert abs(last.actual_prob - st.prob) < SAME and last.actual_rank == st.rank
            top_ids, top_probs = st.top_ids, st.top_probs
        else:
            nxt = session.next_distribution(5)
            top_ids, top_probs = nxt.ids, nxt.probs
        assert last.top_ids == top_ids
        assert np.abs(np.array(last.top_probs) - np.array(top_probs)).max() < SAME
    # the raw scores are the model's logits for that position
    logits, _ = model.forward(ids, model.empty_cache())
    found = inspector.inspect(ids, 7)
    assert np.abs(found.logits - logits[6]).max() < 1e-4 * np.abs(logits[6]).max()


def _same(a, b) -> None:
    """Two inspections of one position, whose caches were computed in other
    chunks (float32 sums in another order): the same within float32 rounding."""
    assert a.position == b.position and a.actual_id == b.actual_id
    assert np.abs(_softmax(a.lens_logits.astype(np.float64)) - _softmax(b.lens_logits.astype(np.float64))).max() < SAME
    assert np.abs(a.attention - b.attention).max() < SAME


def test_the_cache_kept_or_given_changes_nothing(tiny_folders) -> None:
    """Positions inspected in any order, in another document sharing a start,
    and with a session's cache of the document: the same numbers as a fresh inspector's."""
    _, folder = tiny_folders["gemma3-window-qk-norm"]
    model = LoadedModel(folder, threads=1)
    ids = model.tokenizer.encode(TEXT).ids
    other = ids[:12] + list(reversed(ids[12:]))

    def fresh(doc, position):
        return Inspector(model).inspect(doc, position)

    kept = Inspector(model)
    for doc, position in ((ids, 30), (ids, 10), (other, 25), (ids, len(ids)), (other, 3)):
        a, b = kept.inspect(doc, position), fresh(doc, position)
        _same(a, b)
    session = Session(model)
    session.load_text(TEXT)
    given = Inspector(model)
    before = [k.copy() for k in session._cache.keys]
    for position in (len(ids), 5, 20, 1):
        a, b = given.inspect(ids, position, cache=session._cache), fresh(ids, position)
        _same(a, b)
    assert all(np.array_equal(k, c) for k, c in zip(session._cache.keys, before))  # read, never written
    assert given._cache is None  # and nothing of it kept
    # a cache of only the start of the document: that start is copied, the rest run
    short = Session(model)
    short.load_text(model.tokenizer.decode(ids[:10]))
    assert short.ids == ids[:10]
    _same(given.inspect(ids, 30, cache=short._cache), fresh(ids, 30))
    assert given._ids == ids[:30]


def test_an_inspection_can_be_stopped_and_the_next_one_is_whole(tiny_folders, monkeypatch) -> None:
    from lmdesk.engine import inspect as inspect_module

    monkeypatch.setattr(inspect_module, "CHUNK", 8)  # several chunks for a short text
    _, folder = tiny_folders["q4_1-gqa2"]
    model = LoadedModel(folder, threads=1)
    ids = model.tokenizer.encode(TEXT).ids
    inspector = Inspector(model)
    asked = []

    def stop_at_second() -> bool:
        asked.append(1)
        return len(asked) >= 2

    with pytest.raises(Cancelled):
        inspector.inspect(ids, len(ids), should_cancel=stop_at_second)
    assert len(asked) == 2
    _same(inspector.inspect(ids, len(ids)), Inspector(model).inspect(ids, len(ids)))


def test_the_inspection_graph_is_loaded_when_first_asked_and_can_be_let_go(tiny_folders) -> None:
    _, folder = tiny_folders["q4_1-gqa2"]
    model = LoadedModel(folder, threads=1)
    ids = model.tokenizer.encode(TEXT).ids
    model.forward(ids, model.empty_cache())
    assert model._inspection is None  # decoding never loads it
    inspector = Inspector(model)
    first = inspector.inspect(ids, 9)
    assert model._inspection is not None
    inspector.close()
    assert model._inspection is None and inspector._cache is None
    _same(inspector.inspect(ids, 9), first)


def test_positions_out_of_range_are_one_sentence(tiny_folders) -> None:
    _, folder = tiny_folders["f32-gqa2"]
    model = LoadedModel(folder, threads=1)
    inspector = Inspector(model)
    for position in (0, 4, -1):
        with pytest.raises(InspectionError, match=r"^The position must be from 1 to 3 .*; got -?\d+\.$"):
            inspector.inspect([5, 6, 7], position)
    with pytest.raises(InspectionError, match="empty"):
        inspector.inspect([], 1)


def test_folders_without_an_inspection_graph_say_so(tiny_folders, tmp_path: Path) -> None:
    _, folder = tiny_folders["f32-gqa2"]
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    manifest = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"]["inspect"]  # as lmdesk wrote folders before
    (old / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    (old / "inspect.onnx").unlink()
    model = LoadedModel(old, threads=1)
    model.forward([5, 6], model.empty_cache())  # the model itself runs as before
    with pytest.raises(ModelLoadError) as err:
        Inspector(model).inspect([5, 6], 2)
    assert str(err.value) == ("The model folder old was made by an older lmdesk: import it again "
                              "to look inside the model.")

    hf = _make_hf(folder, tmp_path / "hf")
    with pytest.raises(ModelLoadError, match=r"^Looking inside a model needs a model folder imported by "
                                             r"lmdesk; hf is a Hugging Face ONNX export.*\.$"):
        Inspector(LoadedModel(hf, threads=1)).inspect([5, 6], 2)


# -- the command line ---------------------------------------------------------------------------

def _cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``lmdesk ARGV`` through a parser with the command alone (lmdesk.cli wires the same one)."""
    code = cli_inspect.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_prints_the_lens_and_the_attention_as_json(tiny_folders, tmp_path: Path, capsys) -> None:
    src, folder = tiny_folders["gemma2-window-softcaps"]
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    model = LoadedModel(folder, threads=1)
    ids = model.tokenizer.encode(TEXT).ids
    ref = ReferenceModel(src)
    for position in (None, 7):
        code, out, err = _cli(["--model", str(folder), "inspect", "--json", "--top", "3", str(text)]
                              + ([] if position is None else ["--position", str(position)]), capsys)
        assert code == 0 and err == ""
        data = json.loads(out)
        p = len(ids) if position is None else position
        assert set(data) == {"model", "position", "tokens", "layers", "attention"}
        assert data["model"] == model.name and data["position"] == p
        assert [t["id"] for t in data["tokens"]] == ids
        assert "".join(t["text"] for t in data["tokens"]) == TEXT
        want = ref.inspect(ids, p - 1)
        lens = _softmax(want["lens"])
        assert [x["layer"] for x in data["layers"]] == list(range(1, ref.n_layer + 1))
        for layer, row in zip(data["layers"], lens):
            assert [set(t) for t in layer["top"]] == [{"id", "text", "prob"}] * 3
            assert np.abs(np.array([t["prob"] for t in layer["top"]]) - np.sort(row)[::-1][:3]).max() < TOL
            for t in layer["top"]:  # its characters, or the bytes of a piece of one as score --json writes them
                plain = model.tokenizer.decode([t["id"]])
                assert t["text"] == plain if "\ufffd" not in plain else re.fullmatch(r"(<0x[0-9A-F]{2}>)+", t["text"])
        attention = np.array(data["attention"])
        assert attention.shape == (ref.n_layer, ref.n_head, p)
        assert np.abs(attention - want["attention"]).max() < TOL
        assert np.abs(attention.sum(-1) - 1).max() < 1e-5


def test_the_command_prints_a_table_and_refuses_a_bad_position(tiny_folders, tmp_path: Path, capsys) -> None:
    _, folder = tiny_folders["q4_1-gqa2"]
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    n = len(LoadedModel(folder, threads=1).tokenizer.encode(TEXT).ids)
    code, out, err = _cli(["--model", str(folder), "inspect", "--position", "4", str(text)], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert "the prediction of token 4" in lines[0]
    assert any(line.split()[:1] == ["2"] for line in lines)  # a row per layer
    assert "Attention of token 3" in out and "Raw scores (logits)" in out
    code, out, err = _cli(["--model", str(folder), "inspect", "--top", "0", str(text)], capsys)
    assert (code, out, err) == (2, "", "lmdesk: --top must be from 1 to 1000 candidates.\n")
    for bad in ("0", str(n + 1)):
        code, out, err = _cli(["--model", str(folder), "inspect", "--position", bad, str(text)], capsys)
        assert code == 2 and out == ""
        assert err == (f"lmdesk: --position must be from 1 to {n} (the text is {n} tokens; P inspects the "
                       f"prediction of token P from the tokens before it), not {bad}.\n")


# -- the real models ----------------------------------------------------------------------------------

CHAT = ("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
        "The capital of France is Paris.")


@pytest.mark.realmodel
def test_the_default_model_inside_is_the_references(real_model: LoadedModel, real_gguf: Path) -> None:
    ref = ReferenceModel(real_gguf)
    ids = real_model.tokenizer.encode(CHAT).ids
    inspector = Inspector(real_model)
    session = Session(real_model, top_k=5)
    session.load_text(CHAT)
    for position in (len(ids), len(ids) - 2, 12):
        found = inspector.inspect(ids, position, top=5)
        _check_against_reference(found, ref.inspect(ids, position - 1), 5)
        _check_rows(found, [None] * ref.n_layer)
        last = found.layers[-1]
        if position < len(ids):
            st = session.doc.tokens[position].stats
            assert abs(last.actual_prob - st.prob) < SAME and last.actual_rank == st.rank
            assert np.abs(np.array(last.top_probs) - np.array(st.top_probs)).max() < SAME
    paris = inspector.inspect(ids, len(ids) - 2)  # "... is" -> " Paris"
    assert real_model.tokenizer.id_to_token(paris.actual_id) == "ĠParis" and paris.layers[-1].actual_rank == 1


@pytest.mark.realmodel
def test_gemma3_inside_is_the_reference_past_its_window(gemma3_gguf: Path, gemma3_folder: Path) -> None:
    """The real Gemma 3 270M: 262,144 tokens, five windowed layers (512) in six."""
    model = LoadedModel(gemma3_folder, threads=2)
    ref = ReferenceModel(gemma3_gguf)
    story = ("Once upon a time, in a small village by the sea, there lived an old fisherman who "
             "mended his nets every morning and told the children stories about the whales. ")
    ids = model.tokenizer.encode(story * 17).ids[:530]
    assert len(ids) == 530
    inspector = Inspector(model)
    windows = _windows(gemma3_gguf)
    for position in (530, 20):
        found = inspector.inspect(ids, position, top=5)
        _check_against_reference(found, ref.inspect(ids, position - 1), 5)
        _check_rows(found, windows)

"""A real file nobody here wrote: Gemma 3 270M (Q4_K_M), imported and checked
against the independent numpy reference (tests/reference.py) on real text.

Its weights are Q5_0, Q8_0, Q6_K and Q4_K, its 262,144 x 640 embedding is a
tied Q8_0 table; its layers attend through a 512-token window five times out
of six. Everything must hold as the file says.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from reference import ReferenceModel

from lmdesk.engine.model import LoadedModel

pytestmark = pytest.mark.realmodel
TOL = 1e-3  # max |logit difference| against the float64 reference, as for SmolLM2
STORY = ("Once upon a time, in a small village by the sea, there lived an old fisherman who "
         "mended his nets every morning and told the children stories about the whales.")


@pytest.fixture(scope="module")
def folder(gemma3_folder: Path) -> Path:
    return gemma3_folder


@pytest.fixture(scope="module")
def model(folder: Path) -> LoadedModel:
    return LoadedModel(folder, threads=2)


@pytest.fixture(scope="module")
def reference(gemma3_gguf: Path) -> ReferenceModel:
    return ReferenceModel(gemma3_gguf)


def test_the_folder_describes_the_file_and_stays_compact(folder: Path, gemma3_gguf: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["architecture"] == "gemma3"
    assert manifest["dimensions"] == {"n_layer": 18, "d_model": 640, "n_head": 4, "n_head_kv": 1, "head_dim": 256,
                                      "d_ff": 2048, "vocab_size": 262144}
    assert manifest["weights"]["gguf_tensor_types"] == {"F32": 109, "Q4_K": 27, "Q5_0": 81, "Q6_K": 9, "Q8_0": 10}
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size <= 1.3 * gemma3_gguf.stat().st_size  # no matrix widened to float


def test_the_tokenizer_is_gemmas(model: LoadedModel) -> None:
    enc = model.tokenizer.encode("Once upon a time")
    assert [model.tokenizer.id_to_token(i) for i in enc.ids] == ["<bos>", "Once", "▁upon", "▁a", "▁time"]


@pytest.mark.parametrize("text", [STORY, "The capital of France is Paris. The capital of Japan is"])
def test_logits_match_the_reference(model: LoadedModel, reference: ReferenceModel, text: str) -> None:
    ids = model.tokenizer.encode(text).ids
    logits, _ = model.forward(ids, model.empty_cache())
    ref = reference.forward(ids)
    assert np.abs(ref).max() > 5
    assert np.abs(logits - ref).max() < TOL
    assert np.array_equal(logits.argmax(-1), ref.argmax(-1))


def test_past_the_window_cached_steps_match_the_reference(model: LoadedModel, reference: ReferenceModel) -> None:
    """Beyond 512 tokens the windowed layers stop seeing the start: the prefill
    and the steps that follow it, one token at a time, both as the reference."""
    ids = model.tokenizer.encode((STORY + " ") * 20).ids[:560]
    assert len(ids) == 560
    head, cache = model.forward(ids[:550], model.empty_cache())
    rows = [head[-1]]
    for t in ids[550:]:
        row, cache = model.forward([t], cache)
        rows.append(row[0])
    ref = reference.forward(ids)
    assert np.abs(np.array(rows) - ref[549:]).max() < TOL
    # float32 error over 550 x 262,144 logits reaches 1.7e-3 (5e-5 of their range);
    # a query seeing one key too many or too few moves them by whole units
    assert np.abs(head - ref[:550]).max() < 3 * TOL
    assert np.array_equal(head.argmax(-1), ref[:550].argmax(-1))


def _resident_mb_of_files_in(folder: Path) -> float:
    """Resident memory of this process's mappings of the files in ``folder``,
    read from /proc/self/smaps."""
    prefix, total, inside = str(folder.resolve()) + "/", 0, False
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:  # a mapping's header line
                inside = len(fields) >= 6 and fields[5].startswith(prefix)
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total / 1024


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads Linux's /proc/self/smaps")
def test_the_file_pages_read_to_pack_the_weights_are_given_back(folder: Path) -> None:
    # onnxruntime maps the weights from model.onnx.data and reads them all to pack
    # them; the 8-bit table's 4-bit pieces (168 MB), which the lookup shares with
    # the output product, stayed resident: 160 MB of file pages after loading
    model = LoadedModel(folder, threads=1)
    assert _resident_mb_of_files_in(folder) < 40
    # the lookup reads back only the rows of the tokens it looks up, and right
    ids = model.tokenizer.encode(STORY).ids
    logits, _ = model.forward(ids, model.empty_cache())
    assert np.isfinite(logits).all() and _resident_mb_of_files_in(folder) < 48

"""read_model_folder: lmdesk and Hugging Face (onnx-community) folders, and what is not a model folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_gguf import CHATML_TEMPLATE, write_tiny_gguf

from lmdesk.engine.errors import ModelLoadError
from lmdesk.convert.gguf_import import import_gguf
from lmdesk.engine.model_folder import ModelSpec, read_model_folder

TINY = dict(n_layer=2, d_model=64, n_head=4, n_head_kv=2, d_ff=128, ctx=128)


@pytest.fixture(scope="module")
def tiny_lmdesk(tmp_path_factory) -> Path:
    """A tiny lmdesk model folder made by the GGUF importer (never modified by tests)."""
    base = tmp_path_factory.mktemp("tiny")
    src = write_tiny_gguf(base / "tiny.gguf", **TINY)
    out = base / "tiny-model"
    import_gguf(src, out)
    return out


def _copy(folder: Path, dest: Path) -> Path:
    shutil.copytree(folder, dest)
    return dest


def _hf_config(n_layer: int = 2) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "num_hidden_layers": n_layer, "num_attention_heads": TINY["n_head"], "num_key_value_heads": TINY["n_head_kv"],
        "hidden_size": TINY["d_model"], "intermediate_size": TINY["d_ff"], "vocab_size": 315,
        "max_position_embeddings": TINY["ctx"], "bos_token_id": 0, "eos_token_id": 2, "torch_dtype": "float32",
    }


def _tokenizer_config(template) -> dict:
    return {
        "add_bos_token": False,
        "bos_token": "<|endoftext|>",
        "eos_token": {"content": "<|im_end|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
        "added_tokens_decoder": {
            str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
            for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        },
        "chat_template": template,
        "model_max_length": 2048,
        "tokenizer_class": "GPT2Tokenizer",
    }


def _make_hf(lmdesk: Path, dest: Path, *, template=CHATML_TEMPLATE, model: onnx.ModelProto | None = None,
             onnx_name: str = "onnx/model.onnx", config: dict | None = None) -> Path:
    """A Hugging Face style folder holding the same model as the lmdesk folder ``lmdesk``."""
    dest.mkdir()
    target = dest / onnx_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if model is None:
        shutil.copy(lmdesk / "model.onnx", target)
        if (lmdesk / "model.onnx.data").is_file():  # the weights the graph names, beside it
            shutil.copy(lmdesk / "model.onnx.data", target.parent / "model.onnx.data")
    else:
        onnx.save_model(model, target)
    shutil.copy(lmdesk / "tokenizer.json", dest / "tokenizer.json")
    (dest / "config.json").write_text(json.dumps(config or _hf_config()), encoding="utf-8")
    (dest / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(template)), encoding="utf-8")
    (dest / "generation_config.json").write_text(json.dumps({"bos_token_id": 0, "eos_token_id": [2]}), encoding="utf-8")
    return dest


def _with_position_ids(lmdesk: Path, *, used: bool = True) -> onnx.ModelProto:
    """The lmdesk graph with an extra int64 [batch, seq] input position_ids.

    ``used``: it is fed into the logits through ``+ 0 * sum(position_ids)``,
    which changes nothing but makes the input part of the computation.
    """
    model = onnx.load(str(lmdesk / "model.onnx"))
    g = model.graph
    g.input.insert(2, helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]))
    if used:
        (last,) = [n for n in g.node if "logits" in n.output]
        last.output[list(last.output).index("logits")] = "logits/raw"
        g.initializer.append(numpy_helper.from_array(np.array(0.0, np.float32), "test/zero"))
        g.node.extend([
            helper.make_node("Cast", ["position_ids"], ["test/pos_f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["test/pos_f"], ["test/pos_sum"], keepdims=0),
            helper.make_node("Mul", ["test/pos_sum", "test/zero"], ["test/nothing"]),
            helper.make_node("Add", ["logits/raw", "test/nothing"], ["logits"]),
        ])
    return model


def _run(spec: ModelSpec, ids: list[int], past: tuple[list, list] | None = None, start: int = 0):
    """Run the spec's graph with feeds made from the spec alone; (logits, keys, values)."""
    session = _session(spec.onnx_path)
    n = len(ids)
    feeds = {spec.input_ids_name: np.array([ids], np.int64)}
    if spec.attention_mask_name:
        feeds[spec.attention_mask_name] = np.ones((1, start + n), np.int64)
    if spec.position_ids_name:
        feeds[spec.position_ids_name] = np.arange(start, start + n, dtype=np.int64)[None, :]
    for i in range(spec.n_layer):
        if past is None:
            empty = np.zeros((1, spec.n_head_kv, 0, spec.head_dim), np.dtype(spec.kv_dtype))
            feeds[spec.past_key_names[i]] = feeds[spec.past_value_names[i]] = empty
        else:
            feeds[spec.past_key_names[i]] = past[0][i]
            feeds[spec.past_value_names[i]] = past[1][i]
    names = [spec.logits_name, *spec.present_key_names, *spec.present_value_names]
    out = session.run(names, feeds)
    return out[0], out[1:1 + spec.n_layer], out[1 + spec.n_layer:]


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _load_error(folder: Path) -> str:
    with pytest.raises(ModelLoadError) as info:
        read_model_folder(folder)
    message = str(info.value)
    assert message and "\n" not in message and "Traceback" not in message, message
    assert message.endswith("."), message
    return message


# -- lmdesk layout ------------------------------------------------------------

def test_lmdesk_tiny_folder(tiny_lmdesk: Path) -> None:
    spec = read_model_folder(str(tiny_lmdesk))
    manifest = json.loads((tiny_lmdesk / "manifest.json").read_text(encoding="utf-8"))
    assert spec.layout == "lmdesk"
    assert spec.folder == tiny_lmdesk
    assert spec.name == "tiny-llama-2L-64d-seed0"
    assert spec.onnx_path == tiny_lmdesk / "model.onnx"
    assert spec.inspect_path == tiny_lmdesk / "inspect.onnx"
    assert spec.tokenizer_path == tiny_lmdesk / "tokenizer.json"
    assert spec.chat_template == CHATML_TEMPLATE
    assert (spec.n_layer, spec.n_head_kv, spec.head_dim, spec.vocab_size) == (2, 2, 16, 315)
    assert spec.context_length == 128
    assert (spec.bos_id, spec.eos_id, spec.bos_token, spec.eos_token) == (0, 2, "<|endoftext|>", "<|im_end|>")
    assert spec.add_bos is False
    assert spec.stop_ids == frozenset({0, 2})
    assert spec.special_ids == frozenset({0, 1, 2})
    assert (spec.input_ids_name, spec.attention_mask_name, spec.position_ids_name) == ("input_ids", "attention_mask", None)
    assert spec.past_key_names == ("past_key_values.0.key", "past_key_values.1.key")
    assert spec.past_value_names == ("past_key_values.0.value", "past_key_values.1.value")
    assert spec.present_key_names == ("present.0.key", "present.1.key")
    assert spec.present_value_names == ("present.0.value", "present.1.value")
    assert spec.logits_name == "logits"
    assert spec.kv_dtype == "float32"
    assert spec.manifest == manifest


def test_lmdesk_spec_runs(tiny_lmdesk: Path) -> None:
    spec = read_model_folder(tiny_lmdesk)
    logits, keys, values = _run(spec, [5, 6, 7])
    assert logits.shape == (1, 3, spec.vocab_size)
    assert keys[0].shape == values[1].shape == (1, spec.n_head_kv, 3, spec.head_dim)


@pytest.mark.realmodel
def test_lmdesk_real_model(real_model_dir: Path) -> None:
    spec = read_model_folder(real_model_dir)
    assert spec.layout == "lmdesk"
    assert (spec.n_layer, spec.n_head_kv, spec.head_dim, spec.vocab_size) == (30, 3, 64, 49152)
    assert spec.stop_ids == frozenset({0, 2})
    assert spec.special_ids == frozenset(range(17))
    assert spec.kv_dtype == "float32"
    assert "<|im_start|>" in spec.chat_template
    assert (spec.bos_id, spec.eos_id, spec.eos_token) == (1, 2, "<|im_end|>")
    assert spec.past_key_names[29] == "past_key_values.29.key"
    assert spec.present_value_names[29] == "present.29.value"
    assert spec.position_ids_name is None


# -- Hugging Face layout ------------------------------------------------------

TEMPLATE_FORMS = {
    "string": CHATML_TEMPLATE,
    "list": [{"name": "tool_use", "template": "tools {{ tools }}"}, {"name": "default", "template": CHATML_TEMPLATE}],
}


@pytest.mark.parametrize("form", list(TEMPLATE_FORMS))
def test_huggingface_folder(tiny_lmdesk: Path, tmp_path: Path, form: str) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf-model", template=TEMPLATE_FORMS[form])
    spec = read_model_folder(folder)
    ref = read_model_folder(tiny_lmdesk)
    assert spec.layout == "huggingface"
    assert spec.name == "hf-model"
    assert spec.onnx_path == folder / "onnx" / "model.onnx"
    assert spec.inspect_path is None  # only lmdesk's own folders can be looked inside
    assert spec.tokenizer_path == folder / "tokenizer.json"
    assert spec.chat_template == CHATML_TEMPLATE
    assert spec.manifest == {}
    assert (spec.n_layer, spec.n_head_kv, spec.head_dim, spec.vocab_size) == (2, 2, 16, 315)
    assert spec.context_length == 128
    assert (spec.bos_id, spec.eos_id, spec.bos_token, spec.eos_token) == (0, 2, "<|endoftext|>", "<|im_end|>")
    assert spec.add_bos is False
    assert spec.stop_ids == frozenset({0, 2})
    assert spec.special_ids == frozenset({0, 1, 2})
    assert spec.position_ids_name is None
    assert spec.kv_dtype == "float32"
    for field in ("input_ids_name", "attention_mask_name", "past_key_names", "past_value_names", "logits_name",
                  "present_key_names", "present_value_names", "stop_ids", "special_ids", "bos_id", "eos_id"):
        assert getattr(spec, field) == getattr(ref, field), field


def test_huggingface_template_file_preferred(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", template="{{ 'from tokenizer_config' }}")
    assert read_model_folder(folder).chat_template == "{{ 'from tokenizer_config' }}"
    (folder / "chat_template.jinja").write_text(CHATML_TEMPLATE, encoding="utf-8")
    assert read_model_folder(folder).chat_template == CHATML_TEMPLATE


def test_huggingface_end_of_turn_and_bos_post_processor(tiny_lmdesk: Path, tmp_path: Path) -> None:
    """Stop ids: every eos of config and generation_config plus known end-of-turn markers;
    add_bos: what tokenizer.json's post-processor does."""
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", config={**_hf_config(), "eos_token_id": [2, 7]})
    tok = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    tok["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}},
    }
    (folder / "tokenizer.json").write_text(json.dumps(tok), encoding="utf-8")
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 9]}), encoding="utf-8")
    spec = read_model_folder(folder)
    assert spec.stop_ids == frozenset({0, 2, 7, 9})
    assert spec.eos_id == 2
    assert spec.add_bos is True


def test_huggingface_position_ids_run_the_same_model(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", model=_with_position_ids(tiny_lmdesk))
    spec = read_model_folder(folder)
    ref = read_model_folder(tiny_lmdesk)
    assert spec.position_ids_name == "position_ids"
    assert ref.position_ids_name is None

    prompt, more = [40, 41, 300, 7, 12], [99, 100]
    logits, keys, values = _run(spec, prompt)
    ref_logits, ref_keys, ref_values = _run(ref, prompt)
    assert logits.shape == (1, len(prompt), spec.vocab_size)
    assert np.abs(ref_logits).max() > 0.5
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-5)

    # the next tokens after the cache, positions counting on
    logits2, keys2, _ = _run(spec, more, (keys, values), start=len(prompt))
    ref_logits2, _, _ = _run(ref, more, (ref_keys, ref_values), start=len(prompt))
    assert logits2.shape == (1, len(more), spec.vocab_size)
    assert keys2[1].shape == (1, spec.n_head_kv, len(prompt) + len(more), spec.head_dim)
    np.testing.assert_allclose(logits2, ref_logits2, rtol=0, atol=1e-5)


def test_onnxruntime_keeps_an_unused_input(tiny_lmdesk: Path, tmp_path: Path) -> None:
    """An input no node reads is still an input of the session and must be fed,
    so a spec naming every declared position_ids input is right for such graphs too."""
    path = tmp_path / "unused.onnx"
    onnx.save_model(_with_position_ids(tiny_lmdesk, used=False), path)
    session = _session(path)
    assert "position_ids" in [i.name for i in session.get_inputs()]
    feeds = {"input_ids": np.array([[5, 6]], np.int64), "attention_mask": np.ones((1, 2), np.int64)}
    for i in range(2):
        feeds[f"past_key_values.{i}.key"] = feeds[f"past_key_values.{i}.value"] = np.zeros((1, 2, 0, 16), np.float32)
    with pytest.raises(Exception, match="position_ids"):
        session.run(["logits"], feeds)
    feeds["position_ids"] = np.array([[0, 1]], np.int64)
    assert session.run(["logits"], feeds)[0].shape == (1, 2, 315)


def test_onnx_file_preference(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", onnx_name="onnx/model_fp16.onnx")
    assert read_model_folder(folder).onnx_path.name == "model_fp16.onnx"
    shutil.copy(folder / "onnx" / "model_fp16.onnx", folder / "onnx" / "model_q4.onnx")
    assert read_model_folder(folder).onnx_path.name == "model_q4.onnx"
    shutil.copy(folder / "onnx" / "model_fp16.onnx", folder / "onnx" / "model_quantized.onnx")
    assert read_model_folder(folder).onnx_path.name == "model_quantized.onnx"
    shutil.copy(folder / "onnx" / "model_fp16.onnx", folder / "model.onnx")  # the root's float32 export
    shutil.copy(folder / "onnx" / "model.onnx.data", folder / "model.onnx.data")  # with the weights it names
    assert read_model_folder(folder).onnx_path == folder / "model.onnx"
    shutil.copy(folder / "onnx" / "model_fp16.onnx", folder / "onnx" / "model.onnx")
    assert read_model_folder(folder).onnx_path == folder / "onnx" / "model.onnx"


def test_root_model_onnx(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", onnx_name="model.onnx")
    spec = read_model_folder(folder)
    assert spec.onnx_path == folder / "model.onnx"
    assert spec.n_layer == 2


def test_present_key_values_names_and_half_precision_cache(tiny_lmdesk: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_lmdesk / "model.onnx"))
    renames = {f"present.{i}.{kind}": f"present_key_values.{i}.{kind}" for i in range(2) for kind in ("key", "value")}
    for node in model.graph.node:
        for j, name in enumerate(node.output):
            if name in renames:
                node.output[j] = renames[name]
    for vi in model.graph.output:
        vi.name = renames.get(vi.name, vi.name)
    for vi in model.graph.input:
        if vi.name.startswith("past_key_values."):
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16  # declared only: this graph is not run
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", model=model)
    spec = read_model_folder(folder)
    assert spec.present_key_names == ("present_key_values.0.key", "present_key_values.1.key")
    assert spec.present_value_names == ("present_key_values.0.value", "present_key_values.1.value")
    assert spec.kv_dtype == "float16"


def test_external_weights(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf")
    model = onnx.load(str(tiny_lmdesk / "model.onnx"))
    onnx.save_model(model, folder / "onnx" / "model.onnx", save_as_external_data=True,
                    location="model.onnx_data")
    spec = read_model_folder(folder)
    assert spec.n_layer == 2
    logits, _, _ = _run(spec, [5, 6, 7])
    ref_logits, _, _ = _run(read_model_folder(tiny_lmdesk), [5, 6, 7])
    np.testing.assert_allclose(logits, ref_logits, rtol=0, atol=1e-5)
    (folder / "onnx" / "model.onnx_data").unlink()
    assert "model.onnx_data" in _load_error(folder)


# -- what is not a model folder -------------------------------------------------

def test_missing_folder(tmp_path: Path) -> None:
    assert "no model folder" in _load_error(tmp_path / "nowhere")


def test_empty_folder(tmp_path: Path) -> None:
    assert "empty" in _load_error(tmp_path)


def test_folder_with_only_a_gguf_file(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "tiny.gguf")
    message = _load_error(tmp_path)
    assert "lmdesk import-gguf" in message and "tiny.gguf" in message
    assert "lmdesk import-gguf" in _load_error(tmp_path / "tiny.gguf")  # the file itself chosen


def test_manifest_with_bad_json(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    (folder / "manifest.json").write_text('{"format": "lmdesk-model", ', encoding="utf-8")
    message = _load_error(folder)
    assert "manifest.json" in message and "damaged" in message


def test_manifest_of_another_version_or_incomplete(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    (folder / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}), encoding="utf-8")
    assert "version 2" in _load_error(folder)
    del manifest["dimensions"]["head_dim"]
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert "head_dim" in _load_error(folder)


def test_missing_weights_file(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    data = folder / "model.onnx.data"
    size = data.stat().st_size
    with data.open("r+b") as f:  # a copy cut off half way
        f.truncate(size // 2)
    message = _load_error(folder)
    assert message.startswith(f"The model folder {folder} is damaged: model.onnx.data holds {size // 2:,} bytes")
    assert f"{size:,} were written" in message and "\n" not in message
    data.unlink()
    assert _load_error(folder) == f"The model folder {folder} is incomplete: model.onnx.data is missing."


def test_missing_inspection_graph(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    (folder / "inspect.onnx").unlink()
    assert _load_error(folder) == f"The model folder {folder} is incomplete: inspect.onnx is missing."
    # a folder of an lmdesk before the inspection graph: it runs, and has none
    _edit_manifest(folder, lambda m: m["files"].pop("inspect"))
    assert read_model_folder(folder).inspect_path is None


def test_missing_tokenizer(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    (folder / "tokenizer.json").unlink()
    assert _load_error(folder) == f"The model folder {folder} is incomplete: tokenizer.json is missing."
    hf = _make_hf(tiny_lmdesk, tmp_path / "hf")
    (hf / "tokenizer.json").unlink()
    assert "tokenizer.json is missing" in _load_error(hf)


def test_damaged_onnx_file(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 2])
    assert "damaged" in _load_error(folder)


def test_huggingface_layer_count_disagrees(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", config=_hf_config(n_layer=3))
    message = _load_error(folder)
    assert "3 layers" in message and "has 2" in message


def test_huggingface_without_onnx(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf")
    shutil.rmtree(folder / "onnx")
    (folder / "model.safetensors").write_bytes(b"\0" * 8)
    assert "no ONNX model" in _load_error(folder)


def test_onnx_without_kv_cache(tiny_lmdesk: Path, tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["ids_f"], to=TensorProto.FLOAT),
         helper.make_node("Unsqueeze", ["ids_f", "axis"], ["logits"])],
        "no-cache",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", 1])],
        initializer=[numpy_helper.from_array(np.array([-1], np.int64), "axis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    assert _session_runs(model)
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", model=model)
    message = _load_error(folder)
    assert "KV cache" in message and "past_key_values" in message


def _session_runs(model: onnx.ModelProto) -> bool:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(["logits"], {"input_ids": np.array([[3, 4]], np.int64)})[0]
    return out.shape == (1, 2, 1)


def test_onnx_needing_an_unknown_input(tiny_lmdesk: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_lmdesk / "model.onnx"))
    model.graph.input.append(helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1]))
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", model=model)
    assert "use_cache_branch" in _load_error(folder)


def test_onnx_without_config(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf")
    (folder / "config.json").unlink()
    assert "config.json" in _load_error(folder)


# -- a manifest, a weights file or weights that do not fit the graph (issue 11, defect 9) ----------

def _edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    edit(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def test_a_vocabulary_the_graph_does_not_have_is_refused(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    _edit_manifest(folder, lambda m: m["dimensions"].update(vocab_size=1000))  # the graph scores 315 tokens
    message = _load_error(folder)
    assert message.startswith(f"The model description {folder / 'manifest.json'} is damaged: "
                              "it gives a vocabulary of 1,000 tokens, but model.onnx computes scores for 315"), message


def test_a_cache_shape_the_graph_does_not_have_is_refused(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    _edit_manifest(folder, lambda m: m["dimensions"].update(n_head_kv=4))  # the graph keeps 2 heads of 16
    assert "4 key/value heads of 16 numbers, but model.onnx has 2 of 16" in _load_error(folder)


@pytest.mark.parametrize("context", [10**12, 129])
def test_a_context_beyond_the_graphs_positions_is_refused(tiny_lmdesk: Path, tmp_path: Path, context: int) -> None:
    """The tiny graph's rotary tables hold 128 positions (the GGUF's context): one more is refused."""
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    _edit_manifest(folder, lambda m: m.update(context_length=context, trained_context_length=10**13))
    message = _load_error(folder)
    assert f"it gives a context of {context:,} tokens, but model.onnx has positions for only 128" in message


def test_a_context_within_the_graph_but_beyond_training_is_refused(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_lmdesk, tmp_path / "m")
    _edit_manifest(folder, lambda m: m.update(context_length=128, trained_context_length=100))
    assert "a context of 128 tokens, longer than the 100 the model was trained on" in _load_error(folder)
    _edit_manifest(folder, lambda m: m.update(context_length=64, trained_context_length=128))  # shorter is fine
    assert read_model_folder(folder).context_length == 64


def test_a_huggingface_context_ends_with_the_graphs_positions(tiny_lmdesk: Path, tmp_path: Path) -> None:
    folder = _make_hf(tiny_lmdesk, tmp_path / "hf", config={**_hf_config(), "max_position_embeddings": 131072})
    assert read_model_folder(folder).context_length == 128


def test_a_cut_weights_file_without_its_recorded_size_is_one_sentence(tiny_lmdesk: Path, tmp_path: Path) -> None:
    """Without files.weights_bytes (a folder of another tool, or edited), the graph's own entries tell how
    long the file must be; it used to be several hundred characters of onnxruntime's C++ text."""
    from lmdesk.engine.model import LoadedModel

    folder = _copy(tiny_lmdesk, tmp_path / "m")
    _edit_manifest(folder, lambda m: m["files"].pop("weights_bytes"))
    data = folder / "model.onnx.data"
    size = data.stat().st_size  # the converter writes the weights in order: the last one ends the file
    with data.open("r+b") as f:
        f.truncate(size * 2 // 3)
    expected = (f"The model folder {folder} is damaged: model.onnx.data is cut short "
                f"({size * 2 // 3 / 1e3:.1f} kB of {size / 1e3:.1f} kB); copy the folder again or import the GGUF "
                "file again.")
    assert _load_error(folder) == expected
    with pytest.raises(ModelLoadError) as info:
        LoadedModel(folder, threads=1)
    assert str(info.value) == expected
    with data.open("r+b") as f:  # one byte short is still short
        f.truncate(size - 1)
    assert f"cut short ({size - 1:,} bytes of {size:,})" in _load_error(folder)

    hf = _make_hf(tiny_lmdesk, tmp_path / "hf")
    with (hf / "onnx" / "model.onnx.data").open("r+b") as f:
        f.truncate(size // 2)
    message = _load_error(hf)
    assert f"onnx/model.onnx.data is cut short ({size // 2 / 1e3:.1f} kB of {size / 1e3:.1f} kB)" in message
    assert message.endswith("copy or download the model again.")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_damaged_weights_are_one_sentence_not_nan_bits(tiny_lmdesk: Path, tmp_path: Path, bad: float) -> None:
    """Numbers that are no numbers written into a weight of the first layer: every output is NaN,
    which 'lmdesk score' printed as 'nan bits per token' with exit code 0."""
    import subprocess
    import sys

    from lmdesk.engine.model import LoadedModel

    folder = _copy(tiny_lmdesk, tmp_path / "m")
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    target = next(t for t in graph.initializer if t.name.startswith("blk.0.") and t.data_type == TensorProto.FLOAT
                  and t.data_location == TensorProto.EXTERNAL)
    offset = int({e.key: e.value for e in target.external_data}["offset"])
    with (folder / "model.onnx.data").open("r+b") as f:
        f.seek(offset)
        f.write(np.full(16, bad, np.float32).tobytes())

    model = LoadedModel(folder, threads=1)
    with pytest.raises(ModelLoadError) as info:
        model.forward([5, 6, 7], model.empty_cache())
    message = str(info.value)
    assert message.startswith(f"The model in {folder} is damaged: its output is ")
    assert message.endswith("so its weights are broken; copy the model folder again or import its GGUF file again.")
    assert "\n" not in message

    proc = subprocess.run([sys.executable, "-m", "lmdesk", "score", "--model", str(folder), "-"],
                          input=b"the cat sat on the mat", capture_output=True, timeout=120)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [f"lmdesk: {message}"], err
    assert b"nan" not in proc.stdout

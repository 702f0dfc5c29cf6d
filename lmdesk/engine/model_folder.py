"""Recognize a model folder and describe it as a :class:`ModelSpec`.

Two layouts are understood:

``lmdesk``
    What ``lmdesk import-gguf`` writes (see :mod:`lmdesk.convert.gguf_import`):
    ``manifest.json`` (format ``lmdesk-model``, version 1) names everything,
    including the graph's input and output names.

``huggingface``
    A Hugging Face / transformers.js / onnx-community export: ``config.json``,
    ``tokenizer.json``, optionally ``tokenizer_config.json``,
    ``generation_config.json`` and ``chat_template.jinja``, and the ONNX
    decoder in ``onnx/``. The graph's inputs and outputs are read from the
    ONNX file itself (its header only, never the weights).

Which ONNX file of a Hugging Face folder is used (:data:`ONNX_PREFERENCE`):
the exact float32 export comes first, then the quantized ones, then half
precision (which onnxruntime runs slowly on the CPU)::

    model.onnx, model_quantized.onnx, model_int8.onnx, model_uint8.onnx,
    model_q4.onnx, model_bnb4.onnx, model_fp16.onnx, model_q4f16.onnx

each looked for first in ``onnx/`` and then at the folder's root; after those,
any other ``model*.onnx`` (``onnx/`` first, then the root, by name).

Reading a folder is fast: no weights are loaded and nothing is run. Every
failure is a :class:`ModelLoadError` whose message is one sentence.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelLoadError
from .model_format import (
    ATTENTION_MASK,
    CHAT_TEMPLATE_FILE,
    INPUT_IDS,
    KNOWN_END_OF_TURN,
    LOGITS,
    MANIFEST,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    MODEL_FILE,
    PAST_KEY,
    PAST_VALUE,
    POSITION_IDS,
    PRESENT_KEY,
    PRESENT_VALUE,
    TOKENIZER_FILE,
)

LAYOUT_LMDESK = "lmdesk"
LAYOUT_HUGGINGFACE = "huggingface"

HF_CONFIG = "config.json"
HF_TOKENIZER_CONFIG = "tokenizer_config.json"
HF_GENERATION_CONFIG = "generation_config.json"
HF_CHAT_TEMPLATE_JSON = "chat_template.json"
ONNX_SUBFOLDER = "onnx"
# Most exact first; see the module text.
ONNX_PREFERENCE = (
    "model.onnx",
    "model_quantized.onnx",
    "model_int8.onnx",
    "model_uint8.onnx",
    "model_q4.onnx",
    "model_bnb4.onnx",
    "model_fp16.onnx",
    "model_q4f16.onnx",
)

# onnx.TensorProto element types of a KV cache, as numpy dtype names.
_KV_DTYPES = {1: "float32", 10: "float16"}
_ELEM_INT64 = 7
_KV_NEED = "it needs float32 or float16"
_SHAPE_NEED = "it needs [batch, heads, sequence, head size]"

# Graph names of the KV cache inputs and outputs, as exported by optimum,
# transformers.js, onnxruntime-genai and lmdesk.
_PAST_PATTERNS = (
    re.compile(r"^past_key_values\.(?P<i>\d+)\.(?P<kind>key|value)$"),
    re.compile(r"^past\.(?P<i>\d+)\.(?P<kind>key|value)$"),
    re.compile(r"^past_(?P<kind>key|value)s?[._](?P<i>\d+)$"),
)
_PRESENT_PATTERNS = (
    re.compile(r"^present\.(?P<i>\d+)\.(?P<kind>key|value)$"),
    re.compile(r"^present_key_values\.(?P<i>\d+)\.(?P<kind>key|value)$"),
    re.compile(r"^present_(?P<kind>key|value)s?[._](?P<i>\d+)$"),
)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to run a model folder, whatever its layout."""

    folder: Path
    layout: str  # "lmdesk" or "huggingface"
    name: str
    onnx_path: Path
    tokenizer_path: Path
    chat_template: str | None
    n_layer: int
    n_head_kv: int
    head_dim: int
    vocab_size: int
    context_length: int
    bos_id: int | None
    eos_id: int | None
    bos_token: str | None
    eos_token: str | None
    add_bos: bool  # whether encoding with tokenizer.json already prepends bos_id
    stop_ids: frozenset[int]  # eos ids and the end-of-turn markers of known chat templates
    special_ids: frozenset[int]
    input_ids_name: str
    attention_mask_name: str | None  # int64 [batch, past + seq] of ones
    position_ids_name: str | None  # int64 [batch, seq] of absolute positions, when the graph has it
    past_key_names: tuple[str, ...]  # per layer, [batch, n_head_kv, past, head_dim]
    past_value_names: tuple[str, ...]
    logits_name: str  # [batch, seq, vocab_size]
    present_key_names: tuple[str, ...]
    present_value_names: tuple[str, ...]
    kv_dtype: str  # numpy dtype name of the cache: "float32" or "float16"
    manifest: dict  # the raw lmdesk manifest, or {} for a Hugging Face folder
    # lmdesk's inspection graph (lmdesk.engine.inspect), None where the folder has none
    # (a Hugging Face export, or a folder made by an lmdesk before it)
    inspect_path: Path | None = None


def read_model_folder(folder: Path | str) -> ModelSpec:
    """Describe the model folder ``folder``; :class:`ModelLoadError` if it is not one lmdesk can run."""
    folder = Path(folder)
    if not folder.exists():
        _fail(f"There is no model folder at {folder}.")
    if folder.is_file():
        if folder.suffix.lower() == ".gguf":
            _fail(f"{folder.name} is a GGUF file, which lmdesk must convert first: run 'lmdesk import-gguf {folder}'.")
        _fail(f"{folder} is a file; choose the model folder that holds it instead.")
    if not folder.is_dir():
        _fail(f"{folder} is not a folder.")

    manifest_path = folder / MANIFEST
    config_path = folder / HF_CONFIG
    if manifest_path.is_file():
        manifest = _read_json(manifest_path, "model description")
        # a manifest of some other tool beside an HF config: the config describes the model
        if not (config_path.is_file() and isinstance(manifest, dict) and "format" not in manifest):
            return _read_lmdesk(folder, manifest_path, manifest)
    if config_path.is_file():
        return _read_huggingface(folder)

    onnx_files = _onnx_candidates(folder)
    if onnx_files:
        _fail(f"{folder} has an ONNX model ({onnx_files[0].name}) but neither a {MANIFEST} nor a {HF_CONFIG} describing it.")
    ggufs = sorted(folder.glob("*.gguf"))
    if ggufs:
        _fail(
            f"{folder} holds the GGUF file {ggufs[0].name}, which lmdesk must convert first: "
            f"run 'lmdesk import-gguf {ggufs[0]}'."
        )
    if not any(folder.iterdir()):
        _fail(f"The folder {folder} is empty, so it holds no model.")
    _fail(
        f"{folder} is not a model folder: it has neither an lmdesk {MANIFEST} "
        f"nor a Hugging Face {HF_CONFIG} with an ONNX model."
    )


# -- helpers ----------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _fail(message: str) -> None:
    raise ModelLoadError(_one_line(message))


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _fail(f"The model folder {path.parent} is incomplete: {path.name} is missing.")
    except UnicodeDecodeError:
        _fail(f"The {what} {path} is damaged (it is not UTF-8 text).")
    except ValueError as exc:
        _fail(f"The {what} {path} is damaged ({_one_line(exc)}).")
    except OSError as exc:
        _fail(f"The {what} {path} cannot be read ({exc.strerror or exc}).")


def _require_file(folder: Path, path: Path, hint: str = "") -> None:
    if not path.is_file():
        where = path.relative_to(folder) if path.is_relative_to(folder) else path
        _fail(f"The model folder {folder} is incomplete: {where} is missing{hint}.")


def _int_or_none(value) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _id_list(value) -> list[int]:
    """An id given as an int or a list of ints (HF's eos_token_id)."""
    if isinstance(value, (list, tuple)):
        return [i for i in (_int_or_none(v) for v in value) if i is not None]
    i = _int_or_none(value)
    return [] if i is None else [i]


# -- lmdesk layout ----------------------------------------------------------

def _read_lmdesk(folder: Path, manifest_path: Path, manifest) -> ModelSpec:
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        _fail(f"{manifest_path} is not an lmdesk model description.")
    version = manifest.get("format_version")
    if version != MANIFEST_VERSION:
        _fail(
            f"{manifest_path} has format version {version}, but this lmdesk reads version {MANIFEST_VERSION}; "
            "convert the model again with this lmdesk."
        )
    try:
        dims = manifest["dimensions"]
        tokens = manifest["tokens"]
        n_layer = int(dims["n_layer"])
        n_head_kv = int(dims["n_head_kv"])
        head_dim = int(dims["head_dim"])
        vocab_size = int(dims["vocab_size"])
        context_length = int(manifest["context_length"])
        stop_ids = frozenset(int(i) for i in tokens["stop_ids"])
        special_ids = frozenset(int(i) for i in tokens["special_ids"])
        io = manifest.get("io") or {}
        files = manifest.get("files") or {}
        if not isinstance(io, dict) or not isinstance(files, dict) or not isinstance(tokens, dict):
            raise TypeError("io")
    except KeyError as exc:
        _fail(f"The model description {manifest_path} is incomplete (it lacks {exc}).")
    except (TypeError, ValueError) as exc:
        _fail(f"The model description {manifest_path} is damaged (a value is of the wrong kind: {_one_line(exc)}).")
    if min(n_layer, n_head_kv, head_dim, vocab_size, context_length) <= 0:
        _fail(f"The model description {manifest_path} is damaged (a dimension is not positive).")

    onnx_path = folder / (files.get("model") or MODEL_FILE)
    tokenizer_path = folder / (files.get("tokenizer") or TOKENIZER_FILE)
    _require_file(folder, onnx_path)
    inspect_path = folder / files["inspect"] if isinstance(files.get("inspect"), str) and files["inspect"] else None
    if inspect_path is not None:
        _require_file(folder, inspect_path)
    if isinstance(files.get("weights"), str) and files["weights"]:  # the weights beside the graph
        weights = folder / files["weights"]
        _require_file(folder, weights)
        expected, actual = files.get("weights_bytes"), weights.stat().st_size
        if isinstance(expected, int) and not isinstance(expected, bool) and expected != actual:
            _fail(f"The model folder {folder} is damaged: {files['weights']} holds {actual:,} bytes where "
                  f"{expected:,} were written (an interrupted copy?); copy or prepare the model again.")
    _require_file(folder, tokenizer_path)
    template_name = files.get("chat_template", CHAT_TEMPLATE_FILE)
    chat_template = None
    if template_name:
        template_path = folder / template_name
        _require_file(folder, template_path)
        chat_template = _read_text(template_path)

    def pattern(key: str, default: str) -> str:
        value = io.get(key, default)
        if not isinstance(value, str) or "{i}" not in value:
            _fail(f"The model description {manifest_path} is damaged (io.{key} is not a name pattern with {{i}}).")
        return value

    def names(key: str, default: str) -> tuple[str, ...]:
        p = pattern(key, default)
        return tuple(p.replace("{i}", str(i)) for i in range(n_layer))

    positions = io.get("position_ids", False)
    position_ids_name = positions if isinstance(positions, str) else (POSITION_IDS if positions is True else None)
    past_keys, past_values = names("past_key", PAST_KEY), names("past_value", PAST_VALUE)
    present_keys = names("present_key", PRESENT_KEY)
    present_values = names("present_value", PRESENT_VALUE)
    input_ids_name = str(io.get("input_ids") or INPUT_IDS)
    attention_mask_name = io.get("attention_mask", ATTENTION_MASK) or None
    logits_name = str(io.get("logits") or LOGITS)
    kv_dtype = _check_lmdesk_graph(
        folder, onnx_path, manifest_path,
        [input_ids_name, attention_mask_name, position_ids_name, *past_keys, *past_values],
        [logits_name, *present_keys, *present_values],
        past_keys[0],
        {"vocab_size": vocab_size, "n_head_kv": n_head_kv, "head_dim": head_dim, "context_length": context_length,
         "trained": _int_or_none(manifest.get("trained_context_length"))},
    )
    return ModelSpec(
        folder=folder,
        layout=LAYOUT_LMDESK,
        name=str(manifest.get("name") or folder.name),
        onnx_path=onnx_path,
        tokenizer_path=tokenizer_path,
        chat_template=chat_template,
        n_layer=n_layer,
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        vocab_size=vocab_size,
        context_length=context_length,
        bos_id=_int_or_none(tokens.get("bos_id")),
        eos_id=_int_or_none(tokens.get("eos_id")),
        bos_token=tokens.get("bos_token"),
        eos_token=tokens.get("eos_token"),
        add_bos=bool(tokens.get("add_bos", False)),
        stop_ids=stop_ids,
        special_ids=special_ids,
        input_ids_name=input_ids_name,
        attention_mask_name=attention_mask_name,
        position_ids_name=position_ids_name,
        past_key_names=past_keys,
        past_value_names=past_values,
        logits_name=logits_name,
        present_key_names=present_keys,
        present_value_names=present_values,
        kv_dtype=kv_dtype,
        manifest=manifest,
        inspect_path=inspect_path,
    )


def _check_lmdesk_graph(folder: Path, onnx_path: Path, manifest_path: Path, input_names: list, output_names: list,
                        kv_name: str, described: dict) -> str:
    """Check that the graph has the inputs and outputs its manifest names, and
    the sizes the manifest gives (vocabulary, cache, context); return its cache type."""
    header = _read_graph_header(onnx_path, folder)
    again = "convert the model again"
    _check_external_data(onnx_path, folder, header.external, "copy the folder again or import the GGUF file again")
    graph_in = {vi.name: vi for vi in header.inputs if vi.name not in header.initializers}
    graph_out = {vi.name: vi for vi in header.outputs}
    wanted_in = [n for n in input_names if n]
    for name in wanted_in:
        if name not in graph_in:
            _fail(f"{onnx_path.name} in {folder} lacks the input '{name}' that its {MANIFEST} names; {again}.")
    for name in output_names:
        if name not in graph_out:
            _fail(f"{onnx_path.name} in {folder} lacks the output '{name}' that its {MANIFEST} names; {again}.")
    extra = [n for n in graph_in if n not in wanted_in]
    if extra:
        _fail(f"{onnx_path.name} in {folder} needs the input '{extra[0]}', which its {MANIFEST} does not describe.")
    kv_type = graph_in[kv_name].type.tensor_type.elem_type
    if kv_type not in _KV_DTYPES:
        _fail(f"{onnx_path.name} in {folder} keeps its KV cache in a number type lmdesk cannot use ({_KV_NEED}).")

    # the sizes the manifest gives against those the graph was built with
    damaged = f"The model description {manifest_path} is damaged"
    logits = _static_dims(graph_out[output_names[0]])
    vocab = described["vocab_size"]
    if logits and logits[-1] is not None and logits[-1] != vocab:
        _fail(f"{damaged}: it gives a vocabulary of {vocab:,} tokens, but {onnx_path.name} computes "
              f"scores for {logits[-1]:,}; {again}.")
    kv = _static_dims(graph_in[kv_name])
    heads = (described["n_head_kv"], described["head_dim"])
    if len(kv) == 4 and None not in (kv[1], kv[3]) and (kv[1], kv[3]) != heads:
        _fail(f"{damaged}: it gives {described['n_head_kv']} key/value heads of {described['head_dim']} numbers, "
              f"but {onnx_path.name} has {kv[1]} of {kv[3]}; {again}.")
    context, trained = described["context_length"], described["trained"]
    if header.positions is not None and context > header.positions:
        _fail(f"{damaged}: it gives a context of {context:,} tokens, but {onnx_path.name} has positions "
              f"for only {header.positions:,}; {again}.")
    if trained is not None and 0 < trained < context:
        _fail(f"{damaged}: it gives a context of {context:,} tokens, longer than the {trained:,} "
              f"the model was trained on; {again}.")
    return _KV_DTYPES[kv_type]


def _check_external_data(onnx_path: Path, folder: Path, external: dict[str, int], again: str) -> None:
    """Fail if a file holding some of the graph's weights is missing or
    shorter than the graph's entries in it reach (a cut copy or download)."""
    for location, needed in sorted(external.items()):
        data = onnx_path.parent / location
        name = data.relative_to(folder) if data.is_relative_to(folder) else data
        if not data.is_file():
            _fail(f"The model folder {folder} is incomplete: {name} (weights of {onnx_path.name}) is missing.")
        size = data.stat().st_size
        if size < needed:
            have, want = _size_text(size), _size_text(needed)
            if have == want:
                have, want = f"{size:,} bytes", f"{needed:,}"
            _fail(f"The model folder {folder} is damaged: {name} is cut short ({have} of {want}); {again}.")


def _size_text(n: int) -> str:
    if n >= 10**9:
        return f"{n / 1e9:.2f} GB"
    if n >= 10**6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"The file {path} cannot be read ({_one_line(getattr(exc, 'strerror', None) or exc)}).")


# -- Hugging Face layout ----------------------------------------------------

def _onnx_candidates(folder: Path) -> list[Path]:
    """The ONNX decoder files of ``folder`` in order of preference (see the module text)."""
    places = [folder / ONNX_SUBFOLDER, folder]
    found: list[Path] = []
    for name in ONNX_PREFERENCE:
        for place in places:
            if (place / name).is_file():
                found.append(place / name)
    for place in places:
        if place.is_dir():
            found.extend(p for p in sorted(place.glob("model*.onnx")) if p.is_file() and p not in found)
    return found


def _read_huggingface(folder: Path) -> ModelSpec:
    config = _read_json(folder / HF_CONFIG, "model configuration")
    if not isinstance(config, dict):
        _fail(f"The model configuration {folder / HF_CONFIG} is damaged (it is not a JSON object).")
    candidates = _onnx_candidates(folder)
    if not candidates:
        if any(folder.glob("*.safetensors")) or any(folder.glob("*.bin")):
            _fail(
                f"{folder} holds PyTorch weights but no ONNX model; lmdesk needs an ONNX export "
                f"(onnx/model.onnx), such as those of onnx-community."
            )
        _fail(f"The model folder {folder} has no ONNX model (lmdesk looks for onnx/model.onnx and its variants).")
    onnx_path = candidates[0]
    tokenizer_path = folder / TOKENIZER_FILE
    _require_file(folder, tokenizer_path, " (lmdesk needs the fast-tokenizer file, not only tokenizer.model)")

    cfg = _text_config(config)
    hf = _hf_dimensions(cfg, folder / HF_CONFIG)
    graph = _graph_io(onnx_path, folder)
    where = onnx_path.relative_to(folder)
    for what, from_config, from_graph in (
        ("layers", hf["n_layer"], graph["n_layer"]),
        ("key/value heads", hf["n_head_kv"], graph["n_head_kv"]),
        ("numbers per attention head", hf["head_dim"], graph["head_dim"]),
        ("vocabulary entries", hf["vocab_size"], graph["vocab_size"]),
    ):
        if from_graph is not None and from_config is not None and from_graph != from_config:
            _fail(
                f"{HF_CONFIG} in {folder} says the model has {from_config} {what} but {where} has {from_graph}, "
                "so they belong to different models."
            )
    dims = {k: hf[k] if hf[k] is not None else graph[k] for k in ("n_layer", "n_head_kv", "head_dim", "vocab_size")}
    for key, value in dims.items():
        if value is None:
            _fail(f"{HF_CONFIG} in {folder} does not give the model's {key.replace('_', ' ')}.")

    tok_json = _read_json(tokenizer_path, "tokenizer file")
    if not isinstance(tok_json, dict):
        _fail(f"The tokenizer file {tokenizer_path} is damaged (it is not a JSON object).")
    tok_config_path = folder / HF_TOKENIZER_CONFIG
    tok_config = _read_json(tok_config_path, "tokenizer configuration") if tok_config_path.is_file() else {}
    if not isinstance(tok_config, dict):
        _fail(f"The tokenizer configuration {tok_config_path} is damaged (it is not a JSON object).")
    gen_path = folder / HF_GENERATION_CONFIG
    gen_config = _read_json(gen_path, "generation configuration") if gen_path.is_file() else {}
    if not isinstance(gen_config, dict):
        gen_config = {}

    vocab = _token_ids(tok_json)
    id_to_token = {i: t for t, i in vocab.items()}
    special_ids = set()
    for entry in tok_json.get("added_tokens") or []:
        if isinstance(entry, dict) and entry.get("special") and _int_or_none(entry.get("id")) is not None:
            special_ids.add(int(entry["id"]))
    decoder = tok_config.get("added_tokens_decoder")
    for key, entry in (decoder.items() if isinstance(decoder, dict) else ()):
        if isinstance(entry, dict) and entry.get("special") and _int_or_none(key) is not None:
            special_ids.add(int(key))
            if isinstance(entry.get("content"), str):
                id_to_token.setdefault(int(key), entry["content"])
                vocab.setdefault(entry["content"], int(key))

    bos_token = _token_text(tok_config.get("bos_token"))
    eos_token = _token_text(tok_config.get("eos_token"))
    bos_ids = _id_list(cfg.get("bos_token_id", config.get("bos_token_id")))
    eos_ids = _id_list(cfg.get("eos_token_id", config.get("eos_token_id")))
    gen_eos = _id_list(gen_config.get("eos_token_id"))
    bos_id = bos_ids[0] if bos_ids else _int_or_none(gen_config.get("bos_token_id"))
    if bos_id is None and bos_token is not None:
        bos_id = vocab.get(bos_token)
    if eos_token is not None and eos_token in vocab:
        eos_id = vocab[eos_token]
    else:
        eos_id = (eos_ids or gen_eos or [None])[0]
    if bos_token is None and bos_id is not None:
        bos_token = id_to_token.get(bos_id)
    if eos_token is None and eos_id is not None:
        eos_token = id_to_token.get(eos_id)

    stop_ids = set(eos_ids) | set(gen_eos)
    if eos_id is not None:
        stop_ids.add(eos_id)
    stop_ids |= {i for i in special_ids if id_to_token.get(i) in KNOWN_END_OF_TURN}

    context = _int_or_none(
        cfg.get("max_position_embeddings") or cfg.get("n_positions") or cfg.get("max_sequence_length")
    )
    if context is None or context <= 0:
        model_max = _int_or_none(tok_config.get("model_max_length"))
        context = model_max if model_max is not None and 0 < model_max < 10**7 else 2048
    if graph["positions"] is not None:  # the rotary tables end there, whatever config.json says
        context = min(context, graph["positions"])

    return ModelSpec(
        folder=folder,
        layout=LAYOUT_HUGGINGFACE,
        name=folder.name,
        onnx_path=onnx_path,
        tokenizer_path=tokenizer_path,
        chat_template=_hf_chat_template(folder, tok_config),
        n_layer=dims["n_layer"],
        n_head_kv=dims["n_head_kv"],
        head_dim=dims["head_dim"],
        vocab_size=dims["vocab_size"],
        context_length=context,
        bos_id=bos_id,
        eos_id=eos_id,
        bos_token=bos_token,
        eos_token=eos_token,
        add_bos=_adds_bos(tok_json, bos_id, bos_token),
        stop_ids=frozenset(stop_ids),
        special_ids=frozenset(special_ids),
        input_ids_name=graph["input_ids"],
        attention_mask_name=graph["attention_mask"],
        position_ids_name=graph["position_ids"],
        past_key_names=graph["past_key"],
        past_value_names=graph["past_value"],
        logits_name=graph["logits"],
        present_key_names=graph["present_key"],
        present_value_names=graph["present_value"],
        kv_dtype=graph["kv_dtype"],
        manifest={},
    )


def _text_config(config: dict) -> dict:
    """The language model's part of ``config.json`` (multimodal configs nest it in text_config)."""
    text = config.get("text_config")
    if isinstance(text, dict) and "num_hidden_layers" not in config:
        return {**config, **text}
    return config


def _hf_dimensions(cfg: dict, path: Path) -> dict:
    def first(*keys):
        for key in keys:
            value = _int_or_none(cfg.get(key))
            if value is not None:
                return value
        return None

    n_layer = first("num_hidden_layers", "n_layer", "num_layers")
    n_head = first("num_attention_heads", "n_head")
    n_head_kv = first("num_key_value_heads", "multi_query_group_num") or n_head
    hidden = first("hidden_size", "n_embd", "d_model")
    head_dim = first("head_dim")
    if head_dim is None and hidden is not None and n_head:
        head_dim = hidden // n_head
    vocab = first("vocab_size")
    for key, value in (("num_hidden_layers", n_layer), ("vocab_size", vocab)):
        if value is None:
            _fail(f"The model configuration {path} lacks '{key}'.")
    return {"n_layer": n_layer, "n_head_kv": n_head_kv, "head_dim": head_dim, "vocab_size": vocab}


def _token_text(value) -> str | None:
    """A special token of tokenizer_config.json: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _token_ids(tok_json: dict) -> dict[str, int]:
    """Token text -> id of tokenizer.json: its model's vocabulary and its added tokens."""
    ids: dict[str, int] = {}
    vocab = (tok_json.get("model") or {}).get("vocab")
    if isinstance(vocab, dict):
        ids.update((t, i) for t, i in vocab.items() if isinstance(i, int))
    elif isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        ids.update((entry[0], i) for i, entry in enumerate(vocab) if isinstance(entry, list) and entry)
    for entry in tok_json.get("added_tokens") or []:
        if isinstance(entry, dict) and isinstance(entry.get("content"), str) and _int_or_none(entry.get("id")) is not None:
            ids[entry["content"]] = int(entry["id"])
    return ids


def _adds_bos(tok_json: dict, bos_id: int | None, bos_token: str | None) -> bool:
    """Whether encoding with tokenizer.json prepends the BOS token (its post-processor decides)."""
    processor = tok_json.get("post_processor")
    processors = [processor] if isinstance(processor, dict) else []
    if processors and processors[0].get("type") == "Sequence":
        processors = [p for p in processors[0].get("processors") or [] if isinstance(p, dict)]
    for p in processors:
        if p.get("type") == "TemplateProcessing":
            single = p.get("single") or []
            head = single[0] if single and isinstance(single[0], dict) else {}
            token = (head.get("SpecialToken") or {}).get("id")
            if token is None:
                return False
            entry = (p.get("special_tokens") or {}).get(token) or {}
            return token == bos_token or (bos_id is not None and list(entry.get("ids") or []) == [bos_id])
    # Without a template the tokenizers library adds nothing, whatever tokenizer_config.json's
    # add_bos_token says (transformers rewrites the post-processor on load; lmdesk does not).
    return False


def _hf_chat_template(folder: Path, tok_config: dict) -> str | None:
    """chat_template.jinja when present (newer exports), else chat_template.json's or tokenizer_config.json's."""
    jinja = folder / CHAT_TEMPLATE_FILE
    if jinja.is_file():
        return _read_text(jinja)
    template = tok_config.get("chat_template")
    if template is None and (folder / HF_CHAT_TEMPLATE_JSON).is_file():
        data = _read_json(folder / HF_CHAT_TEMPLATE_JSON, "chat template")
        template = data.get("chat_template") if isinstance(data, dict) else None
    if isinstance(template, list):  # [{"name": "default", "template": ...}, {"name": "tool_use", ...}]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    return template if isinstance(template, str) and template.strip() else None


# -- reading an ONNX graph's inputs and outputs -----------------------------

def _graph_io(onnx_path: Path, folder: Path) -> dict:
    """Names, cache type and fixed sizes of a decoder graph, from its header only."""
    header = _read_graph_header(onnx_path, folder)
    where = onnx_path.relative_to(folder)
    _check_external_data(onnx_path, folder, header.external, "copy or download the model again")
    inputs = [vi for vi in header.inputs if vi.name not in header.initializers]  # old exports list weights as inputs
    in_names = {vi.name: vi for vi in inputs}
    out_names = {vi.name: vi for vi in header.outputs}

    past = _match_cache(in_names, _PAST_PATTERNS)
    if not past:
        if "inputs_embeds" in in_names and INPUT_IDS not in in_names:
            _fail(f"{where} in {folder} takes embeddings, not token ids; lmdesk needs a decoder with an input_ids input.")
        _fail(
            f"{where} in {folder} has no KV cache inputs (past_key_values); "
            "lmdesk needs a decoder exported with a KV cache."
        )
    present = _match_cache(out_names, _PRESENT_PATTERNS)
    n_layer = _check_layers(past, where, folder, "inputs")
    if _check_layers(present, where, folder, "outputs") != n_layer:
        _fail(f"{where} in {folder} has KV cache inputs and outputs for different numbers of layers.")
    if INPUT_IDS not in in_names:
        _fail(f"{where} in {folder} has no input_ids input, so lmdesk cannot feed it text.")
    if LOGITS not in out_names:
        _fail(f"{where} in {folder} has no logits output, so lmdesk cannot read its predictions.")
    known = {INPUT_IDS, ATTENTION_MASK, POSITION_IDS} | {n for pair in past.values() for n in pair.values()}
    unknown = [n for n in in_names if n not in known]
    if unknown:
        _fail(f"{where} in {folder} needs the input '{unknown[0]}', which lmdesk does not know how to feed.")
    for name in (INPUT_IDS, ATTENTION_MASK, POSITION_IDS):
        vi = in_names.get(name)
        if vi is not None and vi.type.tensor_type.elem_type != _ELEM_INT64:
            _fail(f"{where} in {folder} takes {name} in a form lmdesk does not feed (it feeds 64-bit integers).")

    kv_types = {vi.type.tensor_type.elem_type for pair in past.values() for vi in (in_names[n] for n in pair.values())}
    if len(kv_types) != 1 or next(iter(kv_types)) not in _KV_DTYPES:
        _fail(f"{where} in {folder} keeps its KV cache in a number type lmdesk cannot use ({_KV_NEED}).")
    kv_dtype = _KV_DTYPES[next(iter(kv_types))]

    shape = _static_dims(in_names[past[0]["key"]])
    if len(shape) != 4:
        _fail(f"{where} in {folder} keeps its KV cache in a shape lmdesk does not know ({_SHAPE_NEED}).")
    logits_shape = _static_dims(out_names[LOGITS])
    return {
        "n_layer": n_layer,
        "n_head_kv": shape[1],
        "head_dim": shape[3],
        "vocab_size": logits_shape[-1] if logits_shape else None,
        "positions": header.positions,
        "kv_dtype": kv_dtype,
        "input_ids": INPUT_IDS,
        "attention_mask": ATTENTION_MASK if ATTENTION_MASK in in_names else None,
        "position_ids": POSITION_IDS if POSITION_IDS in in_names else None,
        "logits": LOGITS,
        "past_key": tuple(past[i]["key"] for i in range(n_layer)),
        "past_value": tuple(past[i]["value"] for i in range(n_layer)),
        "present_key": tuple(present[i]["key"] for i in range(n_layer)),
        "present_value": tuple(present[i]["value"] for i in range(n_layer)),
    }


def _match_cache(names, patterns) -> dict[int, dict[str, str]]:
    """{layer: {"key": name, "value": name}} of the names matching one of ``patterns``."""
    found: dict[int, dict[str, str]] = {}
    for name in names:
        for pattern in patterns:
            m = pattern.match(name)
            if m:
                found.setdefault(int(m["i"]), {})[m["kind"]] = name
                break
    return found


def _check_layers(cache: dict[int, dict[str, str]], where, folder: Path, kind: str) -> int:
    n = len(cache)
    if sorted(cache) != list(range(n)) or any(set(pair) != {"key", "value"} for pair in cache.values()):
        _fail(f"{where} in {folder} has KV cache {kind} that do not pair a key and a value for every layer.")
    return n


def _static_dims(value_info) -> list[int | None]:
    """The dimensions of a graph input or output: ints where fixed, None where named or unknown."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


@dataclass(frozen=True)
class _GraphHeader:
    inputs: list
    outputs: list
    initializers: dict  # name -> TensorProto (an external one without its data)
    external: dict[str, int]  # file beside the graph -> bytes its entries reach (offset + length)
    positions: int | None  # positions the attention's rotary tables hold, when the graph records them


def _read_graph_header(path: Path, folder: Path) -> _GraphHeader:
    """The inputs, outputs and initializers of an ONNX file, the external data
    its weights need and how many positions its rotary tables hold.

    Weights kept in external files are not read; weights inside the file are
    parsed by onnx along with the rest (a fraction of a second for a small model).
    """
    import onnx  # the package is slow to import; only loading needs it

    where = path.relative_to(folder) if path.is_relative_to(folder) else path
    if path.stat().st_size == 0:
        _fail(f"{where} in {folder} is empty, so it holds no model.")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds on a damaged file
        _fail(f"{where} in {folder} is damaged and cannot be read as an ONNX model ({_one_line(exc)[:200]}).")
    g = model.graph
    if not g.input or not g.output:
        _fail(f"{where} in {folder} is damaged or is not an ONNX model (its graph has no inputs or outputs).")
    external: dict[str, int] = {}
    initializers = {}
    for t in g.initializer:
        initializers[t.name] = t
        if t.data_location == onnx.TensorProto.EXTERNAL:
            entry = {e.key: e.value for e in t.external_data}
            location = entry.get("location")
            if location:
                length = _int_or_none(entry.get("length"))
                end = (_int_or_none(entry.get("offset")) or 0) + (length if length is not None else _tensor_bytes(t))
                external[location] = max(external.get(location, 0), end)
    return _GraphHeader(list(g.input), list(g.output), initializers, external, _rotary_positions(g, initializers))


def _tensor_bytes(t) -> int:
    """The size of an initializer's data from its shape and type (0 if unknown)."""
    from onnx import helper

    try:
        n = 1
        for d in t.dims:
            n *= int(d)
        return n * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return 0


def _rotary_positions(graph, initializers: dict) -> int | None:
    """The positions the rotary tables of the graph's GroupQueryAttention hold
    (the rows of their cos cache): an initializer's first dimension, or the
    length of the Range that lmdesk's graphs compute the tables from. None
    when no table is found (other exports compute it from position_ids)."""
    tables = {node.input[7] for node in graph.node
              if node.op_type == "GroupQueryAttention" and len(node.input) > 7 and node.input[7]
              and any(a.name == "do_rotary" and a.i for a in node.attribute)}
    if not tables:
        return None
    producer = {out: node for node in graph.node for out in node.output}
    rows = [r for r in (_table_rows(name, producer, initializers) for name in tables) if r is not None]
    return min(rows) if rows else None


def _table_rows(name: str, producer: dict, initializers: dict) -> int | None:
    """Rows of the table ``name``: followed up through its producers' first
    inputs (Cast, Cos, Mul, Unsqueeze …) to an initializer or a Range of constants."""
    for _ in range(16):
        t = initializers.get(name)
        if t is not None:
            return int(t.dims[0]) if len(t.dims) == 2 else None
        node = producer.get(name)
        if node is None or not node.input:
            return None
        if node.op_type == "Range":
            start, limit, delta = (_scalar(initializers.get(n)) for n in list(node.input)[:3])
            if None in (start, limit, delta) or delta <= 0:
                return None
            return max(0, math.ceil((limit - start) / delta))
        name = node.input[0]
    return None


def _scalar(t) -> float | None:
    """The value of a one-number initializer held in the graph file, else None."""
    import onnx
    from onnx import numpy_helper

    if t is None or t.data_location == onnx.TensorProto.EXTERNAL:
        return None
    try:
        value = numpy_helper.to_array(t)
    except Exception:  # noqa: BLE001 - a damaged constant is simply not a limit
        return None
    if value.size != 1:
        return None
    value = float(value.reshape(-1)[0])
    return value if math.isfinite(value) else None


def save_chat_template(folder: Path | str, source: str, origin: str) -> None:
    """Keep ``source`` as the chat template of the lmdesk model folder
    ``folder`` (``chat_template.jinja``, named in its manifest with where it
    came from); one sentence if the folder cannot take it."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    manifest = _read_json(manifest_path, "model description")
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        _fail(f"{folder} is not an lmdesk model folder, so the chat template cannot be kept in it.")
    files = manifest.setdefault("files", {})
    files["chat_template"] = CHAT_TEMPLATE_FILE
    manifest["chat_template_origin"] = origin
    try:
        for name, text in ((CHAT_TEMPLATE_FILE, source),
                           (MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")):
            part = folder / f".{name}.part"
            part.write_text(text, encoding="utf-8")
            part.replace(folder / name)
    except OSError as exc:
        _fail(f"The chat template cannot be kept in {folder} ({exc.strerror or exc}); it is used until lmdesk closes.")

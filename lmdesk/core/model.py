"""Load a model folder and run it: one onnxruntime session and its KV cache.

Only one thread may use a :class:`LoadedModel` at a time (the app's worker
thread owns it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .errors import ModelLoadError
from .gguf_import import CHAT_TEMPLATE_FILE, MANIFEST, MANIFEST_FORMAT, MODEL_FILE, TOKENIZER_FILE


@dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer for the first :attr:`length` positions."""

    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]

    @property
    def length(self) -> int:
        return int(self.keys[0].shape[2])

    def truncated(self, n: int) -> KVCache:
        """The cache of the first ``n`` positions (no copy)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot keep {n} of {self.length} cached positions")
        return KVCache(tuple(k[:, :, :n] for k in self.keys), tuple(v[:, :, :n] for v in self.values))


class LoadedModel:
    """A model folder loaded for inference on the CPU."""

    def __init__(self, folder: Path | str, *, threads: int | None = None) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / MANIFEST
        try:
            self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelLoadError(f"{self.folder} is not a model folder (it has no {MANIFEST}).") from exc
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"The model description {manifest_path} is damaged ({exc}).") from exc
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != MANIFEST_FORMAT:
            raise ModelLoadError(f"{manifest_path} is not an lmdesk model description.")
        try:
            dims = self.manifest["dimensions"]
            self.n_layer = int(dims["n_layer"])
            self.n_head_kv = int(dims["n_head_kv"])
            self.head_dim = int(dims["head_dim"])
            self.vocab_size = int(dims["vocab_size"])
            self.context_length = int(self.manifest["context_length"])
            tokens = self.manifest["tokens"]
            self.stop_ids = frozenset(int(i) for i in tokens["stop_ids"])
            self.special_ids = frozenset(int(i) for i in tokens["special_ids"])
            self.eos_id = tokens.get("eos_id")
            self.bos_id = tokens.get("bos_id")
            files = self.manifest.get("files", {})
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"The model description {manifest_path} is incomplete (missing {exc}).") from exc

        model_path = self.folder / (files.get("model") or MODEL_FILE)
        tok_path = self.folder / (files.get("tokenizer") or TOKENIZER_FILE)
        template_name = files.get("chat_template", CHAT_TEMPLATE_FILE)
        for needed in (model_path, tok_path):
            if not needed.is_file():
                raise ModelLoadError(f"The model folder {self.folder} is incomplete: {needed.name} is missing.")
        try:
            self.tokenizer = Tokenizer.from_file(str(tok_path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ModelLoadError(f"The tokenizer file {tok_path} is damaged ({exc}).") from exc
        template_path = self.folder / template_name if template_name else None
        self.chat_template = (
            template_path.read_text(encoding="utf-8") if template_path and template_path.is_file() else None
        )

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(4, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(f"onnxruntime cannot load {model_path.name} from {self.folder} ({exc}).") from exc
        io = self.manifest.get("io", {})
        self._ids_name = io.get("input_ids", "input_ids")
        self._mask_name = io.get("attention_mask", "attention_mask")
        key_pattern = io.get("past_key", "past_key_values.{i}.key")
        value_pattern = io.get("past_value", "past_key_values.{i}.value")
        self._past_names = [(key_pattern.format(i=i), value_pattern.format(i=i)) for i in range(self.n_layer)]
        outputs = [o.name for o in self.session.get_outputs()]
        logits_name = io.get("logits", "logits")
        present = [
            (io.get("present_key", "present.{i}.key").format(i=i), io.get("present_value", "present.{i}.value").format(i=i))
            for i in range(self.n_layer)
        ]
        self._output_names = [logits_name] + [n for pair in present for n in pair]
        missing = [n for n in self._output_names if n not in outputs]
        if missing:
            raise ModelLoadError(f"{model_path.name} lacks the outputs lmdesk needs ({', '.join(missing[:3])}).")

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.folder.name))

    def empty_cache(self) -> KVCache:
        empty = np.zeros((1, self.n_head_kv, 0, self.head_dim), np.float32)
        return KVCache((empty,) * self.n_layer, (empty,) * self.n_layer)

    def forward(self, ids: Sequence[int], cache: KVCache) -> tuple[np.ndarray, KVCache]:
        """Run ``ids`` after the cached positions.

        Returns the logits ``[len(ids), vocab]`` (float32) and the cache
        extended by ``ids``.
        """
        n = len(ids)
        if n == 0:
            raise ValueError("forward needs at least one token")
        total = cache.length + n
        if total > self.context_length:
            raise ValueError(f"{total} tokens exceed the model's context of {self.context_length}")
        feeds: dict[str, np.ndarray] = {
            self._ids_name: np.asarray(ids, dtype=np.int64).reshape(1, n),
            self._mask_name: np.ones((1, total), dtype=np.int64),
        }
        for (kname, vname), k, v in zip(self._past_names, cache.keys, cache.values):
            feeds[kname] = np.ascontiguousarray(k)
            feeds[vname] = np.ascontiguousarray(v)
        out = self.session.run(self._output_names, feeds)
        logits = out[0][0]
        return logits, KVCache(tuple(out[1::2]), tuple(out[2::2]))

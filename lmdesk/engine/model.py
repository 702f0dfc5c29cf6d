"""Load a model folder and run it: one onnxruntime session and its KV cache.

Only one thread may use a :class:`LoadedModel` at a time (the app's worker
thread owns it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from .errors import ModelLoadError
from .memory import release_file_pages
from .model_folder import read_model_folder


@dataclass(frozen=True)
class KVCache:
    """Keys and values of every layer for the first :attr:`length` positions.

    The arrays are ``[1, n_head_kv, capacity, head_dim]`` with ``capacity >=
    length``: lmdesk's own graphs write each new position into them in place
    (GroupQueryAttention shares the past and present buffers), so a step
    copies nothing. A cache therefore stays valid until a forward pass from
    a shorter cache over the same arrays writes into its positions: keep
    using the newest cache, or a truncation of it, as a session does.
    """

    keys: tuple[np.ndarray, ...]
    values: tuple[np.ndarray, ...]
    length: int

    @property
    def capacity(self) -> int:
        return int(self.keys[0].shape[2])

    def truncated(self, n: int) -> KVCache:
        """The cache of the first ``n`` positions (no copy)."""
        if not 0 <= n <= self.length:
            raise ValueError(f"cannot keep {n} of {self.length} cached positions")
        return KVCache(self.keys, self.values, n)

    def exact(self) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
        """The keys and values of the :attr:`length` positions only."""
        n = self.length
        return tuple(k[:, :, :n] for k in self.keys), tuple(v[:, :, :n] for v in self.values)


# the in-place cache grows by half again, in steps of this many positions
KV_CAPACITY_STEP = 256


class LoadedModel:
    """A model folder (lmdesk's own or a Hugging Face ONNX export) loaded for
    inference on the CPU."""

    def __init__(self, folder: Path | str, *, threads: int | None = None, chat_template: str | None = None,
                 spin: bool = True) -> None:
        """``chat_template``: jinja2 source used instead of the folder's own (or
        for a folder that has none). ``spin``: onnxruntime's threads keep
        spinning for a moment after each step, ready for the next; faster
        alone (SmolLM2 decode 18 instead of 22 ms), slower beside a window
        that needs a core to draw (see lmdesk.ui.worker)."""
        self.spec = spec = read_model_folder(folder)
        self.folder = spec.folder
        self.manifest = spec.manifest
        self.n_layer = spec.n_layer
        self.n_head_kv = spec.n_head_kv
        self.head_dim = spec.head_dim
        self.vocab_size = spec.vocab_size
        self.context_length = spec.context_length
        self.stop_ids = spec.stop_ids
        self.special_ids = spec.special_ids
        self.eos_id = spec.eos_id
        self.bos_id = spec.bos_id
        self.chat_template = chat_template if chat_template is not None else spec.chat_template
        self._kv_dtype = np.dtype(spec.kv_dtype)
        try:
            self.tokenizer = Tokenizer.from_file(str(spec.tokenizer_path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ModelLoadError(f"The tokenizer file {spec.tokenizer_path} is damaged ({exc}).") from exc

        self.threads = threads or min(4, os.cpu_count() or 1)
        self._spin = spin
        self.session = self._open_session(spec.onnx_path)
        self._inspection: ort.InferenceSession | None = None
        self._past_names = list(zip(spec.past_key_names, spec.past_value_names))
        # lmdesk's graphs (GroupQueryAttention, an attention mask) keep the cache in place
        self._in_place = spec.layout == "lmdesk" and spec.attention_mask_name is not None
        # the cache's arrays are written in place and keep positions past a shorter cache's length
        self.cache_in_place = self._in_place
        self._kv_names = list(zip(spec.past_key_names, spec.present_key_names,
                                  spec.past_value_names, spec.present_value_names))
        # per session: the binding of the cache arrays last run in place, kept for the next
        # step over the same arrays (binding 2 x 30 cache buffers anew took 2.6 ms a step)
        self._bound: dict[int, tuple[ort.InferenceSession, tuple, ort.IOBinding]] = {}
        self._output_names = [spec.logits_name] + [
            n for pair in zip(spec.present_key_names, spec.present_value_names) for n in pair
        ]

    def _open_session(self, path: Path) -> ort.InferenceSession:
        """An onnxruntime session of the graph ``path`` of this folder."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No memory arena: the arena keeps the largest buffers a long prefill
        # ever needed (logits of a whole chunk) for the rest of the session;
        # measured on the default model: peak 660 → 545 MB after 1,000
        # tokens, prefill and decode times unchanged.
        options.enable_cpu_mem_arena = False
        if not self._spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.spec.layout == "lmdesk":
            # lmdesk's graphs have no quantize/dequantize pairs to fuse; this lets the
            # dequantized output matrix be folded once at load (see onnx_decoder)
            options.add_session_config_entry("session.disable_quant_qdq", "1")
        try:
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelLoadError(
                f"onnxruntime cannot load {path.name} from {self.folder} ({str(exc).splitlines()[0]})."
            ) from exc
        release_file_pages(self.folder)  # the weights' file pages it read to pack them (see engine.memory)
        return session

    def inspection_session(self) -> ort.InferenceSession:
        """The session of the folder's inspection graph (see
        :mod:`lmdesk.engine.inspect`), loaded on first use: a model that is
        never looked inside never pays its memory. One sentence
        (:class:`ModelLoadError`) for a folder that has none."""
        if self._inspection is None:
            path = self.spec.inspect_path
            if self.spec.layout != "lmdesk":
                raise ModelLoadError(
                    f"Looking inside a model needs a model folder imported by lmdesk; {self.folder.name} is a "
                    "Hugging Face ONNX export, whose graph gives only the final scores (import the model's "
                    "GGUF file with lmdesk to look inside it)."
                )
            if path is None:
                raise ModelLoadError(
                    f"The model folder {self.folder.name} was made by an older lmdesk: import it again "
                    "to look inside the model."
                )
            self._inspection = self._open_session(path)
        return self._inspection

    def close_inspection(self) -> None:
        """Let the inspection session go (its memory: measured +117 MB for
        SmolLM2, +568 MB for Gemma 3 270M); the next inspection loads it again."""
        if self._inspection is not None:
            self._bound.pop(id(self._inspection), None)
        self._inspection = None

    @property
    def name(self) -> str:
        return self.spec.name

    def empty_cache(self) -> KVCache:
        empty = np.zeros((1, self.n_head_kv, 0, self.head_dim), self._kv_dtype)
        return KVCache((empty,) * self.n_layer, (empty,) * self.n_layer, 0)

    def room_for(self, cache: KVCache, total: int) -> KVCache:
        """``cache`` with arrays that hold at least ``total`` positions: the
        same arrays when they do, else larger ones with the cached positions
        copied over (half as large again, in steps of KV_CAPACITY_STEP, at
        most the context)."""
        if cache.capacity >= total:
            return cache
        grown = max(total, cache.capacity * 3 // 2)
        capacity = min(self.context_length, -(-grown // KV_CAPACITY_STEP) * KV_CAPACITY_STEP)
        n = cache.length

        def bigger(a: np.ndarray) -> np.ndarray:
            b = np.zeros((1, self.n_head_kv, capacity, self.head_dim), self._kv_dtype)
            b[:, :, : a.shape[2]] = a  # all of it: positions past ``n`` may be a longer document's, for undo
            return b

        return KVCache(tuple(map(bigger, cache.keys)), tuple(map(bigger, cache.values)), n)

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
        if self._in_place:
            return self._forward_in_place(ids, cache, total)
        spec = self.spec
        feeds: dict[str, np.ndarray] = {spec.input_ids_name: np.asarray(ids, dtype=np.int64).reshape(1, n)}
        if spec.attention_mask_name:
            feeds[spec.attention_mask_name] = np.ones((1, total), dtype=np.int64)
        if spec.position_ids_name:
            feeds[spec.position_ids_name] = np.arange(cache.length, total, dtype=np.int64).reshape(1, n)
        for (kname, vname), k, v in zip(self._past_names, *cache.exact()):
            feeds[kname] = np.ascontiguousarray(k)
            feeds[vname] = np.ascontiguousarray(v)
        out = self.session.run(self._output_names, feeds)
        logits = self.checked(out[0][0].astype(np.float32, copy=False))
        return logits, KVCache(tuple(out[1::2]), tuple(out[2::2]), total)

    def _forward_in_place(self, ids: Sequence[int], cache: KVCache, total: int) -> tuple[np.ndarray, KVCache]:
        """lmdesk's graphs: each layer's past and present are bound to the same
        array, where GroupQueryAttention writes the new positions; the
        attention mask tells it how many positions are real."""
        (logits,), cache = self.run_in_place(self.session, ids, cache, [self.spec.logits_name])
        return self.checked(logits[0].astype(np.float32, copy=False)), cache

    def run_in_place(self, session: ort.InferenceSession, ids: Sequence[int], cache: KVCache,
                     outputs: Sequence[str], *, write: bool = True) -> tuple[list[np.ndarray], KVCache]:
        """Run ``ids`` after ``cache`` through ``session`` (one of this folder's
        lmdesk graphs, which take and give the cache as the decoder does) with
        the cache bound in place; return the ``outputs`` named and the cache
        extended by ``ids``. With ``write=False`` the cache is only read (the
        new positions go to buffers of the run's own) and comes back as it was:
        someone else's cache, looked at and left alone."""
        spec = self.spec
        total = cache.length + len(ids)
        if total > self.context_length:
            raise ValueError(f"{total} tokens exceed the model's context of {self.context_length}")
        if write:
            cache = self.room_for(cache, total)
        binding = self._cache_binding(session, cache, outputs, write)
        # the bound arrays must outlive the run: onnxruntime reads them in place
        input_ids = np.asarray(ids, dtype=np.int64).reshape(1, len(ids))
        mask = np.ones((1, total), dtype=np.int64)
        binding.bind_cpu_input(spec.input_ids_name, input_ids)
        binding.bind_cpu_input(spec.attention_mask_name, mask)
        for name in outputs:  # anew: a run leaves its outputs bound, of that run's shape
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        values = [v.numpy() for v in binding.get_outputs()[: len(outputs)]]
        return values, KVCache(cache.keys, cache.values, total) if write else cache

    def _cache_binding(self, session: ort.InferenceSession, cache: KVCache, outputs: Sequence[str],
                       write: bool) -> ort.IOBinding:
        """A binding of ``session`` with ``outputs`` and the cache's arrays bound
        (as past and, with ``write``, as present): the last one made for the
        session when it bound the very same arrays (a cache and its
        truncations share them), else a new one. The tuples of arrays are kept
        with it, so that what it points to stays allocated."""
        key = (cache.keys, cache.values, tuple(outputs), write)
        held = self._bound.get(id(session))
        if held is not None and held[0] is session and held[1][0] is key[0] and held[1][1] is key[1] \
                and held[1][2:] == key[2:]:
            return held[2]
        binding = session.io_binding()
        for name in outputs:  # first: get_outputs() lists the outputs in binding order
            binding.bind_output(name, "cpu")
        for (past_k, present_k, past_v, present_v), k, v in zip(self._kv_names, cache.keys, cache.values):
            for past, present, a in ((past_k, present_k, k), (past_v, present_v, v)):
                binding.bind_input(past, "cpu", 0, a.dtype, list(a.shape), a.ctypes.data)
                if write:
                    binding.bind_output(present, "cpu", 0, a.dtype, list(a.shape), a.ctypes.data)
        self._bound[id(session)] = (session, key, binding)
        return binding

    def checked(self, logits: np.ndarray) -> np.ndarray:
        """``logits``, unless a row holds NaN, +infinity or nothing finite:
        then the weights are damaged (a model makes finite scores), and every
        probability computed from the row would be NaN. One maximum per row
        (it propagates NaN): measured 6 µs for a step of SmolLM2's 49,152 scores, 0.6 ms
        for a chunk of 128 positions (the pass itself takes 50 ms and more)."""
        peaks = logits.max(axis=-1)
        if not np.isfinite(peaks).all():
            what = "not a number (NaN)" if np.isnan(peaks).any() else "infinite"
            again = ("copy the model folder again or import its GGUF file again" if self.spec.layout == "lmdesk"
                     else "copy or download the model again")
            raise ModelLoadError(
                f"The model in {self.folder} is damaged: its output is {what}, so its weights are broken; {again}."
            )
        return logits

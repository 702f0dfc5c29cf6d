"""Look inside the model at one position: the logit lens, the attention
weights and the raw logits.

For position ``P`` of a document of ``n`` tokens (``1 <= P <= n``) the
inspection shows the prediction of token ``P`` (the token after the text when
``P = n``): the model's state at token ``P - 1``. It reads the folder's
inspection graph (``inspect.onnx``, made by the converter beside the decoder,
see :mod:`lmdesk.convert.onnx_decoder`), which runs that one token after a
cache of the tokens before it and gives

* the residual stream after the embeddings and after every block;
* the logit lens: the final norm and the output head (the final soft-cap
  included) applied to the residual after each block ``l = 1 … L``, "what the
  model would say if it stopped at layer l"; at ``l = L`` it is the model's
  own distribution;
* every layer's attention weights of that token over keys ``0 … P - 1``, per
  head, the same weights the model uses (a sliding-window layer's are zero
  outside its window).

The tokens before it are run through the same graph, in chunks (the
decoder would compute the scores of the whole vocabulary at every one of
them, a fifth of its work, for nothing), and their cache kept: clicking
another position of the same document reruns only what changed (a position
earlier in it costs one step). A caller that holds the cache of the document
already (a session) passes it: then any position costs one step, which reads
that cache in place and keeps nothing (no second copy of a long document's
cache). No Qt: the window's worker thread owns an inspector; the
probabilities are computed in float64 from the graph's float32 logits, as
:mod:`stats` does.
Only one thread may use an :class:`Inspector` (and its model) at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .document import same_prefix
from .errors import Cancelled, LmdeskError
from .model import KVCache, LoadedModel
from .model_format import INSPECT_ATTENTION, INSPECT_HIDDEN, INSPECT_LENS
from .stats import softmax, top_indices

ShouldCancel = Callable[[], bool]

# the tokens up to the inspected one are run this many at a time, asking
# should_cancel() between chunks; each chunk computes the inspection's outputs
# too, so fewer chunks are faster: a 500-token document of SmolLM2 took 1.50,
# 1.40 and 1.34 s in chunks of 128, 256 and 512 (a busy 2-core machine)
CHUNK = 256
_OUTPUTS = [INSPECT_HIDDEN, INSPECT_LENS, INSPECT_ATTENTION]


class InspectionError(LmdeskError):
    """A position that cannot be inspected (one sentence)."""


@dataclass(frozen=True)
class LayerLens:
    """What the model would predict if it stopped after block :attr:`layer`."""

    layer: int  # 1 … n_layer
    top_ids: tuple[int, ...]  # most likely first, ties by id
    top_probs: tuple[float, ...]
    actual_rank: int | None  # rank of the actual next token (1 = first choice); None after the text
    actual_prob: float | None


@dataclass(frozen=True, eq=False)
class Inspection:
    """The model's state at token ``position - 1``, predicting token ``position``."""

    position: int  # P, 1 … n
    actual_id: int | None  # the document's token P, None when P = n (the token after the text)
    layers: tuple[LayerLens, ...]  # layer 1 … L; the last is the model's own distribution
    lens_logits: np.ndarray  # float32 [n_layer, vocab]: the head applied to each block's residual
    attention: np.ndarray  # float32 [n_layer, n_head, position]: each head's weights over keys 0 … P-1
    hidden: np.ndarray  # float32 [n_layer + 1, d_model]: the residual after the embeddings, then each block
    hidden_norms: np.ndarray  # float64 [n_layer + 1]: the Euclidean length of each of those

    @property
    def query(self) -> int:
        """The index of the token whose state is inspected (``position - 1``)."""
        return self.position - 1

    @property
    def logits(self) -> np.ndarray:
        """The model's raw scores for token P, before any softmax: float32 [vocab]."""
        return self.lens_logits[-1]

    def probs(self, layer: int | None = None) -> np.ndarray:
        """The distribution (float64) of the lens at ``layer`` (1 … L; default
        the last: the model's own)."""
        row = self.lens_logits[-1 if layer is None else layer - 1]
        return softmax(row)


class Inspector:
    """Inspects positions of documents with one loaded model (lmdesk's own folders)."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self._ids: list[int] = []  # the tokens whose keys and values the cache holds
        self._cache: KVCache | None = None

    def available(self) -> None:
        """Load the inspection graph now (on first use it is loaded anyway);
        one sentence (:class:`ModelLoadError`) when the folder has none."""
        self.model.inspection_session()

    def close(self) -> None:
        """Free what inspecting holds: the kept cache and the model's inspection
        session (loaded again on the next :meth:`inspect`)."""
        self._ids, self._cache = [], None
        self.model.close_inspection()

    def inspect(self, ids: Sequence[int], position: int, top: int = 5,
                should_cancel: ShouldCancel | None = None, cache: KVCache | None = None) -> Inspection:
        """Inspect the prediction of token ``position`` of the document ``ids``
        (``1 <= position <= len(ids)``), with the ``top`` most likely tokens of
        each layer. ``cache``: the keys and values of ``ids[:cache.length]``
        by this model (a session's cache of the same document), read and never
        written. :class:`Cancelled` when ``should_cancel()`` says so (asked
        before each chunk of the tokens run)."""
        ids = [int(i) for i in ids]
        n = len(ids)
        if n == 0:
            raise InspectionError("There is no text to look inside: the document is empty.")
        if isinstance(position, bool) or not isinstance(position, (int, np.integer)) or not 1 <= position <= n:
            raise InspectionError(
                f"The position must be from 1 to {n} (the prediction of token P, from the tokens before it); "
                f"got {position}."
            )
        if isinstance(top, bool) or not 1 <= top <= self.model.vocab_size:
            raise InspectionError(f"The number of candidates must be from 1 to {self.model.vocab_size:,}.")
        position = int(position)
        session = self.model.inspection_session()
        query = ids[position - 1 : position]
        if cache is not None and cache.length >= position - 1:  # one step, reading the caller's cache
            outputs, _ = self.model.run_in_place(session, query, cache.truncated(position - 1), _OUTPUTS, write=False)
            return self._inspection(ids, position, top, outputs)
        own = self._cache_for(ids[: position - 1], cache)
        outputs = None
        run = ids[own.length : position]  # the token inspected, and any before it not in the cache
        for start in range(0, len(run), CHUNK):
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            chunk = run[start : start + CHUNK]
            outputs, own = self.model.run_in_place(session, chunk, own, _OUTPUTS)
            self._cache, self._ids = own, ids[: own.length]
        return self._inspection(ids, position, top, outputs)

    def _inspection(self, ids: list[int], position: int, top: int, outputs: list[np.ndarray]) -> Inspection:
        """The :class:`Inspection` of the graph's outputs for ``position``."""
        n = len(ids)
        hidden, lens, attention = outputs
        lens = self.model.checked(lens.astype(np.float32, copy=False))
        actual = ids[position] if position < n else None
        return Inspection(
            position=position,
            actual_id=actual,
            layers=tuple(_layer_lens(layer + 1, row, top, actual) for layer, row in enumerate(lens)),
            lens_logits=lens,
            attention=attention,
            hidden=hidden,
            hidden_norms=np.linalg.norm(hidden.astype(np.float64), axis=-1),
        )

    def _cache_for(self, before: list[int], given: KVCache | None) -> KVCache:
        """The inspector's own cache, holding as many of the tokens ``before``
        as it can without running the model: what it kept of an earlier
        inspection, and what the ``given`` cache holds beyond that (copied)."""
        if self._cache is None:
            self._cache, self._ids = self.model.empty_cache(), []
        keep = same_prefix(self._ids, before)
        cache = self._cache.truncated(keep)
        self._ids = self._ids[:keep]
        reach = min(given.length, len(before)) if given is not None else 0
        if reach > keep:
            cache = self.model.room_for(cache, reach)
            for mine, theirs in zip((*cache.keys, *cache.values), (*given.keys, *given.values)):
                mine[:, :, keep:reach] = theirs[:, :, keep:reach]
            cache = KVCache(cache.keys, cache.values, reach)
            self._cache, self._ids = cache, before[:reach]
        return cache


def _layer_lens(layer: int, logits: np.ndarray, top: int, actual: int | None) -> LayerLens:
    """The lens of one layer: its ``top`` candidates and the actual token's place."""
    probs = softmax(logits)
    best = top_indices(probs, top)
    rank = prob = None
    if actual is not None:
        prob = float(probs[actual])
        rank = int(np.count_nonzero(probs > probs[actual])) + 1  # ties share the better rank, as stats does
    return LayerLens(layer, tuple(int(i) for i in best), tuple(float(probs[i]) for i in best), rank, prob)

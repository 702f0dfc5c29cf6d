"""A session: one model, one document, and the edits a student makes to it.

The session keeps the KV cache of the whole document, so an edit recomputes
only what it changed: appending runs the new tokens, truncating or replacing
at position i reuses the cache of the first i tokens. Statistics are computed
chunk by chunk while the document is extended, so no more than
``chunk_size × vocabulary`` logits are held at once.

Only one thread may use a session at a time (in the app, the worker thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .chat_template import ChatTemplate, Message, default_system_prompt, render_with_spans
from .document import CONTENT, MARKUP, DocToken, Document, Segment, messages_of, same_prefix
from .errors import Cancelled, LmdeskError
from .model import KVCache, LoadedModel
from .sampling import SamplingSettings, draw, new_seed, transformed_probs
from .stats import LN2, log_softmax, position_stats, top_indices
from .token_text import TokenTextTable

Progress = Callable[[int, int], None]  # (tokens done, tokens to do)
ShouldCancel = Callable[[], bool]
TEXT = Segment("text", None)
HISTORY_LIMIT = 500
# memory for the cache positions edits wrote over, kept so that undo puts them back:
# SmolLM2 keeps 46 kB a position (1,400 positions), Gemma 3 270M 36 kB
UNDO_CACHE_BYTES = 64 << 20


class EditError(LmdeskError):
    """An edit that cannot be made to the document as it is."""


@dataclass(frozen=True)
class NextDistribution:
    """The distribution of the token after the document's end."""

    ids: tuple[int, ...]  # the top-k by the model's own probability
    probs: tuple[float, ...]  # the model's own probabilities (temperature 1)
    sampled_probs: tuple[float, ...]  # the same tokens' probabilities under the sampling settings
    entropy: float  # bits, of the model's own distribution
    sampled_top_ids: tuple[int, ...]  # the top-k under the sampling settings (they may differ)
    sampled_top_probs: tuple[float, ...]


@dataclass(frozen=True)
class GenerationEvent:
    index: int  # position of the new token in the document
    token: DocToken
    sampled_prob: float  # its probability under the sampling settings
    seed: int | None  # None for greedy
    finished: str | None  # "stop" (end of turn), "length", "context", or None while going on


@dataclass
class _Snapshot:
    """The document before an edit, and what the edit overwrote of the KV cache.

    lmdesk's own graphs keep the cache in arrays written in place, which still
    hold the positions of a longer document after an edit shortened it (a
    token replaced near the start of 8,000). The edit records the cache
    positions it writes over (``saved``: (start, keys, values) copies), so
    undoing it puts them back and costs no more than the edit did, instead of
    running the model over the whole tail again. ``saved`` is None when that
    is not possible (another kind of model folder; an edit that wrote more
    than the memory budget allows): undo then computes the tail again.
    """

    tokens: tuple[DocToken, ...]
    segments: tuple[Segment, ...]
    filled: int = 0  # how many cache positions held data when it was taken
    saved: list[tuple[int, tuple[np.ndarray, ...], tuple[np.ndarray, ...]]] | None = None
    saved_bytes: int = 0
    system: tuple[str | None, bool] | None = None  # the system prompt then (and whether it was chosen)


class Session:
    def __init__(self, model: LoadedModel, *, top_k: int = 20, chunk_size: int = 128) -> None:
        self.model = model
        self.top_k = top_k
        self.chunk_size = chunk_size
        self.doc = Document()
        self._cache: KVCache = model.empty_cache()
        self._next_logits: np.ndarray | None = None
        self._history: list[_Snapshot] = []
        self._filled = 0  # cache positions that hold data (of this document or of one in the history)
        self.interrupted: _Snapshot | None = None  # the undo stopped half-way, if the document is still its part
        self.token_text = TokenTextTable(model.tokenizer, model.special_ids)
        self.template = (
            ChatTemplate(model.chat_template, bos_token=model.spec.bos_token, eos_token=model.spec.eos_token)
            if model.chat_template
            else None
        )
        # not rendered here: the template's default system prompt is worked out on first use, so
        # scoring or generating plain text never runs the template (a broken one may take seconds)
        self._system_prompt: str | None = None
        self._system_prompt_chosen = False  # until set, the system prompt is the template's default

    @property
    def default_system_prompt(self) -> str | None:
        """The system prompt the chat template puts in when a conversation has
        none, or None (rendered once, on first use, then kept with the template)."""
        return default_system_prompt(self.template) if self.template is not None else None

    @property
    def system_prompt(self) -> str | None:
        return self._system_prompt if self._system_prompt_chosen else self.default_system_prompt

    @system_prompt.setter
    def system_prompt(self, text: str | None) -> None:
        self._system_prompt, self._system_prompt_chosen = text, True

    # -- reading -----------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        return self.doc.ids

    def text(self, start: int = 0, stop: int | None = None) -> str:
        return self.model.tokenizer.decode(self.ids[start:stop], skip_special_tokens=False)

    def next_logits(self) -> np.ndarray:
        if self._next_logits is None:
            raise EditError("The document is empty: there is nothing to predict from yet.")
        return self._next_logits

    def next_distribution(self, k: int | None = None, settings: SamplingSettings | None = None) -> NextDistribution:
        logits = self.next_logits()
        k = k or self.top_k
        lp = log_softmax(logits)
        probs = np.exp(lp)
        top = top_indices(probs, k)
        sampled = transformed_probs(logits, settings) if settings is not None else probs
        s_top = top_indices(sampled, k)
        return NextDistribution(
            ids=tuple(int(i) for i in top),
            probs=tuple(float(probs[i]) for i in top),
            sampled_probs=tuple(float(sampled[i]) for i in top),
            entropy=float(-(probs * lp).sum() / LN2),
            sampled_top_ids=tuple(int(i) for i in s_top),
            sampled_top_probs=tuple(float(sampled[i]) for i in s_top),
        )

    def messages(self) -> list[Message]:
        """The conversation as messages, read back from the document's tokens."""
        decode = self.model.tokenizer.decode
        return [Message(role, content)
                for role, content in messages_of(self.doc, lambda ids: decode(ids, skip_special_tokens=False))]

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    # -- the machinery -----------------------------------------------------------
    def _snapshot(self) -> None:
        self.interrupted = None  # an edit: the document is no longer an undo's part-way
        saved = [] if self.model.cache_in_place else None
        self._history.append(_Snapshot(tuple(self.doc.tokens), tuple(self.doc.segments), self._filled, saved,
                                       system=(self._system_prompt, self._system_prompt_chosen)))
        del self._history[:-HISTORY_LIMIT]

    def _empty_cache(self) -> KVCache:
        """No cached positions; the arrays (and what the history needs of them) kept."""
        return self._cache.truncated(0) if self.model.cache_in_place else self.model.empty_cache()

    def _keep_overwritten(self, start: int, stop: int) -> None:
        """Before the model writes cache positions ``start`` … ``stop - 1``: keep
        what they hold for the last edit's undo; what cannot be kept makes every
        snapshot that needs it compute its tail again."""
        stop = min(stop, self._filled)
        if stop <= start or not self._history:
            return
        top = self._history[-1]
        keys, values = self._cache.keys, self._cache.values
        size = sum(a[:, :, start:stop].nbytes for a in (*keys, *values))
        used = sum(snap.saved_bytes for snap in self._history)
        if top.saved is not None and used + size <= UNDO_CACHE_BYTES:
            top.saved.append((start, tuple(a[:, :, start:stop].copy() for a in keys),
                              tuple(a[:, :, start:stop].copy() for a in values)))
            top.saved_bytes += size
            return
        # positions from ``start`` on are gone; a snapshot that cannot put them back computes
        # its document again on undo, and what it had kept is gone too for the older ones
        lost = start
        for snap in reversed(self._history):
            if snap is top or len(snap.tokens) > lost:
                snap.saved, snap.saved_bytes = None, 0
                lost = min(lost, len(snap.tokens))

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < self.model.vocab_size:
            raise EditError(f"There is no token {token_id} in this model's vocabulary.")

    def _check_room(self, extra: int) -> None:
        limit = self.model.context_length
        if len(self.doc) + extra > limit:
            raise EditError(
                f"That would make the document {len(self.doc) + extra} tokens long; this model reads at most {limit}."
            )

    def _truncate(self, n: int) -> None:
        """Keep the first ``n`` tokens; the cache of the prefix is reused."""
        if not 0 <= n <= len(self.doc):
            raise EditError(f"There is no position {n} in a document of {len(self.doc)} tokens.")
        if n == len(self.doc) and self._cache.length == n:
            return
        self.doc.truncate(n)
        if n == 0:
            self._cache = self._empty_cache()
            self._next_logits = None
            return
        # the distribution after token n-1 is recomputed from the cache before it
        logits, self._cache = self.model.forward([self.doc.tokens[n - 1].id], self._cache.truncated(n - 1))
        self._next_logits = logits[-1]

    def _run(self, ids: Sequence[int], progress: Progress | None, should_cancel: ShouldCancel | None,
             on_chunk: Callable[[Sequence[int], np.ndarray], None], keep_overwritten: bool = True) -> None:
        """Feed ``ids`` after the cache, chunk by chunk; ``on_chunk(chunk,
        predicting_rows)`` sees, for each token of the chunk, the logits
        that predicted it (None-row for a first token is skipped)."""
        done = 0
        for start in range(0, len(ids), self.chunk_size):
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            chunk = list(ids[start : start + self.chunk_size])
            at = self._cache.length
            if keep_overwritten:
                self._keep_overwritten(at, at + len(chunk))
            logits, cache = self.model.forward(chunk, self._cache)
            self._filled = max(self._filled, at + len(chunk))
            rows = logits[:-1] if self._next_logits is None else np.concatenate([self._next_logits[None], logits[:-1]])
            on_chunk(chunk, rows)
            # only now the cache goes on: if the chunk's statistics fail, it stays with the document
            self._cache = cache
            self._next_logits = logits[-1].copy()
            done += len(chunk)
            if progress is not None:
                progress(done, len(ids))

    def _append(self, ids: Sequence[int], segments: Sequence[Segment], kinds: Sequence[str],
                 progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> None:
        """Append tokens with their segment and kind, computing their statistics.
        On cancellation the tokens done so far stay: the document remains whole."""
        self._check_room(len(ids))
        special = self.model.special_ids
        pos = [0]

        def on_chunk(chunk: Sequence[int], rows: np.ndarray) -> None:
            first_unpredicted = len(self.doc) == 0
            predicted = chunk[1:] if first_unpredicted else chunk
            stats = position_stats(rows, predicted, self.top_k, threads=self.model.threads)
            if first_unpredicted:
                stats = [None, *stats]
            for tok, st in zip(chunk, stats):
                j = pos[0]
                seg = self.doc.add_segment(segments[j])
                self.doc.tokens.append(DocToken(int(tok), st, seg, kinds[j], int(tok) in special))
                pos[0] += 1

        self._run(ids, progress, should_cancel, on_chunk)

    def _restore(self, snap: _Snapshot, progress: Progress | None = None,
                 should_cancel: ShouldCancel | None = None) -> None:
        if snap.saved is not None and self._cache.capacity >= len(snap.tokens):
            self._put_back(snap)
            return
        target = [t.id for t in snap.tokens]
        keep = same_prefix(self.ids, target)
        self._truncate(keep)
        # the kept tokens are the same ids, but may have sat in other parts (a text
        # that became a chat): take them, and the parts, as the snapshot has them
        self.doc.tokens[:keep] = snap.tokens[:keep]
        self.doc.segments = list(snap.segments)
        rest = snap.tokens[keep:]

        def on_chunk(chunk: Sequence[int], rows: np.ndarray) -> None:
            start = len(self.doc.tokens)
            self.doc.tokens.extend(rest[start - keep : start - keep + len(chunk)])

        # what it computes is what those positions held before: nothing to keep
        self._run([t.id for t in rest], progress, should_cancel, on_chunk, keep_overwritten=False)

    def _put_back(self, snap: _Snapshot) -> None:
        """Undo with the cache positions the edit wrote over: they are put back,
        and the snapshot's document is the cache's again."""
        keys, values = self._cache.keys, self._cache.values
        for start, ks, vs in reversed(snap.saved or ()):
            for a, b in zip((*keys, *values), (*ks, *vs)):
                a[:, :, start : start + b.shape[2]] = b
        self.doc.tokens = list(snap.tokens)
        self.doc.segments = list(snap.segments)
        self._filled = snap.filled
        n = len(snap.tokens)
        if n == 0:
            self._cache, self._next_logits = KVCache(keys, values, 0), None
            return
        # the distribution after the last token: its position is computed again (the same values)
        logits, self._cache = self.model.forward([snap.tokens[-1].id], KVCache(keys, values, n - 1))
        self._next_logits = logits[-1]

    def _current_segment(self) -> Segment:
        """The part of the document new tokens at the end belong to."""
        return self.doc.segment_of(len(self.doc) - 1) if self.doc.tokens else TEXT

    def _kind(self, token_id: int) -> str:
        return MARKUP if token_id in self.model.special_ids else CONTENT

    # -- edits -------------------------------------------------------------------------
    def reset(self) -> None:
        """An empty document (undoable)."""
        if self.doc.tokens:
            self._snapshot()
        self.doc = Document()
        self._cache = self._empty_cache()
        self._next_logits = None

    def load_text(self, text: str, progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> None:
        """Replace the document by ``text``, tokenized exactly as given
        (special-token strings such as ``<|im_start|>`` become special tokens)."""
        if not text:
            raise EditError("There is no text to read.")
        ids = self.model.tokenizer.encode(text).ids
        self._check_room(len(ids) - len(self.doc))
        self._snapshot()
        keep = same_prefix(self.ids, ids)
        if any(self.doc.segment_of(i) != TEXT for i in range(keep)):
            keep = 0
        self._truncate(keep)
        self._append(ids[keep:], [TEXT] * (len(ids) - keep), [self._kind(i) for i in ids[keep:]], progress, should_cancel)

    def load_document(self, ids: Sequence[int], segments: Sequence[Segment], kinds: Sequence[str],
                      system_prompt: str | None = None, progress: Progress | None = None,
                      should_cancel: ShouldCancel | None = None) -> None:
        """Replace the document by exactly these tokens, each in its part and
        of its kind (a saved document), computing their statistics; the
        prefix it shares with the current document is not computed again."""
        if not len(ids) == len(segments) == len(kinds):
            raise EditError("The document is inconsistent: tokens and their parts do not match.")
        if not ids:
            raise EditError("The document is empty.")
        for token_id in ids:
            self._check_id(token_id)
        self._check_room(len(ids) - len(self.doc))
        self._snapshot()
        keep = same_prefix(self.ids, ids)
        keep = next((i for i in range(keep) if self.doc.segment_of(i) != segments[i]
                     or self.doc.tokens[i].kind != kinds[i]), keep)
        self._truncate(keep)
        self.system_prompt = system_prompt
        self._append(list(ids[keep:]), list(segments[keep:]), list(kinds[keep:]), progress, should_cancel)

    def rewrite_conversation(self, messages: Sequence[Message], text: str = "") -> None:
        """A new document holding ``messages`` as this model's chat template
        writes them (a leading system message becomes the system prompt), or,
        without messages or template, ``text``. For a conversation made with
        another model, so both can be compared on the same words."""
        messages = list(messages)
        if messages and self.template is None:
            raise EditError("This model has no chat template, so it cannot hold a conversation.")
        # if any message does not fit, the document goes back to what it was
        before = _Snapshot(tuple(self.doc.tokens), tuple(self.doc.segments))
        history, system = list(self._history), self.system_prompt
        try:
            self.reset()
            if not messages:
                if text:
                    self.load_text(text)
                return
            if messages[0].role == "system":
                self.system_prompt = messages[0].content
                messages = messages[1:]
            else:
                self.system_prompt = None
            for m in messages:
                if m.role == "user":
                    self.end_turn(m.content)
                elif m.content:
                    if not self.doc.tokens:
                        raise EditError("The conversation does not start with a message from the user.")
                    self.append_text(m.content)
        except LmdeskError:
            self._restore(before)
            for snap in history:  # what the attempt wrote over was kept in snapshots now dropped
                snap.saved, snap.saved_bytes = None, 0
            self._history, self.system_prompt = history, system
            raise

    def append_token(self, token_id: int) -> None:
        self._check_id(token_id)
        self._snapshot()
        self._append([token_id], [self._current_segment()], [self._kind(token_id)])

    def append_text(self, text: str) -> None:
        """Append the tokens of ``text`` (tokenized on its own) to the current part."""
        ids = self.model.tokenizer.encode(text, add_special_tokens=False).ids
        if not ids:
            raise EditError("There is no text to add.")
        self._check_room(len(ids))
        self._snapshot()
        self._append(ids, [self._current_segment()] * len(ids), [self._kind(i) for i in ids])

    def truncate(self, n: int) -> None:
        """Keep the first ``n`` tokens (undoable)."""
        if n != len(self.doc):
            if not 0 <= n <= len(self.doc):
                raise EditError(f"There is no position {n} in a document of {len(self.doc)} tokens.")
            self._snapshot()
            self._truncate(n)

    def replace(self, index: int, token_id: int) -> None:
        """Put ``token_id`` at ``index``; everything after it is dropped."""
        if not 0 <= index < len(self.doc):
            raise EditError(f"There is no token at position {index}.")
        self._check_id(token_id)
        seg = self.doc.segment_of(index)
        self._snapshot()
        self._truncate(index)
        self._append([token_id], [seg], [self._kind(token_id)])

    def replace_text(self, index: int, text: str) -> None:
        """Put the tokens of ``text`` at ``index`` (or at the end); what followed is dropped."""
        if not 0 <= index <= len(self.doc):
            raise EditError(f"There is no position {index} in a document of {len(self.doc)} tokens.")
        ids = self.model.tokenizer.encode(text, add_special_tokens=False).ids
        if not ids:
            raise EditError("There is no text to put there.")
        self._check_room(len(ids) - (len(self.doc) - index))
        seg = self.doc.segment_of(index) if index < len(self.doc) else self._current_segment()
        self._snapshot()
        self._truncate(index)
        self._append(ids, [seg] * len(ids), [self._kind(i) for i in ids])

    def response_start(self) -> int | None:
        """Where the assistant's current reply begins (after the template's
        opening markers), or None if the document does not end in a reply."""
        if not self.doc.tokens:
            return None
        last = self.doc.tokens[-1].segment
        if self.doc.segments[last].role != "assistant":
            return None
        i = len(self.doc)
        while i > 0 and self.doc.tokens[i - 1].segment == last:
            i -= 1
        while i < len(self.doc) and self.doc.tokens[i].kind == MARKUP and self.doc.tokens[i].id not in self.model.stop_ids:
            i += 1
        return i

    def reset_response(self) -> None:
        """Drop the assistant's reply so far, keeping the markers that open it."""
        start = self.response_start()
        if start is None:
            raise EditError("The document does not end in an assistant reply.")
        self.truncate(start)

    def use_template(self, source: str) -> None:
        """Read conversations with the chat template ``source`` from now on (a
        model whose file has none, or a teacher's own); a document in progress
        stays as it is."""
        template = ChatTemplate(source, bos_token=self.model.spec.bos_token, eos_token=self.model.spec.eos_token)
        self.template = template
        self.model.chat_template = source
        self._system_prompt, self._system_prompt_chosen = None, False  # the new template's default, when asked

    def set_system_prompt(self, text: str | None) -> None:
        """Use ``text`` as the system prompt; in a conversation already under
        way, the system message is rewritten and everything after it recomputed
        (the later tokens are kept as they are)."""
        was = (self._system_prompt, self._system_prompt_chosen)
        self.system_prompt = text
        groups = self.doc.message_tokens()
        if not groups or groups[0][0] != Segment("system", 0):
            return
        if self.template is None:
            return
        if text is None:  # the system message goes: the conversation is written again without it
            self._drop_system_message(was)
            return
        toks = groups[0][1]
        content = [i for i, t in enumerate(toks) if t.kind == CONTENT]
        a = content[0] if content else next((i for i, t in enumerate(toks) if t.kind == MARKUP and not t.special and i > 0), 0) + 1
        b = content[-1] + 1 if content else a
        new_ids = self.model.tokenizer.encode(text, add_special_tokens=False).ids
        rest = self.doc.tokens[b:]
        ids = new_ids + [t.id for t in rest]
        segs = [Segment("system", 0)] * len(new_ids) + [self.doc.segments[t.segment] for t in rest]
        kinds = [CONTENT] * len(new_ids) + [t.kind for t in rest]
        self._check_room(len(new_ids) - (b - a))
        self._snapshot()
        self._history[-1].system = was  # undo brings back the system prompt before this one
        self._truncate(a)
        self._append(ids, segs, kinds)

    def _drop_system_message(self, was: tuple[str | None, bool]) -> None:
        """The conversation without its system message, as the template writes
        it (its own default system message, if it has one); one undo brings
        the system message back."""
        before = _Snapshot(tuple(self.doc.tokens), tuple(self.doc.segments), self._filled, None, system=was)
        history = list(self._history)
        self.rewrite_conversation(self.messages()[1:])
        for snap in history:  # what the rewrite wrote over was kept in its own snapshots, dropped here
            snap.saved, snap.saved_bytes = None, 0
        self._history = [*history, before][-HISTORY_LIMIT:]
        self.system_prompt = None

    def undo(self, progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> bool:
        """Go back to the document before the last edit; False if there is none.
        Stopped half-way (only an undo that computes the document again can
        be), the document is the part done so far and the same undo is there
        to be asked again; :meth:`document_to_keep` is the whole one."""
        if not self._history:
            return False
        snap = self._history.pop()
        try:
            self._restore(snap, progress, should_cancel)
        except Cancelled:
            self._history.append(snap)
            self.interrupted = snap
            raise
        self.interrupted = None
        if snap.system is not None:
            self._system_prompt, self._system_prompt_chosen = snap.system
        return True

    def document_to_keep(self) -> Document:
        """The document to save when the app closes: the one an undo stopped
        half-way was bringing back, else the document."""
        snap = self.interrupted
        if snap is not None and [t.id for t in self.doc.tokens] == [t.id for t in snap.tokens[: len(self.doc)]]:
            return Document(list(snap.tokens), list(snap.segments))
        return self.doc

    def end_turn(self, user_text: str, progress: Progress | None = None,
                 should_cancel: ShouldCancel | None = None) -> None:
        """Close the current reply, append the user's message and the markers
        that open the assistant's reply, as the model's chat template writes them."""
        if self.template is None:
            raise EditError("This model has no chat template, so it cannot hold a conversation; use plain text.")
        if not user_text.strip():
            raise EditError("The message is empty: type something first.")
        if any(seg.message is None for seg in self.doc.segments):
            raise EditError("This document is plain text, not a conversation; start a new conversation first.")
        messages = self.messages()
        if not messages and self.system_prompt is not None:
            messages = [Message("system", self.system_prompt)]
        messages.append(Message("user", user_text))
        rendered = render_with_spans(self.template, messages, add_generation_prompt=True, should_cancel=should_cancel)
        old_text = self.text()
        if rendered.text.startswith(old_text):
            keep, delta_from = len(self.doc), len(old_text)
        else:  # the template wrote earlier turns differently: keep what still matches
            full_ids = self.model.tokenizer.encode(rendered.text, add_special_tokens=False).ids
            keep = same_prefix(self.ids, full_ids)
            delta_from = len(self.text(0, keep)) if keep else 0
            if not rendered.text.startswith(self.text(0, keep)):
                keep, delta_from = 0, 0
        delta = rendered.text[delta_from:]
        # at the start the tokenizer adds its BOS, unless the template wrote one itself (Gemma's,
        # Llama 3's): one BOS, as the model was trained, never two
        bos = self.model.spec.bos_token
        wrote_bos = bool(bos) and delta.startswith(bos)
        enc = self.model.tokenizer.encode(delta, add_special_tokens=(keep == 0 and not wrote_bos))
        ids = list(enc.ids)
        self._check_room(len(ids) - (len(self.doc) - keep))
        self._snapshot()
        self._truncate(keep)
        segs, kinds = [], []
        spans = rendered.messages
        for tok, (a, _b) in zip(ids, enc.offsets):
            at = delta_from + a
            j = next((j for j, s in enumerate(spans) if s.start <= at < s.end), None)
            if j is None:  # after the last message: the generation prompt opens the reply
                seg = Segment("assistant", len(spans))
                kind = MARKUP
            else:
                seg = Segment(spans[j].role, j)
                inside = spans[j].content_start <= at < spans[j].content_end
                kind = CONTENT if inside and tok not in self.model.special_ids else MARKUP
            segs.append(seg)
            kinds.append(kind)
        try:
            self._append(ids, segs, kinds, progress, should_cancel)
        except Cancelled:  # a turn is whole or not at all: no half a message in the document
            self.undo()
            raise

    # -- choosing tokens ----------------------------------------------------------------
    def choose(self, settings: SamplingSettings, rng: np.random.Generator | None = None) -> tuple[int, float]:
        """The token the settings pick next, and its probability under them.

        With a fixed seed and no ``rng``, the draw is the one the seed's stream
        gives this position of the reply (see :meth:`seed_stream`): sampling step
        by step gives the tokens Generate gives with that seed."""
        probs = transformed_probs(self.next_logits(), settings)
        if settings.is_greedy:
            tok = int(np.argmax(probs))
        else:
            if rng is None:
                rng = self.seed_stream(settings.seed) if settings.seed is not None else np.random.default_rng()
            tok = draw(probs, rng)
        return tok, float(probs[tok])

    def seed_stream(self, seed: int) -> np.random.Generator:
        """The random numbers of ``seed`` from the next token on: one stream per
        seed for the whole reply, the k-th token of the reply taking its k-th
        number, whether it is sampled alone or by Generate."""
        rng = np.random.default_rng(seed)
        already = len(self.doc) - (self.response_start() or 0)
        if already > 0:
            rng.random(already)  # one number per token already in the reply (draw takes one)
        return rng

    def generate(self, settings: SamplingSettings, max_new_tokens: int,
                 should_cancel: ShouldCancel | None = None) -> Iterator[GenerationEvent]:
        """Append tokens one by one, yielding each; stops at the end-of-turn
        token, after ``max_new_tokens``, at the model's context limit, or
        when ``should_cancel()`` says so (or the caller stops iterating).
        The whole generation is undone by one :meth:`undo`."""
        self.next_logits()  # fails clearly on an empty document
        limit = self.model.context_length
        if len(self.doc) >= limit:
            raise EditError(f"The document is already {len(self.doc):,} tokens long, all this model can read "
                            f"({limit:,}): there is no room for another token. Undo, or shorten the document, to go on.")
        seed = None if settings.is_greedy else (settings.seed if settings.seed is not None else new_seed())
        rng = self.seed_stream(seed) if seed is not None else None
        self._snapshot()
        seg = self._current_segment()
        for n in range(max_new_tokens):
            if should_cancel is not None and should_cancel():
                return
            if len(self.doc) >= self.model.context_length:
                return
            tok, p = self.choose(settings, rng)
            self._append([tok], [seg], [self._kind(tok)])
            finished = None
            if tok in self.model.stop_ids:
                finished = "stop"
            elif n == max_new_tokens - 1:
                finished = "length"
            elif len(self.doc) >= self.model.context_length:
                finished = "context"
            yield GenerationEvent(len(self.doc) - 1, self.doc.tokens[-1], p, seed, finished)
            if finished:
                return

"""A session: one model, one document, and the edits a student makes to it.

The session keeps the KV cache of the whole document, so an edit recomputes
only what it changed: appending runs the new tokens, truncating or replacing
at position i reuses the cache of the first i tokens. Statistics are computed
chunk by chunk while the document is extended, so no more than
``chunk_size × vocabulary`` logits are held at once.

Only one thread may use a session at a time (in the app, the worker thread).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .chat_template import ChatTemplate, Message, Rendered, default_system_prompt, render_with_spans, uses_tools
from .conversation import Conversation, ToolCall, tools_list
from .document import (
    CONTENT, MARKUP, TOOL_CALL, DocToken, Document, Segment, conversation_of, in_conversation, same_prefix,
)
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
# SmolLM2 keeps 46 kB a position (1,400 positions), Gemma 3 270M 36 kB (half with a float16 cache)
UNDO_CACHE_BYTES = 64 << 20


class EditError(LmdeskError):
    """An edit that cannot be made to the document as it is."""


def _assigner(rendered: Rendered, messages: Sequence[Message],
              special: frozenset[int] | set[int]) -> Callable[[int, int, int], tuple[Segment, str]]:
    """A function giving the part and kind of the token ``token_id`` covering
    characters ``a`` … ``b`` of ``rendered``: the message whose turn holds it
    (after the last one: the reply the generation prompt opens), and content,
    a tool call or markup. The turns are looked up by bisection."""
    spans = rendered.messages
    order = sorted(range(len(spans)), key=lambda k: (spans[k].start, spans[k].end))
    starts = [spans[k].start for k in order]
    end = max((s.end for s in spans), default=0)
    segments = [Segment(s.role, j, m.name, m.tool_call_id, s.escaped,
                        tuple(c.id for c in m.tool_calls) if any(c.id is not None for c in m.tool_calls) else ())
                for j, (s, m) in enumerate(zip(spans, messages))]

    def turn(a: int) -> int | None:
        i = bisect.bisect_right(starts, a) - 1
        while i >= 0 and not a < spans[order[i]].end:  # an empty turn (a message the template wrote as nothing)
            if spans[order[i]].start == spans[order[i]].end == a:
                return order[i]
            i -= 1
        return order[i] if i >= 0 else None

    def assign(a: int, b: int, token_id: int) -> tuple[Segment, str]:
        j = turn(a) if a < end or any(s.start == s.end == a for s in spans) else None
        if j is None:
            return Segment("assistant", len(spans)), MARKUP
        s = spans[j]
        if token_id in special:
            return segments[j], MARKUP
        if any(a < y and x < max(b, a + 1) for x, y in s.tool_calls):
            return segments[j], TOOL_CALL
        if s.content_start <= a < s.content_end:
            return segments[j], CONTENT
        return segments[j], MARKUP

    return assign


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
    tools: tuple[dict, ...] | None = None  # the tool definitions then


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
        self.tools: tuple[dict, ...] = ()  # the tool definitions the conversation offers the model

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
        """The conversation as messages (with their tool calls), read back from the document's tokens."""
        decode = self.model.tokenizer.decode
        return conversation_of(self.doc, lambda ids: decode(ids, skip_special_tokens=False))

    def conversation(self) -> Conversation:
        """The conversation as data: the messages read back and the tools."""
        return Conversation(tuple(self.messages()), self.tools)

    @property
    def tools_fallback(self) -> bool:
        """Whether the tools of this conversation are written by lmdesk's
        labelled fallback (engine/tools.py), because the model's chat template
        has no format for them: the model was not trained on it."""
        return (self.template is not None and uses_tools(self.messages(), self.tools)
                and not self.template.supports_tools)

    @property
    def cache(self) -> KVCache:
        """The keys and values of the document's tokens (read it, do not write
        it: an inspection may look at it in place)."""
        return self._cache

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    # -- the machinery -----------------------------------------------------------
    def _snapshot(self) -> None:
        self.interrupted = None  # an edit: the document is no longer an undo's part-way
        saved = [] if self.model.cache_in_place else None
        self._history.append(_Snapshot(tuple(self.doc.tokens), tuple(self.doc.segments), self._filled, saved,
                                       system=(self._system_prompt, self._system_prompt_chosen), tools=self.tools))
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
        """The part of the document new tokens at the end belong to: in a
        conversation whose template opens the reply with nothing (Mistral's
        ``[/INST]`` closes the user's turn), the assistant's reply."""
        if not self.doc.tokens:
            return TEXT
        seg = self.doc.segment_of(len(self.doc) - 1)
        if seg.message is not None and seg.role != "assistant":
            return Segment("assistant", 1 + max(s.message for s in self.doc.segments if s.message is not None))
        return seg

    def _kind(self, token_id: int) -> str:
        return MARKUP if token_id in self.model.special_ids else CONTENT

    def _kind_at(self, index: int, token_id: int) -> str:
        """The kind of ``token_id`` put at ``index``: a token put in a tool
        call's place is part of the call (the student edits its arguments)."""
        if index < len(self.doc) and self.doc.tokens[index].kind == TOOL_CALL and token_id not in self.model.special_ids:
            return TOOL_CALL
        return self._kind(token_id)

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

    def rewrite_conversation(self, messages: Sequence[Message], text: str = "",
                             tools: Sequence[dict] | None = None) -> None:
        """The document holding ``messages`` (and ``tools``, or the session's)
        as this model's chat template writes them, computed again from the
        first token that changes (a leading system message becomes the system
        prompt; a last user message opens the reply, a last assistant one is
        left open), or, without messages or template, ``text``. For a
        conversation made with another model, so both can be compared on the
        same words."""
        messages = list(messages)
        if messages and self.template is None:
            raise EditError("This model has no chat template, so it cannot hold a conversation.")
        if not messages:
            self.reset()
            if text:
                self.load_text(text)
            return
        self._apply(messages, tuple(tools) if tools is not None else self.tools)

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
        kind = self._kind_at(index, token_id)
        self._snapshot()
        self._truncate(index)
        self._append([token_id], [seg], [kind])

    def replace_text(self, index: int, text: str) -> None:
        """Put the tokens of ``text`` at ``index`` (or at the end); what followed is dropped."""
        if not 0 <= index <= len(self.doc):
            raise EditError(f"There is no position {index} in a document of {len(self.doc)} tokens.")
        ids = self.model.tokenizer.encode(text, add_special_tokens=False).ids
        if not ids:
            raise EditError("There is no text to put there.")
        self._check_room(len(ids) - (len(self.doc) - index))
        seg = self.doc.segment_of(index) if index < len(self.doc) else self._current_segment()
        kinds = [self._kind_at(index, i) for i in ids]
        self._snapshot()
        self._truncate(index)
        self._append(ids, [seg] * len(ids), kinds)

    def response_start(self) -> int | None:
        """Where the assistant's current reply begins (after the template's
        opening markers), or None if the document does not end in a reply."""
        if not self.doc.tokens:
            return None
        last = self.doc.tokens[-1].segment
        if self.doc.segments[last].role != "assistant":
            return len(self.doc) if self._current_segment().role == "assistant" else None
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
        if snap.tools is not None:
            self.tools = snap.tools
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
        self._check_conversation()
        messages = self.messages()
        if not messages and self.system_prompt is not None:
            messages = [Message("system", self.system_prompt)]
        messages.append(Message("user", user_text))
        self._apply(messages, self.tools, progress, should_cancel, keep_system=True)

    # -- the conversation as data ---------------------------------------------------
    def apply_conversation(self, conversation: Conversation, progress: Progress | None = None,
                           should_cancel: ShouldCancel | None = None, *, open_reply: bool = True) -> None:
        """Make the document hold ``conversation`` (an edited copy of
        :meth:`conversation`, say) as the template writes it, computing again
        only from the first token that changed (one undo brings back the
        document before). With ``open_reply``, a last message from the user
        or a tool opens the assistant's reply and a last assistant message
        stays open to be continued (closed if it holds tool calls); without,
        the conversation is written as it is, every turn closed (to score it).
        A template's refusal or a conversation too long is one sentence, and
        nothing changes."""
        if self.template is None:
            raise EditError("This model has no chat template, so it cannot hold a conversation.")
        if not conversation.messages:
            raise EditError("The conversation has no messages.")
        self._apply(list(conversation.messages), tools_list(list(conversation.tools)), progress, should_cancel,
                    open_reply=open_reply)

    def set_tools(self, tools: Sequence[dict]) -> None:
        """Offer the model these tool definitions (JSON-schema functions); a
        conversation under way is written again with them."""
        checked = tools_list(list(tools))
        if self.template is not None and in_conversation(self.doc.segments):
            self._apply(self.messages(), checked)
        else:
            self.tools = checked

    def generated_tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls the assistant's last reply wrote as text, in its
        template's format (``<tool_call>{…}</tool_call>``, Llama 3.x's JSON…),
        not yet made tool-call messages; () if none."""
        from .tools import parse_tool_calls

        messages = self.messages()
        if not messages or messages[-1].role != "assistant" or messages[-1].tool_calls:
            return ()
        return parse_tool_calls(messages[-1].content)[0]

    def add_tool_call(self, name: str, arguments: dict, call_id: str | None = None) -> None:
        """The assistant calls the function ``name`` with ``arguments`` (checked
        against the tool definitions, if any): added to its current reply, or
        as a reply of its own after a user or tool message."""
        from .tools import check_call

        call = ToolCall(name, dict(arguments), call_id)
        if self.tools:
            check_call(call, self.tools)
        messages = self.messages()
        if not messages or messages[-1].role == "system":
            raise EditError("A tool call answers a message: write the user's message first.")
        if messages[-1].role == "assistant":
            last = messages[-1]
            messages[-1] = Message("assistant", last.content, (*last.tool_calls, call))
        else:
            messages.append(Message("assistant", "", (call,)))
        self._apply(messages, self.tools)

    def add_tool_result(self, content: str, name: str | None = None, tool_call_id: str | None = None,
                        progress: Progress | None = None, should_cancel: ShouldCancel | None = None) -> None:
        """Answer the assistant's tool call with its result (a tool message),
        and open the assistant's next reply: the agent loop by hand. A call
        the model wrote as text (:meth:`generated_tool_calls`) becomes a
        tool-call message first. ``name`` and ``tool_call_id`` default to
        those of the first call not yet answered."""
        from .tools import parse_tool_calls

        messages = self.messages()
        k = len(messages) - 1
        while k >= 0 and messages[k].role == "tool":
            k -= 1
        if k < 0 or messages[k].role != "assistant":
            raise EditError("There is no tool call to answer: the assistant has not called a tool.")
        calls = messages[k].tool_calls
        if not calls:
            calls, rest = parse_tool_calls(messages[k].content)
            if not calls:
                raise EditError("There is no tool call to answer: the assistant's reply holds none.")
            messages[k] = Message("assistant", rest, calls)
        answered = len(messages) - 1 - k
        call = calls[min(answered, len(calls) - 1)]
        messages.append(Message("tool", content, name=name if name is not None else call.name,
                                tool_call_id=tool_call_id if tool_call_id is not None else call.id))
        self._apply(messages, self.tools, progress, should_cancel)

    def _check_conversation(self) -> None:
        if any(seg.message is None for seg in self.doc.segments):
            raise EditError("This document is plain text, not a conversation; start a new conversation first.")

    def _render(self, messages: Sequence[Message], tools: Sequence[dict],
                should_cancel: ShouldCancel | None, open_reply: bool = True) -> Rendered:
        """The document's text for ``messages``: a last user or tool message
        opens the assistant's reply; a last assistant message is left open to
        be continued (up to the end of its text), unless it holds tool calls or
        the reply was ended by its stop token (then the template closes it)."""
        last = messages[-1]
        closed = last.role == "assistant" and (
            bool(last.tool_calls) or (bool(self.doc.tokens) and self.doc.tokens[-1].id in self.model.stop_ids
                                      and self._ends_in_message(len(messages) - 1)))
        if not open_reply:
            return render_with_spans(self.template, messages, add_generation_prompt=False,
                                     should_cancel=should_cancel, tools=tools)
        gen = last.role != "assistant"
        rendered = render_with_spans(self.template, messages, add_generation_prompt=gen, should_cancel=should_cancel,
                                     tools=tools)
        if gen or closed:
            return rendered
        span = rendered.messages[-1]
        cut = max(span.content_end, span.start)
        if any(s.start >= cut and s is not span for s in rendered.messages):  # another message after it in the text
            return rendered
        spans = tuple(s if s is not span else type(s)(s.role, s.start, cut, s.content_start, s.content_end,
                                                         s.tool_calls, s.escaped) for s in rendered.messages)
        return Rendered(rendered.text[:cut], spans, rendered.fallback)

    def _ends_in_message(self, index: int) -> bool:
        return bool(self.doc.tokens) and self.doc.segment_of(len(self.doc) - 1).message == index

    def _apply(self, messages: list[Message], tools: Sequence[dict], progress: Progress | None = None,
               should_cancel: ShouldCancel | None = None, keep_system: bool = False, open_reply: bool = True) -> None:
        """Make the document ``messages`` as the template writes them, keeping
        the tokens it already has up to the first one that differs (in id,
        message or kind) and computing the rest; one undo brings back the
        document before (and its tools). Stopped, nothing changes."""
        rendered = self._render(messages, tools, should_cancel, open_reply)
        ids, segs, kinds, keep = self._tokens_for(rendered, messages)
        self._check_room(len(ids) - (len(self.doc) - keep))
        self._snapshot()
        was_tools = self.tools
        self.tools = tuple(tools)
        if not keep_system:
            first = messages[0]
            self._system_prompt, self._system_prompt_chosen = (first.content if first.role == "system" else None), True
        self._truncate(keep)
        try:
            self._append(ids, segs, kinds, progress, should_cancel)
        except Cancelled:  # a turn is whole or not at all: no half a message in the document
            self.undo()
            self.tools = was_tools
            raise

    def _tokens_for(self, rendered: Rendered, messages: Sequence[Message]
                    ) -> tuple[list[int], list[Segment], list[str], int]:
        """What the document needs to hold ``rendered``: the number of its
        tokens to keep (the same text, message and kind) and the tokens to
        append after them (ids, their parts, their kinds)."""
        text = rendered.text
        old = self.doc.tokens
        special = self.model.special_ids
        old_text, starts, whole = self._char_offsets(text)
        assign = _assigner(rendered, messages, special)
        common = 0
        n = min(len(old_text), len(text))
        while common < n and old_text[common] == text[common]:
            common += 1
        keep = 0
        while keep < len(old):
            a = starts[keep]
            b = starts[keep + 1] if keep + 1 < len(old) else len(old_text)
            seg, kind = assign(a, b, old[keep].id)
            if b > common or seg != self.doc.segment_of(keep) or kind != old[keep].kind:
                break
            keep += 1
        while keep > 0 and not whole[keep - 1]:  # never half a character
            keep -= 1
        delta_from = starts[keep] if keep < len(old) else len(old_text)
        delta = text[delta_from:]
        # at the start the tokenizer adds its BOS, unless the template wrote one itself (Gemma's,
        # Llama 3's): one BOS, as the model was trained, never two
        bos = self.model.spec.bos_token
        wrote_bos = bool(bos) and delta.startswith(bos)
        enc = self.model.tokenizer.encode(delta, add_special_tokens=(keep == 0 and not wrote_bos))
        ids, segs, kinds = [], [], []
        for tok, (a, b) in zip(enc.ids, enc.offsets):
            seg, kind = assign(delta_from + a, delta_from + b, tok)
            ids.append(int(tok))
            segs.append(seg)
            kinds.append(kind)
        return ids, segs, kinds, keep

    def _char_offsets(self, text: str) -> tuple[str, list[int], list[bool]]:
        """The document's text as a template's text would hold it, the
        character where each token starts in it (a token that begins inside a
        character: that character's), and whether each token ends on a whole
        character. A BOS the tokenizer added (not the template) holds no text."""
        raws = [self.token_text(t.id).raw for t in self.doc.tokens]
        bos = self.model.spec.bos_token
        if raws and bos and self.doc.tokens[0].special and raws[0] == bos.encode() and not text.startswith(bos):
            raws[0] = b""
        data = b"".join(raws)
        decoded = data.decode("utf-8", errors="replace")
        char_at = []  # the character each byte belongs to
        boundaries = {0}
        pos = 0
        for n, ch in enumerate(decoded):
            width = len(ch.encode("utf-8"))
            if ch == "\ufffd" and data[pos : pos + 3] != b"\xef\xbf\xbd":
                width = 1  # a byte that is not UTF-8: one replacement character
            char_at.extend([n] * width)
            pos += width
            boundaries.add(pos)
        starts, whole = [], []
        pos = 0
        for raw in raws:
            starts.append(char_at[pos] if pos < len(char_at) else len(decoded))
            pos += len(raw)
            whole.append(pos in boundaries)
        return decoded, starts, whole

    # -- choosing tokens ----------------------------------------------------------------
    def choose(self, settings: SamplingSettings, rng: np.random.Generator | None = None) -> tuple[int, float]:
        """The token the settings pick next, and its probability under them.

        With a fixed seed and no ``rng``, the draw is the one the seed's stream
        gives this position of the reply (see :meth:`seed_stream`): sampling step
        by step gives the tokens Generate gives with that seed."""
        if settings.is_greedy:  # the first of the highest scores, with all of the probability
            # (what transformed_probs gives, without its 262,144 float64 numbers for Gemma 3: 2.9 ms)
            return int(np.argmax(self.next_logits())), 1.0
        probs = transformed_probs(self.next_logits(), settings)
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

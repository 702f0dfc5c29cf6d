"""Two (or more) models, one text: surprise aligned by the characters it falls on.

Models with different tokenizers cut the same text into different tokens, so
their tokens cannot be compared one for one. What they share is the text.
Here each model's surprise is moved from its tokens onto the text's
characters, and from the characters onto words, which every model then has
in common:

* **Scoring** (:func:`score_text`) is what ``lmdesk score`` does: a
  :class:`~lmdesk.engine.session.Session` reads the text (its tokenizer, its
  start token if it adds one) and gives every token its bits, −log2 p given
  the tokens before it. The first token has no prediction: it carries nothing.
  So a model whose tokenizer adds a start token (Gemma's ``<bos>``) is
  charged for the text's first word, and one without (SmolLM2) is not: the
  first word's difference says more about that than about the models.
* **Where each token lies** in the text: the bytes each token contributes
  (:class:`~lmdesk.engine.token_text.TokenTextTable`, the same bytes the
  window's chips show) are laid end to end over the text's UTF-8. A token the
  tokenizer added that is not in the text (a start token ``<bos>``) covers no
  character; SentencePiece's space before the first word ("▁Hello" for
  "Hello") is skipped. Should a tokenizer change the text in a way the bytes
  cannot follow (a normalizer that lower-cases, an unknown character read as
  ``<unk>``), the tokenizer's own character offsets are used instead.
* **A token's bits are spread over the characters it covers**, a whole
  character counting one share and a piece of a character (byte-level
  vocabularies cut "中" or "🙂" into byte tokens) its part of that
  character's bytes: "ab" with 3 bits gives 1.5 bits to each letter; a token
  holding the first 2 of the 3 bytes of "中" gives all its bits to "中", and
  so does the token with the third byte. A token that covers no character
  but was predicted (it is rare: a lone "▁" a SentencePiece tokenizer put
  before a digit) gives its bits to the character that follows it (at the
  end of the text, the last one). Every token's bits land on the text
  exactly once, so the characters' bits add up to the model's total.
* **Words** (:func:`split_words`): a run of letters, digits and marks
  (``Ll``, ``Nd``, ``Mn``… and ``_``), or a run of other visible characters
  (punctuation, symbols, emoji), together with the white space before it, as
  GPT-2-style and SentencePiece tokenizers attach a space to the word after
  it (" world"); white space at the end of the text is a unit of its own.
  Combining marks, variation selectors and the zero-width joiner stay with
  the character before them. The words cover the text exactly once, in
  order. A word's bits are the sum of its characters' bits, so a token
  straddling two words is split between them by the characters it covers.
* **Pieces** (:meth:`Alignment.pieces`): the text cut at every word boundary
  and every token boundary of every model, for looking inside a word where
  the models cut it differently (per-character bits are
  :attr:`Alignment.char_bits`).

The whole-text figures (:func:`figures`) are those of ``lmdesk score`` for the
tokens (:meth:`~lmdesk.engine.document.Document.total`: total bits, bits per
predicted token, perplexity = 2 ** bits per token) and, for comparing models
with different tokenizers, bits per character (of the text, as Python counts
characters: code points) and per word (per unit of :func:`split_words`).

This module never imports Qt.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .document import CONTENT, DocToken
from .errors import LmdeskError
from .model import LoadedModel
from .session import Progress, Session, ShouldCancel
from .stats import SpanSummary
from .token_text import TokenTextTable

__all__ = [
    "Word",
    "Scored",
    "Figures",
    "Alignment",
    "split_words",
    "token_spans",
    "spread_bits",
    "score_text",
    "scored_from_session",
    "figures",
    "align",
    "estimated_parameters",
    "size_label",
]

Span = tuple[int, int]  # characters start … end - 1 of the text


@dataclass(frozen=True)
class Word:
    """A unit of the text: characters ``start`` … ``end - 1``."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class Scored:
    """A text as one model read it: its tokens, where they lie, what they cost."""

    model: str  # the model's name
    text: str
    tokens: tuple[DocToken, ...]
    spans: tuple[Span, ...]  # each token's characters; a token holding part of a character includes that character
    char_bits: np.ndarray  # float64 [len(text)]: each character's share of the tokens' bits
    summary: SpanSummary  # over the predicted tokens, as ``lmdesk score`` reports it
    parameters: int | None = None  # the model's size, when its folder tells it (estimated_parameters)

    @property
    def bits(self) -> list[float | None]:
        """Each token's bits; None for the first token (nothing predicted it)."""
        return [None if t.stats is None else t.stats.bits for t in self.tokens]


@dataclass(frozen=True)
class Figures:
    """Whole-text figures of one model; bits per character first, as it is the
    fair comparison across tokenizers."""

    model: str
    parameters: int | None
    characters: int
    words: int
    tokens: int  # predicted tokens (the first one is not)
    total_bits: float
    bits_per_char: float
    bits_per_word: float
    bits_per_token: float
    perplexity: float  # per token: 2 ** bits_per_token


@dataclass(frozen=True)
class Alignment:
    """Several models' surprise on one text, by word and by character."""

    text: str
    models: tuple[str, ...]
    words: tuple[Word, ...]
    bits: np.ndarray  # float64 [n_words, n_models]: each word's bits per model
    char_bits: np.ndarray  # float64 [n_models, len(text)]
    token_spans: tuple[tuple[Span, ...], ...]  # per model, each token's characters

    def difference(self, a: int = 0, b: int = 1) -> np.ndarray:
        """Per word, model ``b``'s bits minus model ``a``'s: positive where ``b``
        was more surprised than ``a``."""
        return self.bits[:, b] - self.bits[:, a]

    def span_bits(self, start: int, end: int) -> np.ndarray:
        """Each model's bits on characters ``start`` … ``end - 1``."""
        return self.char_bits[:, start:end].sum(axis=1)

    def pieces(self) -> list[tuple[Word, np.ndarray]]:
        """The text cut at every word boundary and every token boundary of
        every model, each piece with its bits per model: within a word the
        models cut differently, this shows which part of it cost what."""
        cuts = {0, len(self.text)}
        cuts.update(w.start for w in self.words)
        for spans in self.token_spans:
            cuts.update(s for span in spans for s in span)
        edges = sorted(c for c in cuts if 0 <= c <= len(self.text))
        sums = _prefix_sums(self.char_bits)
        return [(Word(a, b, self.text[a:b]), sums[:, b] - sums[:, a]) for a, b in zip(edges, edges[1:])]


# --------------------------------------------------------------------------------------------------
# words
# --------------------------------------------------------------------------------------------------

_JOINERS = frozenset({"\u200d"})  # the zero-width joiner holds emoji sequences together


def _kind(ch: str) -> str:
    """'s' white space, 'w' a letter, digit or '_', 'j' something that joins the
    character before it (a mark, variation selector, ZWJ), 'p' anything else."""
    if ch.isspace():
        return "s"
    category = unicodedata.category(ch)
    if category[0] == "M" or ch in _JOINERS:
        return "j"
    if category[0] in "LN" or ch == "_":
        return "w"
    return "p"


def split_words(text: str) -> list[Word]:
    """The text's units, in order, covering it exactly once (see the module's
    docstring): white space, then a run of word characters or of other
    visible ones; white space at the end alone."""
    kinds = [_kind(ch) for ch in text]
    words: list[Word] = []
    i, n = 0, len(text)
    while i < n:
        start = i
        while i < n and kinds[i] == "s":
            i += 1
        if i < n:
            run = "w" if kinds[i] == "w" else "p"  # a mark with nothing before it starts a run of its own
            i += 1
            while i < n and (kinds[i] == run or kinds[i] == "j"):
                i += 1
        words.append(Word(start, i, text[start:i]))
    return words


# --------------------------------------------------------------------------------------------------
# where tokens lie
# --------------------------------------------------------------------------------------------------


def _byte_spans(raws: Sequence[bytes], data: bytes) -> list[Span] | None:
    """Each token's byte span in ``data`` when the tokens' bytes, laid end to
    end, make it (tokens not in the text cover nothing); None when they do not."""
    spans: list[Span] = []
    at = 0
    for raw in raws:
        if raw and data.startswith(raw, at):
            spans.append((at, at + len(raw)))
            at += len(raw)
        elif raw.startswith(b" ") and data.startswith(raw[1:], at):  # SentencePiece's added space
            spans.append((at, at + len(raw) - 1))
            at += len(raw) - 1
        else:  # a token the tokenizer added (<bos>): it covers nothing
            spans.append((at, at))
    return spans if at == len(data) else None


def _char_weights_from_bytes(text: str, byte_spans: Sequence[Span]) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each token, the characters it covers and each one's share (a whole
    character 1, a piece of one its fraction of the character's bytes)."""
    sizes = np.fromiter((len(ch.encode("utf-8")) for ch in text), np.int64, len(text))
    char_of_byte = np.repeat(np.arange(len(text)), sizes)
    share_of_byte = np.repeat(1.0 / np.maximum(sizes, 1), sizes)
    out = []
    for a, b in byte_spans:
        chars = char_of_byte[a:b]
        if chars.size == 0:
            out.append((np.zeros(0, np.int64), np.zeros(0)))
            continue
        first = int(chars[0])
        weights = np.bincount(chars - first, weights=share_of_byte[a:b])
        out.append((np.arange(first, first + weights.size), weights))
    return out


def _byte_to_char(text: str, byte_spans: Sequence[Span]) -> list[Span]:
    """Byte spans as character spans, each widened to the whole characters it touches."""
    ends = np.cumsum([len(ch.encode("utf-8")) for ch in text])  # byte after each character
    spans = []
    for a, b in byte_spans:
        start = int(np.searchsorted(ends, a, side="right"))
        spans.append((start, start) if b == a else (start, int(np.searchsorted(ends, b, side="left")) + 1))
    return spans


def token_spans(text: str, raws: Sequence[bytes],
                offsets: Sequence[Span] | None = None) -> tuple[list[Span], list[tuple[np.ndarray, np.ndarray]]]:
    """Where each token lies in ``text``: its character span and its share of
    each character it covers (``(chars, weights)``).

    ``raws`` are the tokens' bytes (TokenText.raw). When they do not make the
    text (see the module's docstring), ``offsets`` (the tokenizer's character
    offsets) are used, every character of a token's span then counting one
    share; without offsets that is an error."""
    byte_spans = _byte_spans(raws, text.encode("utf-8"))
    if byte_spans is not None:
        return _byte_to_char(text, byte_spans), _char_weights_from_bytes(text, byte_spans)
    if offsets is None or len(offsets) != len(raws):
        raise LmdeskError("The model's tokens do not spell the text, so they cannot be placed on its characters.")
    spans = [(int(a), int(b)) for a, b in offsets]
    return spans, [(np.arange(a, b), np.ones(b - a)) for a, b in spans]


def spread_bits(n_chars: int, bits: Sequence[float | None], spans: Sequence[Span],
                weights: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Each character's bits: every token's bits shared over its characters by
    their weights; a predicted token covering nothing gives its bits to the
    character at its place (the last one at the end of the text)."""
    out = np.zeros(n_chars, np.float64)
    if n_chars == 0:
        return out
    for b, (start, _end), (chars, w) in zip(bits, spans, weights):
        if b is None or b == 0.0:
            continue
        total = float(w.sum())
        if chars.size == 0 or total <= 0.0:
            out[min(start, n_chars - 1)] += b
        else:
            np.add.at(out, chars, b * w / total)
    return out


def _prefix_sums(values: np.ndarray) -> np.ndarray:
    """Cumulative sums along the last axis with a 0 in front: sum of a[s:e] = c[e] - c[s]."""
    values = np.atleast_2d(values)
    return np.concatenate([np.zeros((values.shape[0], 1)), np.cumsum(values, axis=1)], axis=1)


# --------------------------------------------------------------------------------------------------
# scoring and figures
# --------------------------------------------------------------------------------------------------


def estimated_parameters(model: LoadedModel) -> int | None:
    """The model's number of weights, from the dimensions in its manifest: the
    embedding (counted once: tied or not, it is the one table students
    compare), each layer's attention and feed-forward matrices and norms;
    biases left out. SmolLM2-135M gives 134.5 million, Gemma 3 270M 268
    million. None for a folder whose manifest does not give them."""
    dims = (model.manifest or {}).get("dimensions") or {}
    try:
        n_layer, d, n_head, n_kv, head, ff, vocab = (int(dims[k]) for k in (
            "n_layer", "d_model", "n_head", "n_head_kv", "head_dim", "d_ff", "vocab_size"))
    except (KeyError, TypeError, ValueError):
        return None
    arch = str((model.manifest or {}).get("architecture", ""))
    norms = 2 * d + (2 * d if arch in ("gemma2", "gemma3") else 0) + (2 * head if arch in ("qwen3", "gemma3") else 0)
    layer = 2 * d * n_head * head + 2 * d * n_kv * head + 3 * d * ff + norms
    return vocab * d + n_layer * layer + d


def size_label(parameters: int | None) -> str:
    """A number of parameters as people say it: "135M", "1.7B", "94k"; "" when unknown."""
    if parameters is None:
        return ""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if parameters >= scale:
            value = parameters / scale
            return f"{value:.{0 if value >= 10 else 1}f}{unit}"
    return str(parameters)


def scored_from_session(session: Session, text: str, parameters: int | None = None) -> Scored:
    """The :class:`Scored` of a session that has just read ``text`` with
    :meth:`Session.load_text` (the window's second model, or :func:`score_text`)."""
    tokens = tuple(session.doc.tokens)
    raws = [session.token_text(t.id).raw for t in tokens]
    offsets = None
    if _byte_spans(raws, text.encode("utf-8")) is None:  # only then are the tokenizer's offsets needed
        enc = session.model.tokenizer.encode(text)
        offsets = enc.offsets if list(enc.ids) == [t.id for t in tokens] else None
    spans, weights = token_spans(text, raws, offsets)
    bits = [None if t.stats is None else t.stats.bits for t in tokens]
    return Scored(model=session.model.name, text=text, tokens=tokens, spans=tuple(spans),
                  char_bits=spread_bits(len(text), bits, spans, weights), summary=session.doc.total(),
                  parameters=parameters)


def score_text(model: LoadedModel, text: str, should_cancel: ShouldCancel | None = None,
               progress: Progress | None = None, *, top_k: int = 20) -> Scored:
    """Score ``text`` with ``model`` as ``lmdesk score`` does (a fresh session
    reading it as plain text) and place its tokens on the text's characters.
    ``progress(done, total)`` counts tokens; ``should_cancel()`` returning
    True stops it between chunks (:class:`~lmdesk.engine.errors.Cancelled`)."""
    if not text:
        raise LmdeskError("There is no text to score.")
    session = Session(model, top_k=top_k)
    session.load_text(text, progress=progress, should_cancel=should_cancel)
    return scored_from_session(session, text, estimated_parameters(model))


def figures(scored: Scored, words: int | None = None) -> Figures:
    """The whole-text figures of ``scored``; ``words``: the number of units of
    :func:`split_words` (counted when not given)."""
    s = scored.summary
    n_chars = len(scored.text)
    n_words = len(split_words(scored.text)) if words is None else words
    return Figures(
        model=scored.model, parameters=scored.parameters, characters=n_chars, words=n_words, tokens=s.tokens,
        total_bits=s.total_bits,
        bits_per_char=s.total_bits / n_chars if n_chars else 0.0,
        bits_per_word=s.total_bits / n_words if n_words else 0.0,
        bits_per_token=s.bits_per_token, perplexity=s.perplexity,
    )


def align(text: str, scored: Sequence[Scored]) -> Alignment:
    """The words of ``text`` with each model's bits on them (``scored``: one
    :class:`Scored` per model, each of this very text)."""
    for s in scored:
        if s.text != text:
            raise ValueError(f"{s.model} scored another text")
    words = split_words(text)
    char_bits = np.array([s.char_bits for s in scored], np.float64).reshape(len(scored), len(text))
    sums = _prefix_sums(char_bits)
    starts = np.array([w.start for w in words], np.int64)
    ends = np.array([w.end for w in words], np.int64)
    bits = (sums[:, ends] - sums[:, starts]).T if words else np.zeros((0, len(scored)))
    return Alignment(text=text, models=tuple(s.model for s in scored), words=tuple(words), bits=bits,
                     char_bits=char_bits, token_spans=tuple(s.spans for s in scored))


# --------------------------------------------------------------------------------------------------
# a conversation, each model in its own chat format
# --------------------------------------------------------------------------------------------------

MESSAGE_GAP = "\n\n"  # between two messages' texts in what a conversation's models are compared on


@dataclass(frozen=True)
class OnContents:
    """Several models' surprise on a conversation that each read in its own
    chat format, moved onto the messages' texts alone (the template's markup
    differs from model to model, so only the messages can be compared)."""

    text: str  # the messages' contents, one after the other, MESSAGE_GAP between two
    messages: tuple[int, ...]  # the index of the message each part of the text is
    scored: tuple[Scored, ...]  # per model, on ``text``: its tokens that lie in the messages' texts
    markup_bits: tuple[float, ...]  # per model, the bits of everything else: role markers, delimiters, tool calls


def _content_ranges(session: Session, scored: Scored) -> dict[int, Span]:
    """For each message, the characters of ``scored.text`` its content tokens cover."""
    doc = session.doc
    ranges: dict[int, Span] = {}
    for (a, b), t in zip(scored.spans, doc.tokens):
        message = doc.segments[t.segment].message
        if t.kind == CONTENT and message is not None and b > a:
            lo, hi = ranges.get(message, (a, b))
            ranges[message] = (min(lo, a), max(hi, b))
    return ranges


def _content_range(scored: Scored, covered: Span | None, content: str) -> Span | None:
    """Where a message's content lies in ``scored.text``: looked for around the
    characters its content tokens cover (a template may trim it)."""
    if covered is None:
        return None
    lo, hi = covered
    at = scored.text.find(content, max(0, lo - 2), hi + 2)
    if at >= 0:
        return at, at + len(content)
    return lo, hi


def on_contents(sessions: Sequence[Session], contents: Sequence[str],
                parameters: Sequence[int | None] | None = None) -> OnContents:
    """The models of ``sessions``, each holding the same conversation written
    with its own template (``contents``: the messages' contents, in order),
    lined up on the messages' texts: each model's bits on the characters of a
    message's content in its own document, copied to that message's place in
    the shared text; the rest of each document (markup) is counted apart."""
    parts = [(k, c) for k, c in enumerate(contents) if c]
    text = MESSAGE_GAP.join(c for _, c in parts)
    places, at = [], 0
    for k, c in parts:
        places.append((k, at, at + len(c)))
        at += len(c) + len(MESSAGE_GAP)
    out_scored, markup = [], []
    for n, session in enumerate(sessions):
        own = scored_from_session(session, session.text(), parameters[n] if parameters else None)
        bits = np.zeros(len(text), np.float64)
        token_places: dict[int, Span] = {}
        covered = _content_ranges(session, own)
        for k, start, end in places:
            found = _content_range(own, covered.get(k), contents[k])
            if found is None:
                continue
            a, b = found
            width = min(b - a, end - start)
            bits[start : start + width] = own.char_bits[a : a + width]
            for i, (ta, tb) in enumerate(own.spans):  # the tokens lying on this message's text, moved along
                lo, hi = max(ta, a), min(tb, a + width)
                if lo < hi:
                    token_places[i] = (start + lo - a, start + hi - a)
        kept = sorted(token_places)
        tokens = tuple(own.tokens[i] for i in kept)
        predicted = sum(t.stats is not None for t in tokens)
        total = float(bits.sum())  # a token half in a message's text counts the half that is
        per_token = total / predicted if predicted else 0.0
        summary = SpanSummary(predicted, total, per_token, 2.0 ** per_token)
        out_scored.append(Scored(model=own.model, text=text, tokens=tokens,
                                 spans=tuple(token_places[i] for i in kept), char_bits=bits, summary=summary,
                                 parameters=own.parameters))
        markup.append(float(own.char_bits.sum() - bits.sum()))
    return OnContents(text, tuple(k for k, _, _ in places), tuple(out_scored), tuple(markup))

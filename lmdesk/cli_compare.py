"""``lmdesk compare``: several texts, several models, the same figures for each.

    lmdesk compare --model A --model B [--model C …] [--json | --csv] [--plot OUT.png] FILE…

Per file and model: total bits, bits per character (first: the fair
comparison across tokenizers), bits per word, bits per token and perplexity,
as :mod:`lmdesk.engine.compare` defines them (the tokens' figures are those
of ``lmdesk score``). ``--json`` prints ``{"models": [names], "parameters":
[sizes or null], "files": [{"file", "characters", "words": [{"start", "end",
"text", "bits": [one per model]}], "total_bits": [one per model],
"bits_per_char", "bits_per_word", "bits_per_token", "perplexity", "tokens"}]}``,
each model's word bits adding up to its ``score`` total for the text; ``--csv``
prints one row per file and model; ``--plot`` draws perplexity and bits per
character against the models (by size when their folders tell it) as a PNG,
for the course's perplexity exercise.

The models are loaded one at a time, each scoring every file and then let
go, so the memory needed is that of the largest one, not of all of them.

Wired into the command line by ``lmdesk.cli`` (:func:`add_parser`, :func:`run`).
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.errors import LmdeskError

if TYPE_CHECKING:  # the engine (numpy, onnxruntime) loads only when the command runs, not with the parser
    from .engine.compare import Alignment, Figures, Scored

__all__ = ["add_parser", "run", "compare_files", "CSV_COLUMNS"]

CSV_COLUMNS = ("file", "model", "parameters", "characters", "words", "tokens", "total_bits", "bits_per_char",
               "bits_per_word", "bits_per_token", "perplexity")
_FIGURES = ("total_bits", "bits_per_char", "bits_per_word", "bits_per_token", "perplexity", "tokens")


def add_parser(subparsers: Any, model_options: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """Add ``compare`` to ``subparsers``; ``model_options`` adds the options
    every command has (lmdesk.cli's), of which ``--model`` is made repeatable here."""
    p = subparsers.add_parser(
        "compare", conflict_handler="resolve",
        help="the same texts scored by several models: bits per character, per token, perplexity",
        description="Score the same texts with several models and compare them: total bits, bits per character "
                    "(the fair comparison across tokenizers), bits per word, bits per token and perplexity.")
    model_options(p)
    p.add_argument("--model", action="append", default=argparse.SUPPRESS, metavar="DIR",
                   help="a model folder; give it once per model (two or more to compare)")
    p.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files (- for standard input)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: per file the figures and each word's bits per model")
    p.add_argument("--csv", action="store_true", help="print one CSV row per file and model")
    p.add_argument("--plot", metavar="OUT.png",
                   help="also draw perplexity and bits per character against the models into this PNG file")
    p.set_defaults(func=run)
    return p


def _model_folders(args: argparse.Namespace) -> list[str]:
    given = getattr(args, "model", None)
    folders = [given] if isinstance(given, str) else list(given or [])
    if not folders:
        raise LmdeskError("Give the models to compare with --model FOLDER, once for each model.")
    return folders


def compare_files(texts: Sequence[str], folders: Sequence[str], load: Callable[[str], Any],
                  progress: Callable[[str], None] | None = None) -> list[list[Scored]]:
    """``texts`` scored by each model of ``folders``: ``result[file][model]``.
    Each model is loaded (``load(folder)``), scores every text, and is let go
    before the next one loads."""
    from .engine.compare import score_text

    result: list[list[Scored]] = [[] for _ in texts]
    for folder in folders:
        model = load(folder)
        for n, text in enumerate(texts):
            if progress is not None:
                progress(f"{model.name}: text {n + 1} of {len(texts)}")
            result[n].append(score_text(model, text))
        del model
        gc.collect()  # the next model's weights should not meet this one's in memory
    return result


def _file_json(name: str, alignment: Alignment, figs: Sequence[Figures]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "file": name,
        "characters": len(alignment.text),
        "words": [{"start": w.start, "end": w.end, "text": w.text, "bits": [float(b) for b in bits]}
                  for w, bits in zip(alignment.words, alignment.bits)],
    }
    for key in _FIGURES:
        entry[key] = [getattr(f, key) for f in figs]
    return entry


def _table(names: Sequence[str], rows: Sequence[tuple[str, int, int, Sequence[Figures]]]) -> str:
    from .engine.compare import size_label

    width = max(12, *(len(n) for n in names))
    lines = []
    for name, chars, words, figs in rows:
        lines.append(f"{name}: {chars:,} characters, {words:,} words")
        lines.append(f"  {'model':<{width}} {'size':>7} {'bits/char':>9} {'total bits':>10} {'bits/word':>9} "
                     f"{'tokens':>7} {'bits/token':>10} {'perplexity':>10}")
        for model, f in zip(names, figs):
            size = size_label(f.parameters) or "—"
            lines.append(f"  {model:<{width}} {size:>7} {f.bits_per_char:>9.3f} {f.total_bits:>10.1f} "
                         f"{f.bits_per_word:>9.2f} {f.tokens:>7,} {f.bits_per_token:>10.3f} {f.perplexity:>10.2f}")
        lines.append("")
    lines.append("Bits per character compares models with different tokenizers fairly; perplexity is per token "
                 "(2 ** bits per token), each model's own tokens.")
    return "\n".join(lines)


def _csv(names: Sequence[str], rows: Sequence[tuple[str, int, int, Sequence[Figures]]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, chars, words, figs in rows:
        for model, f in zip(names, figs):
            writer.writerow([name, model, "" if f.parameters is None else f.parameters, chars, words, f.tokens,
                             repr(f.total_bits), repr(f.bits_per_char), repr(f.bits_per_word),
                             repr(f.bits_per_token), repr(f.perplexity)])
    return buf.getvalue()


def _write_stdout(text: str) -> None:
    """``text`` on standard output as UTF-8, whatever the console's code page."""
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    out.write(text.encode("utf-8"))
    out.flush()


def _names(scored: Sequence[Scored], folders: Sequence[str]) -> list[str]:
    """The models' names; two alike are told apart by their folders."""
    names = [s.model for s in scored]
    return [f"{n} ({folders[i]})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def run(args: argparse.Namespace) -> int:
    """``lmdesk compare``; errors a person can fix are one sentence on stderr and exit code 2."""
    try:
        return _run(args)
    except LmdeskError as exc:
        print(f"lmdesk: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .cli import _load, _read_input
    from .engine.compare import align, figures, split_words
    from .engine.model_folder import read_model_folder

    if args.json and args.csv:
        raise LmdeskError("--csv and --json print the figures in two forms: choose one of them.")
    folders = _model_folders(args)
    if args.plot and Path(args.plot).suffix.lower() != ".png":
        raise LmdeskError(f"The plot is a PNG picture: give it a name that ends in .png, not {args.plot}.")
    if args.files.count("-") > 1:
        raise LmdeskError("Standard input (-) can be read only once.")
    texts = [_read_input(f) for f in args.files]  # every file and folder is checked before any model loads
    for folder in folders:
        read_model_folder(folder)
    names = ["(standard input)" if f == "-" else f for f in args.files]

    def load(folder: str):
        return _load(argparse.Namespace(**{**vars(args), "model": folder}))

    scored = compare_files(texts, folders, load)
    models = _names(scored[0], folders)
    rows, files_json = [], []
    for name, text, per_model in zip(names, texts, scored):
        words = len(split_words(text))
        figs = [figures(s, words) for s in per_model]
        rows.append((name, len(text), words, figs))
        if args.json:
            files_json.append(_file_json(name, align(text, per_model), figs))
    if args.plot:
        from .ui.compare_plot import write_plot  # Qt only for the picture

        write_plot(args.plot, models, [f.parameters for f in rows[0][3]],
                   {name: ([f.perplexity for f in figs], [f.bits_per_char for f in figs])
                    for name, _c, _w, figs in rows})
    if args.json:
        print(json.dumps({"models": models, "parameters": [s.parameters for s in scored[0]], "files": files_json},
                         ensure_ascii=False))
    elif args.csv:
        _write_stdout(_csv(models, rows))
    else:
        print(_table(models, rows))
    if args.plot:
        sys.stdout.flush()  # the figures first, then where the picture went
        print(f"The plot is in {args.plot}.", file=sys.stderr)
    return 0

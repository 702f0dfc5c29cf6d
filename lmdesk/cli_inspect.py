"""``lmdesk inspect``: look inside the model at one position of a text.

    lmdesk inspect [--model DIR] [--position P] [--top K] [--json] FILE

For the prediction of token ``P`` (the model's state at token ``P - 1``;
``1 <= P <= n``, default ``n``: the token after the text) it prints the
logit lens (each layer's most likely tokens, and where the actual token
stands) and every layer's attention over the tokens before. With ``--json``
one object::

    {"model", "position", "tokens": [{"id", "text"}],
     "layers": [{"layer": 1…L, "top": [{"id", "text", "prob"}]}],
     "attention": [layer][head][key]}     (keys 0 … P-1, each row summing to 1)

:func:`add_parser` adds the command to ``lmdesk``'s parser (lmdesk/cli.py);
the engine's side is :mod:`lmdesk.engine.inspect`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from .engine.errors import LmdeskError

# the most attended tokens shown per layer in the table (the JSON has every key)
TABLE_KEYS = 3


def add_parser(subparsers, model_options: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """Add ``inspect`` to ``subparsers``; ``model_options`` adds --model and
    the options every model command takes (lmdesk.cli._model_options)."""
    p = subparsers.add_parser("inspect", help="look inside the model at one position: logit lens and attention")
    model_options(p)
    p.add_argument("file", nargs="?", default="-", help="a UTF-8 text file, or - for standard input (default)")
    p.add_argument("--position", type=int, default=None, metavar="P",
                   help="inspect the prediction of token P, from the tokens before it (1 … n; default n, "
                        "the token after the text)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="tokens listed per layer (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """The command: one sentence (:class:`LmdeskError`) for what a person can fix."""
    from .cli import _load, _read_input
    from .engine.export import token_text
    from .engine.inspect import Inspector
    from .engine.token_text import TokenTextTable

    text = _read_input(args.file)
    model = _load(args)
    ids = model.tokenizer.encode(text).ids
    n = len(ids)
    if n > model.context_length:
        raise LmdeskError(f"The text is {n:,} tokens, more than the model's context of {model.context_length:,}.")
    position = n if args.position is None else args.position
    if not 1 <= position <= n:
        raise LmdeskError(f"--position must be from 1 to {n} (the text is {n} tokens; P inspects the "
                          f"prediction of token P from the tokens before it), not {position}.")
    found = Inspector(model).inspect(ids, position, top=args.top)
    table = TokenTextTable(model.tokenizer, model.special_ids)

    if args.json:
        print(json.dumps({
            "model": model.name,
            "position": position,
            "tokens": [{"id": i, "text": token_text(table(i))} for i in ids],
            "layers": [{"layer": lens.layer,
                        "top": [{"id": i, "text": token_text(table(i)), "prob": p}
                                for i, p in zip(lens.top_ids, lens.top_probs)]}
                       for lens in found.layers],
            "attention": found.attention.tolist(),
        }, ensure_ascii=False))
        return 0

    def shown(i: int) -> str:
        return table(i).display

    after = shown(ids[position - 1])
    what = (f"token {position}, {shown(found.actual_id)!r}" if found.actual_id is not None
            else "the token after the text")
    print(f"{model.name}: the prediction of {what}, from the {position} tokens up to {after!r} "
          f"(position {position - 1})")
    print("\nLogit lens: what the model would say if it stopped after each layer")
    actual = "  actual: rank, p" if found.actual_id is not None else ""
    print(f"{'layer':>5}  {'top ' + str(args.top):<{14 * args.top}}{actual}")
    for lens in found.layers:
        tops = "".join(f"{shown(i)[:8] + ':' + format(p, '.2f'):<14}" for i, p in zip(lens.top_ids, lens.top_probs))
        tail = f"  {lens.actual_rank:>6} {lens.actual_prob:.4f}" if lens.actual_rank is not None else ""
        print(f"{lens.layer:>5}  {tops}{tail}")
    print(f"\nAttention of token {position - 1} (mean over heads): the {TABLE_KEYS} tokens it attends to most")
    for layer, heads in enumerate(found.attention, start=1):
        mean = heads.mean(axis=0)
        best = mean.argsort(kind="stable")[::-1][:TABLE_KEYS]
        print(f"{layer:>5}  " + "".join(f"{str(int(k)) + ':' + shown(ids[k])[:10] + ' ' + format(mean[k], '.2f'):<24}"
                                        for k in best))
    logits = found.logits
    print("\nRaw scores (logits) of the first choices: " + "  ".join(
        f"{shown(i)}: {logits[i]:.2f}" for i in found.layers[-1].top_ids))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """A parser of ``lmdesk`` with this command alone (``lmdesk [--model DIR] inspect …``),
    as lmdesk.cli.build_parser adds it: for running and testing it on its own."""
    from .cli import _model_options

    parser = argparse.ArgumentParser(prog="lmdesk")
    _model_options(parser, top_level=True)
    add_parser(parser.add_subparsers(dest="command", required=True), _model_options)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m lmdesk.cli_inspect [--model DIR] inspect FILE …``: lmdesk with
    this command alone; an error a person can fix is one line on stderr, exit 2."""
    from .cli import _check_numbers

    args = build_parser().parse_args(argv)
    try:
        _check_numbers(args)  # --top and --threads, as lmdesk.cli.main checks them
        return args.func(args)
    except LmdeskError as exc:
        print(f"lmdesk: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Render conversations with a model's own chat template.

Templates come from model files, so they are untrusted: they run in jinja2's
immutable sandbox, which refuses access to Python internals, and every
render is bounded, without a subprocess:

* in time: every step a template can repeat (each turn of a ``for`` loop,
  each number of ``range``, each call, operator, filter and piece of output)
  checks a deadline (``time_limit``, 5 seconds unless told) and, when given,
  ``should_cancel`` (Stop in the window);
* in size: the text written is at most ``max_chars`` characters (plus twice
  the conversation's own length), and operations that could make a huge
  value at once (``'x' * 10**9``, ``center(10**9)``, ``"%9999999999s"``,
  ``join``, ``replace``, ``indent``, ``wordwrap``, huge numbers…) are
  refused before they allocate it; the values a render makes are counted
  too, so a template cannot fill the memory with many large ones;
* in depth: a template that calls itself without end (a macro, a recursive
  loop) is stopped when Python's recursion limit is reached.

Each such stop is a :class:`ChatTemplateLimitError` with one sentence saying
what happened; Stop raises :class:`~lmdesk.engine.errors.Cancelled`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from jinja2 import TemplateError, nodes
from jinja2.exceptions import FilterArgumentError
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace, _PassArg, generate_lorem_ipsum, pass_context
from jinja2.visitor import NodeTransformer

from .conversation import Message, ToolCall
from .errors import Cancelled, LmdeskError

ShouldCancel = Callable[[], bool]

# Real templates take well under a millisecond for a short conversation and a
# few milliseconds for a long one (measured with these checks: SmolLM2's own
# template, 3 messages 0.1 ms, 800 messages and 187k characters 8 ms; lmdesk's
# Gemma format the same): 5 seconds is hundreds of times that, and still short
# enough for a person waiting at the window. Each render has its own deadline.
TIME_LIMIT_SECONDS = 5.0
# The text a render may write. The largest context of a small model is about
# 128k tokens, a token is about 4 characters of text (rarely more than 10), so
# the longest conversation that fits any model is about 0.5–1.3 million
# characters: 4 million is far above it, and small enough to hold in memory
# several times over. The conversation's own length is added twice on top
# (see ``_limit_for``), so a huge conversation is never blamed on its template.
MAX_CHARS = 4_000_000
# A render may make at most this many times its size limit in values
# (strings, lists, its own output, macros' output included), all told: real
# templates make a few times their output (each ``+`` copies), while a
# template that keeps many large values alive is stopped before it fills the
# memory.
MADE_FACTOR = 16
MAX_RANGE = 100_000  # numbers one ``range`` may give (jinja's own sandbox limit)
MAX_INT_BITS = 65_536  # about 19,700 digits: no conversation needs a bigger number
# wordwrap, title, urlize and pprint are slow Python that cannot be stopped halfway (wordwrap: 4
# seconds for 2 million characters): they take at most max_chars / 16 characters (250,000, a few tenths
# of a second)
HEAVY_DIVISOR = 16
MAX_MESSAGE_IN_ERROR = 300  # characters of a template's own error text shown to the user
_CANCEL_EVERY = 0.01  # seconds between calls of should_cancel during a render


class ChatTemplateError(LmdeskError):
    """The model's chat template failed or refused a conversation."""


class ChatTemplateRefusal(ChatTemplateError):
    """The template itself refused the conversation (``raise_exception``)."""


class ChatTemplateLimitError(ChatTemplateError):
    """A render went past a limit (time, size, depth) and was stopped."""


def _short(text: object, limit: int = MAX_MESSAGE_IN_ERROR) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _amount(n: int) -> str:
    """A limit as a person reads it: 250,000; 4 million; 4.1 million."""
    if n >= 1_000_000:
        return f"{n / 1_000_000:.3g} million"
    return f"{int(float(f'{n:.3g}')):,}" if n >= 10_000 else f"{n:,}"


def _seconds(value: float) -> str:
    return "1 second" if value == 1 else f"{value:g} seconds"


# -- the budget of one render ------------------------------------------------------------------
class _Budget:
    """Deadline, cancel check and size accounting of one render."""

    __slots__ = ("deadline", "time_limit", "should_cancel", "next_cancel_check", "where", "max_chars",
                 "made", "made_limit")

    def __init__(self, time_limit: float, should_cancel: ShouldCancel | None, where: str, max_chars: int) -> None:
        now = time.monotonic()
        self.time_limit = time_limit
        self.deadline = now + time_limit
        self.should_cancel = should_cancel
        self.next_cancel_check = now + _CANCEL_EVERY  # a render quicker than this never asks
        self.where = where
        self.max_chars = max_chars
        self.made = 0
        self.made_limit = MADE_FACTOR * max_chars

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self.deadline:
            raise ChatTemplateLimitError(
                f"The model's chat template took longer than {_seconds(self.time_limit)} on {self.where} "
                "and was stopped.")
        if self.should_cancel is not None and now >= self.next_cancel_check:
            self.next_cancel_check = now + _CANCEL_EVERY
            if self.should_cancel():
                raise Cancelled()

    def too_long(self) -> ChatTemplateLimitError:
        return ChatTemplateLimitError(
            f"The model's chat template tried to write more than {_amount(self.max_chars)} characters "
            f"for {self.where} and was stopped.")

    def need(self, n: int) -> None:
        """Refuse a value of ``n`` characters or items before it is made."""
        if n > self.max_chars:
            raise self.too_long()

    def count(self, n: int) -> None:
        """``n`` more characters or items made by the render."""
        self.made += n
        if self.made > self.made_limit:
            raise ChatTemplateLimitError(
                f"The model's chat template built more than {_amount(self.made_limit)} characters of text "
                f"for {self.where} and was stopped.")


_CURRENT: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("lmdesk_chat_template_budget",
                                                                         default=None)


def _too_big_number() -> ChatTemplateLimitError:
    digits = int(MAX_INT_BITS * math.log10(2))
    where = b.where if (b := _CURRENT.get()) is not None else "this conversation"
    return ChatTemplateLimitError(
        f"The model's chat template tried to compute a number of more than {digits:,} digits for {where} "
        "and was stopped.")


def _shallow_size(value) -> int:
    if isinstance(value, (str, list, tuple, dict, set, frozenset)):
        return len(value)
    return 0


def _deep_size(value, limit: int) -> int:
    """About how many characters ``str(value)`` would have; stops counting
    (returning more than ``limit``) as soon as it passes ``limit``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, Namespace):
        value = object.__getattribute__(value, "_Namespace__attrs")
    if isinstance(value, Mapping):
        total = 2 + 4 * len(value)
        for k, v in value.items():
            if total > limit:
                return total
            total += _deep_size(k, limit - total) + _deep_size(v, limit - total)
        return total
    if isinstance(value, (list, tuple, set, frozenset)):
        total = 2 + 4 * len(value)
        for v in value:
            if total > limit:
                return total
            total += _deep_size(v, limit - total)
        return total
    return 32  # numbers, None, loop objects, ranges…: short when written


def _check_text(value, b: _Budget) -> str:
    """``str(value)``, refused before it is made if it would be too long."""
    if not isinstance(value, str):
        b.need(_deep_size(value, b.max_chars))
        value = str(value)
    b.need(len(value))
    return value


def _made(value, b: _Budget | None):
    """Account for a value a template just made."""
    if b is None:
        return value
    n = _shallow_size(value)
    if n:
        b.need(n)
        b.count(n)
    elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _too_big_number()
    elif hasattr(value, "__next__"):  # a lazy sequence (map, select, batch…): each item is a step
        return _ticking(value, b)
    return value


def _ticking(iterable, b: _Budget):
    for item in iterable:
        b.tick()
        b.count(_shallow_size(item) + 1)
        yield item


def _int_arg(value, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return default


# -- checks made before a value is made ----------------------------------------------------------
def _check_repeat(left, right, b: _Budget) -> None:
    """``left * right``."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
            n = len(seq) if isinstance(seq, str) else _deep_size(seq, b.max_chars)
            if times > 0 and n * times > b.max_chars:
                raise b.too_long()
            return
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise _too_big_number()


def _check_power(left, right) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if right * math.log2(abs(left)) > MAX_INT_BITS:
            raise _too_big_number()


def _check_add(left, right, b: _Budget) -> None:
    if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
        b.need(len(left) + len(right))


_PERCENT_SPEC = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?[hlL]?(?P<conv>.?)", re.S)


def _check_percent(fmt: str, args, b: _Budget) -> None:
    """``fmt % args``: widths, precisions and the values put in, all told."""
    positional = list(args) if isinstance(args, tuple) else [args]
    mapping = args if isinstance(args, Mapping) else None
    limit = b.max_chars
    total = len(fmt)
    i = 0

    def take():
        nonlocal i
        value = positional[i] if i < len(positional) else None
        i += 1
        return value

    for m in _PERCENT_SPEC.finditer(fmt):
        conv = m["conv"]
        if conv == "%":
            continue
        width = m["width"]
        w = _int_arg(take()) if width == "*" else int(width or 0)
        prec = m["prec"]
        p = _int_arg(take()) if prec == "*" else int(prec or 0)
        if m["key"] is not None:
            if mapping is None:
                size = _deep_size(args, limit)
            else:
                try:
                    size = _deep_size(mapping[m["key"]], limit)
                except Exception:  # let Python say what is wrong with the key
                    size = _deep_size(mapping, limit)
        else:
            size = _deep_size(take(), limit)
        if conv and conv in "ra":
            size *= 10  # escapes: one character may be written as ten
        total += abs(w) + (min(size, p) if conv and conv in "sra" and prec is not None else size + abs(p))
        if total > limit:
            raise b.too_long()


def _check_format_spec(spec: str, value, b: _Budget) -> None:
    numbers = [int(n) for n in re.findall(r"\d+", spec or "")]
    b.need(sum(numbers) + _deep_size(value, b.max_chars))


def _replace_size(s: str, old, new, count) -> int:
    if not isinstance(s, str) or not isinstance(old, str) or not isinstance(new, str):
        return len(s) if isinstance(s, str) else 0
    hits = len(s) + 1 if old == "" else s.count(old)
    if count is not None and _int_arg(count, -1) >= 0:
        hits = min(hits, _int_arg(count))
    return len(s) + hits * max(0, len(new) - len(old))


def _check_call(obj, args: tuple, kwargs: dict, b: _Budget) -> tuple:
    """Methods of strings and numbers that can make a huge value from small ones."""
    owner = getattr(obj, "__self__", None)
    name = getattr(obj, "__name__", "")

    def arg(i: int, key: str, default=None):
        return args[i] if len(args) > i else kwargs.get(key, default)

    if isinstance(owner, str):
        if name in ("ljust", "rjust", "center", "zfill"):
            b.need(max(len(owner), _int_arg(arg(0, "width"))))
        elif name == "expandtabs":
            b.need(len(owner) + owner.count("\t") * max(0, _int_arg(arg(0, "tabsize", 8), 8)))
        elif name == "replace":
            b.need(_replace_size(owner, arg(0, "old"), arg(1, "new"), arg(2, "count")))
        elif name == "join" and args:
            items = []
            total = 0
            for item in args[0]:
                b.tick()
                items.append(item)
                total += (_deep_size(item, b.max_chars) if isinstance(item, str) else 0) + len(owner)
                b.need(total)
            return (items, *args[1:])
        elif name == "translate" and args and isinstance(args[0], Mapping):
            longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
            b.need(len(owner) * max(1, longest))
    elif isinstance(owner, int) and name == "to_bytes":
        b.need(_int_arg(arg(0, "length", 1), 1))
    return args


# -- filters -----------------------------------------------------------------------------------
# Each filter of jinja2 is wrapped: it is a step (time), its input is checked
# before it is written as text, and what it makes is counted. The ones that can
# make much more than they are given check their arguments first.
_TEXT_FILTERS = frozenset({
    "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower", "pprint", "replace",
    "safe", "string", "striptags", "title", "trim", "truncate", "upper", "urlencode", "urlize", "wordcount",
    "wordwrap", "xmlattr",
})


def _pre_center(b, value, width=80, *_a, **_k):
    b.need(max(_deep_size(value, b.max_chars), _int_arg(width)))


def _pre_indent(b, s, width=4, *_a, **_k):
    w = len(width) if isinstance(width, str) else max(0, _int_arg(width))
    lines = s.count("\n") + 2 if isinstance(s, str) else 2
    b.need(_deep_size(s, b.max_chars) + lines * w)


def _pre_wordwrap(b, s, width=79, break_long_words=True, wrapstring=None, *_a, **_k):
    n = _deep_size(s, b.max_chars)
    wrap = len(wrapstring) if isinstance(wrapstring, str) else 1
    b.need(n + (n + 1) * wrap)


def _pre_replace(b, s, old=None, new=None, count=None, *_a, **_k):
    b.need(_replace_size(s, old, new, count))


def _pre_truncate(b, s, length=255, killwords=False, end="...", *_a, **_k):
    b.need(_deep_size(s, b.max_chars) + (len(end) if isinstance(end, str) else 0))


def _pre_urlencode(b, value, *_a, **_k):
    b.need(9 * _deep_size(value, b.max_chars))  # one character may be written as nine


def _pre_escape(b, value, *_a, **_k):
    b.need(6 * _deep_size(value, b.max_chars))  # ``"`` becomes ``&#34;``


def _pre_batch(b, value, linecount=1, fill_with=None, *_a, **_k):
    b.need(_int_arg(linecount))


def _pre_slice(b, value, slices=1, fill_with=None, *_a, **_k):
    if _int_arg(slices) > MAX_RANGE:
        raise _too_many(b)


def _pre_heavy(b, value, *_a, **_k):
    # slow Python with no step of its own (a few seconds for a few million characters): small inputs only
    n = _deep_size(value, b.max_chars)
    if n > b.max_chars // HEAVY_DIVISOR:
        raise ChatTemplateLimitError(
            f"The model's chat template tried to rework more than {_amount(b.max_chars // HEAVY_DIVISOR)} "
            f"characters of text at once for {b.where} and was stopped.")


def _pre_wordwrap_heavy(b, s, width=79, break_long_words=True, wrapstring=None, *_a, **_k):
    _pre_heavy(b, s)
    _pre_wordwrap(b, s, width, break_long_words, wrapstring)


_PRECHECKS = {
    "center": _pre_center, "indent": _pre_indent, "replace": _pre_replace,
    "truncate": _pre_truncate, "urlencode": _pre_urlencode, "escape": _pre_escape, "e": _pre_escape,
    "forceescape": _pre_escape, "xmlattr": _pre_escape, "batch": _pre_batch, "slice": _pre_slice,
    "pprint": _pre_heavy, "title": _pre_heavy, "urlize": _pre_heavy, "wordwrap": _pre_wordwrap_heavy,
}


def _wrap_filter(name: str, func: Callable) -> Callable:
    pass_arg = _PassArg.from_obj(func)
    pre = _PRECHECKS.get(name)
    text = name in _TEXT_FILTERS

    @pass_context
    def bounded(context, value, *args, **kwargs):
        b = _CURRENT.get()
        if b is not None:
            b.tick()
            if text and not isinstance(value, str):
                b.need(_deep_size(value, b.max_chars))
            if pre is not None:
                pre(b, value, *args, **kwargs)
        if pass_arg is _PassArg.context:
            result = func(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = func(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = func(context.environment, value, *args, **kwargs)
        else:
            result = func(value, *args, **kwargs)
        return _made(result, b)

    bounded.__name__ = getattr(func, "__name__", name)
    bounded.__doc__ = getattr(func, "__doc__", None)
    return bounded


def _format(value, *args, **kwargs) -> str:
    """jinja2's ``format`` filter (``value % args``), its result checked first."""
    if args and kwargs:
        raise FilterArgumentError("can't handle positional and keyword arguments at the same time")
    return _percent(str(value), kwargs or args)


def _percent(fmt: str, args) -> str:
    b = _CURRENT.get()
    if b is not None:
        _check_percent(fmt, args, b)
    return fmt % args


@pass_context
def _join(context, value, d="", attribute=None) -> str:
    """jinja2's ``join``, writing item by item so a huge result is refused
    before it is made."""
    if attribute is not None:
        value = map(make_attrgetter(context.environment, attribute), value)
    b = _CURRENT.get()
    sep = str(d)
    if b is None:
        return sep.join(map(str, value))
    parts = []
    total = 0
    for item in value:
        b.tick()
        part = _check_text(item, b)
        total += len(part) + (len(sep) if parts else 0)
        b.need(total)
        parts.append(part)
    b.count(total)
    return sep.join(parts)


@pass_context
def _sum(context, iterable, attribute=None, start=0):
    """jinja2's ``sum``; adding lists or strings one by one is checked (and
    would otherwise take time that grows with the square of their number)."""
    if attribute is not None:
        iterable = map(make_attrgetter(context.environment, attribute), iterable)
    b = _CURRENT.get()
    if b is None:
        return sum(iterable, start)
    total = start
    for item in iterable:
        b.tick()
        _check_add(total, item, b)
        if isinstance(total, int) and isinstance(item, int) and total.bit_length() > MAX_INT_BITS:
            raise _too_big_number()
        total = total + item
        b.count(_shallow_size(total))
    return total


def _tojson(value, indent=None, ensure_ascii=False, **_ignored) -> str:
    encoder = json.JSONEncoder(indent=indent, ensure_ascii=ensure_ascii)
    b = _CURRENT.get()
    if b is None:
        return encoder.encode(value)
    if isinstance(indent, int):
        b.need(indent)
    parts = []
    total = 0
    for chunk in encoder.iterencode(value):
        b.tick()
        total += len(chunk)
        b.need(total)
        parts.append(chunk)
    b.count(total)
    return "".join(parts)


def _lipsum(n=5, html=True, min=20, max=100):  # noqa: A002 - jinja2's own names
    b = _CURRENT.get()
    if b is not None:
        b.need(_int_arg(n) * _int_arg(max) * 16)
    return generate_lorem_ipsum(n=n, html=html, min=min, max=max)


def _too_many(b: _Budget | None) -> ChatTemplateLimitError:
    where = b.where if b is not None else "this conversation"
    return ChatTemplateLimitError(
        f"The model's chat template asked for more than {MAX_RANGE:,} numbers at once for {where} "
        "and was stopped.")


class _CountingRange:
    """``range`` for templates: each number it gives is a step of the render."""

    __slots__ = ("_range",)

    def __init__(self, r: range) -> None:
        self._range = r

    def __iter__(self):
        b = _CURRENT.get()
        for i in self._range:
            if b is not None:
                b.tick()
            yield i

    def __reversed__(self):
        return iter(_CountingRange(self._range[::-1]))

    def __len__(self) -> int:
        return len(self._range)

    def __bool__(self) -> bool:
        return bool(self._range)

    def __contains__(self, x) -> bool:
        return x in self._range

    def __getitem__(self, key):
        got = self._range[key]
        return _CountingRange(got) if isinstance(got, range) else got

    def __eq__(self, other) -> bool:
        return self._range == (other._range if isinstance(other, _CountingRange) else other)

    def __hash__(self) -> int:
        return hash(self._range)

    def __repr__(self) -> str:
        return repr(self._range)

    @property
    def start(self) -> int:
        return self._range.start

    @property
    def stop(self) -> int:
        return self._range.stop

    @property
    def step(self) -> int:
        return self._range.step

    def index(self, x) -> int:
        return self._range.index(x)

    def count(self, x) -> int:
        return self._range.count(x)


def _range(*args) -> _CountingRange:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise _too_many(_CURRENT.get())
    return _CountingRange(r)


class _Namespace(Namespace):
    """``namespace()`` for templates: what is kept in one is checked, so a
    value cannot grow without bound across the turns of a loop."""

    def __setitem__(self, name, value) -> None:
        b = _CURRENT.get()
        if b is not None:
            b.tick()
            b.need(_deep_size(value, b.max_chars))
        super().__setitem__(name, value)


class _LimitedFormatting:
    """``str.format`` for templates: widths and the values put in are checked
    field by field."""

    def vformat(self, format_string, args, kwargs):
        b = _CURRENT.get()
        self._lmdesk_total = len(format_string)
        if b is not None:
            b.need(self._lmdesk_total)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value, conversion):
        b = _CURRENT.get()
        if b is not None and conversion in ("r", "a"):
            b.need(10 * _deep_size(value, b.max_chars))
        return super().convert_field(value, conversion)

    def format_field(self, value, format_spec):
        b = _CURRENT.get()
        if b is None:
            return super().format_field(value, format_spec)
        b.tick()
        _check_format_spec(format_spec, value, b)
        out = super().format_field(value, format_spec)
        self._lmdesk_total += len(out)
        b.need(self._lmdesk_total)
        return out


class _Formatter(_LimitedFormatting, SandboxedFormatter):
    pass


class _EscapeFormatter(_LimitedFormatting, SandboxedEscapeFormatter):
    pass


# -- the environment ---------------------------------------------------------------------------
class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with every operator, call and slice a checked step."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def call_binop(self, context, operator, left, right):
        b = _CURRENT.get()
        if b is not None:
            b.tick()
            if operator == "*":
                _check_repeat(left, right, b)
            elif operator == "**":
                _check_power(left, right)
            elif operator == "+":
                _check_add(left, right, b)
            elif operator == "%" and isinstance(left, str):
                _check_percent(left, right, b)
        elif operator == "**":
            _check_power(left, right)
        return _made(self.binop_table[operator](left, right), b)

    def call(self, context, obj, /, *args, **kwargs):
        b = _CURRENT.get()
        if b is not None:
            b.tick()
            args = _check_call(obj, args, kwargs, b)
        return _made(super().call(context, obj, *args, **kwargs), b)

    def getitem(self, obj, argument):
        value = super().getitem(obj, argument)
        if isinstance(argument, slice):  # a slice of a list is a new list
            value = _made(value, _CURRENT.get())
        return value

    def wrap_str_format(self, value):
        from markupsafe import Markup

        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        f_self = value.__self__
        formatter = (_EscapeFormatter(self, escape=f_self.escape) if isinstance(f_self, Markup)
                     else _Formatter(self))
        str_type = type(f_self)
        is_format_map = value.__name__ == "format_map"

        def bounded_format(*args, **kwargs):
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            return str_type(formatter.vformat(f_self, args, kwargs))

        bounded_format.__name__ = wrapped.__name__
        bounded_format.__doc__ = wrapped.__doc__
        return bounded_format


def _filter(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


class _AddSteps(NodeTransformer):
    """Make each turn of a loop, each piece of output and each ``~`` a step."""

    def visit_For(self, node: nodes.For) -> nodes.For:
        self.generic_visit(node)
        node.iter = _filter(node.iter, "_lmdesk_each")
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Output:
        self.generic_visit(node)
        node.nodes = [_filter(child, "_lmdesk_out") for child in node.nodes]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Filter:
        self.generic_visit(node)
        return _filter(nodes.Tuple(node.nodes, "load", lineno=node.lineno), "_lmdesk_concat")


@pass_context
def _each(context, iterable):
    b = _CURRENT.get()
    if b is None:
        yield from iterable
        return
    for item in iterable:
        b.tick()
        yield item


@pass_context
def _out(context, value) -> str:
    b = _CURRENT.get()
    if b is None:
        return str(value)
    b.tick()
    text = _check_text(value, b)
    b.count(len(text))
    return text


@pass_context
def _concat(context, values) -> str:
    b = _CURRENT.get()
    if b is None:
        return "".join(map(str, values))
    b.tick()
    parts = []
    total = 0
    for value in values:
        part = _check_text(value, b)
        total += len(part)
        b.need(total)
        parts.append(part)
    b.count(total)
    return "".join(parts)


def _raise_exception(message: str) -> None:
    raise ChatTemplateRefusal(f"The model's chat template refused this conversation: {_short(message)}")


def _limit_for(messages: Sequence[Message], tools: Sequence[Mapping], max_chars: int) -> int:
    size = sum(len(m.content) + len(m.role) + sum(len(json.dumps(c.to_dict())) for c in m.tool_calls)
               for m in messages)
    return max_chars + 2 * (size + sum(len(json.dumps(t)) for t in tools))


Today = Callable[[], datetime]
MAX_DATE_FORMAT = 256  # characters of a strftime_now format: a date's is a dozen


def _strftime_now(today: Today) -> Callable[[str], str]:
    """``strftime_now(format)``, which Llama 3.x's templates use to write
    today's date; a format longer than any date's is refused before it is
    written (each ``%c`` writes two dozen characters)."""

    def strftime_now(fmt) -> str:
        fmt = str(fmt)
        if len(fmt) > MAX_DATE_FORMAT:
            b = _CURRENT.get()
            where = b.where if b is not None else "this conversation"
            raise ChatTemplateLimitError(
                f"The model's chat template asked for a date written with more than {MAX_DATE_FORMAT} characters "
                f"of format for {where} and was stopped.")
        return today().strftime(fmt)

    return strftime_now


class ChatTemplate:
    """A compiled chat template; each render is bounded in time, size and depth."""

    def __init__(self, source: str, *, bos_token: str | None = None, eos_token: str | None = None,
                 time_limit: float = TIME_LIMIT_SECONDS, max_chars: int = MAX_CHARS,
                 today: Today = datetime.now) -> None:
        env = _BoundedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = _raise_exception
        env.globals["range"] = _range
        env.globals["namespace"] = _Namespace
        env.globals["lipsum"] = _lipsum
        env.globals["strftime_now"] = _strftime_now(today)
        env.filters = {name: _wrap_filter(name, f) for name, f in env.filters.items()}
        env.filters["tojson"] = _wrap_filter("tojson", _tojson)
        env.filters["format"] = _wrap_filter("format", _format)
        env.filters["join"] = _join
        env.filters["sum"] = _sum
        env.filters["_lmdesk_each"] = _each
        env.filters["_lmdesk_out"] = _out
        env.filters["_lmdesk_concat"] = _concat
        try:
            tree = env.parse(source)
            tree = _AddSteps().visit(tree)
            tree.set_environment(env)
            self._template = env.from_string(tree)
        except TemplateError as exc:
            raise ChatTemplateError(f"The model's chat template is not valid ({_short(exc)}).") from exc
        except RecursionError:
            raise ChatTemplateError("The model's chat template is nested too deeply to be read.") from None
        except (SyntaxError, ValueError, MemoryError, OverflowError) as exc:
            raise ChatTemplateError(f"The model's chat template cannot be read ({_short(exc)}).") from None
        self.source = source
        self.bos_token = bos_token or ""
        self.eos_token = eos_token or ""
        self.time_limit = time_limit
        self.max_chars = max_chars
        self._default_system_prompt: str | None | object = _NOT_YET
        self._supports_tools: bool | None = None

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = False,
               should_cancel: ShouldCancel | None = None, tools: Sequence[Mapping] = ()) -> str:
        """The conversation as the template writes it: the messages in the
        chat form (with their tool calls), ``tools`` (function definitions;
        none is ``None`` to the template, as transformers passes it). A render
        that takes longer than ``time_limit`` or writes too much is stopped
        (:class:`ChatTemplateLimitError`); ``should_cancel`` returning True
        stops it with :class:`Cancelled`."""
        return self._render(messages, add_generation_prompt, should_cancel, "this conversation", tools)

    @property
    def supports_tools(self) -> bool:
        """Whether the template writes tool definitions itself: its source
        speaks of ``tools`` and a short conversation written with a tool
        differs from the one without (worked out once)."""
        if self._supports_tools is None:
            self._supports_tools = False
            if re.search(r"\btools\b", self.source):
                probe = [Message("user", "Hello")]
                tool = {"type": "function", "function": {"name": "lmdesk_probe", "description": "A probe.",
                                                         "parameters": {"type": "object", "properties": {}}}}
                try:
                    with_tools = self.render(probe, tools=[tool], add_generation_prompt=True)
                    try:
                        self._supports_tools = with_tools != self.render(probe, add_generation_prompt=True)
                    except ChatTemplateError:  # a template made for tools only (Hermes' tool_use)
                        self._supports_tools = True
                except ChatTemplateError:
                    pass
        return self._supports_tools

    def _render(self, messages: Sequence[Message], add_generation_prompt: bool,
                should_cancel: ShouldCancel | None, where: str, tools: Sequence[Mapping] = ()) -> str:
        limit = _limit_for(messages, tools, self.max_chars)
        budget = _Budget(self.time_limit, should_cancel, where, limit)
        token = _CURRENT.set(budget)
        stream = None
        try:
            stream = self._template.generate(
                messages=[m.to_dict() for m in messages],
                tools=[dict(t) for t in tools] if tools else None,
                add_generation_prompt=add_generation_prompt,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
            )
            parts: list[str] = []
            total = 0
            for chunk in stream:
                total += len(chunk)
                if total > limit:
                    raise budget.too_long()
                parts.append(chunk)
                budget.tick()
            return "".join(parts)
        except (ChatTemplateError, Cancelled):
            raise
        except RecursionError:
            raise ChatTemplateLimitError(
                f"The model's chat template kept calling itself on {where} (it went too deep) and was stopped."
            ) from None
        except MemoryError:
            raise ChatTemplateLimitError(
                f"The model's chat template needed more memory than there is for {where} and was stopped.") from None
        except Exception as exc:  # a template may fail in any way jinja2 allows
            raise ChatTemplateError(
                f"The model's chat template failed on {where} ({_short(exc)}).") from exc
        finally:
            if stream is not None:
                stream.close()
            _CURRENT.reset(token)

    def default_system_prompt(self, *, should_cancel: ShouldCancel | None = None) -> str | None:
        """The system prompt the template puts in when the conversation has
        none, or None if it adds none (or cannot render a short conversation).
        Worked out on first use, then kept."""
        if self._default_system_prompt is _NOT_YET:
            try:
                self._default_system_prompt = _find_default_system_prompt(self, should_cancel)
            except Cancelled:
                self._default_system_prompt = None  # not asked again: the person chose not to wait
                raise
        return self._default_system_prompt  # type: ignore[return-value]


_NOT_YET = object()


def read_template_file(path) -> str:
    """The jinja2 source of a chat template file, checked to compile: a file
    that cannot be read or is not a template is one sentence."""
    from pathlib import Path

    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ChatTemplateError(f"There is no chat template file at {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ChatTemplateError(f"The chat template file {path} cannot be read as UTF-8 text ({exc}).") from exc
    if not source.strip():
        raise ChatTemplateError(f"The chat template file {path} is empty.")
    ChatTemplate(source)  # a template that does not compile says so now
    return source


_SENTINEL = "\u2063lmdesk-content\u2063"


@dataclass(frozen=True)
class RenderedMessage:
    """Where one message landed in a rendered conversation (character offsets):
    its turn (``start`` … ``end``, the template's markers included), its
    content, and each of its tool calls as the template wrote it."""

    role: str
    start: int
    end: int
    content_start: int
    content_end: int
    tool_calls: tuple[tuple[int, int], ...] = ()
    escaped: bool = False  # the content is written as a JSON string's inside (Llama 3.x tool results)


@dataclass(frozen=True)
class Rendered:
    text: str
    messages: tuple[RenderedMessage, ...]  # in order; the generation prompt, if any, follows the last one
    fallback: bool = False  # the tools were written by lmdesk (engine/tools.py), not by the template


def uses_tools(messages: Sequence[Message], tools: Sequence[Mapping]) -> bool:
    return bool(tools) or any(m.tool_calls or m.role == "tool" for m in messages)


def render_with_spans(template: ChatTemplate, messages: Sequence[Message], *, add_generation_prompt: bool,
                      should_cancel: ShouldCancel | None = None, tools: Sequence[Mapping] = ()) -> Rendered:
    """Render ``messages`` (and ``tools``) and tell, for each message, which
    characters its turn covers, where its content sits among the template's
    markers and where each of its tool calls was written.

    Works for every template, including those whose rendering of a
    conversation's beginning is not the beginning of its whole rendering
    (Qwen3, Llama 3.x, Phi-3.5, Gemma): the whole conversation is rendered
    once and each message's content (as written, trimmed, or JSON-escaped)
    and tool calls are found in it in order, where a render with that
    content replaced by a marker puts it; the markup between two messages is
    split where the template ends a turn (what it writes after a message
    when that message is the last one). A template without tool support gets
    lmdesk's labelled fallback (:func:`~lmdesk.engine.tools.fallback_messages`).
    Each render is bounded as :meth:`ChatTemplate.render` says;
    ``should_cancel`` can stop any of them; the template's own refusal is
    raised as it is (one sentence).
    """
    from .tools import fallback_messages, tool_call_text

    fallback = uses_tools(messages, tools) and not template.supports_tools
    if fallback:
        shown, where = fallback_messages(messages, tools, system=_takes_system(template, should_cancel))
        render_tools: Sequence[Mapping] = ()
    else:
        shown, where = list(messages), list(range(len(messages)))
        render_tools = tools

    def render(msgs: Sequence[Message], gen: bool) -> str:
        return template.render(msgs, add_generation_prompt=gen, should_cancel=should_cancel, tools=render_tools)

    text = render(shown, add_generation_prompt)
    anchors = _anchors(render, shown, text)  # one render for all, when the template lets it
    found: list[tuple[int, int, int, int, tuple[tuple[int, int], ...], bool]] = []  # first, last, content, calls
    cursor = 0
    for k, msg in enumerate(messages):
        j = where[k]
        anchor = anchors[j] if anchors is not None else _anchor(render, shown, j, text)
        content = _find_content(text, msg.content, cursor, anchor)
        if content is None and cursor:  # a template may write a message before earlier ones (Mistral's system)
            content = _find_content(text, msg.content, 0, None)
        if content is None:
            at = anchor if anchor is not None else cursor
            c_start = c_end = at
            escaped = False
        else:
            c_start, c_end, escaped = content
        calls = []
        after = c_end
        for call in msg.tool_calls:
            span = (_find_exact(text, tool_call_text(call), after) if fallback
                    else _find_call(text, call, after))
            if span is not None:
                calls.append(span)
                after = span[1]
        if not msg.content and calls:
            c_start = c_end = calls[0][0]
        first = min([c_start, *(a for a, _ in calls)])
        last = max([c_end, *(b for _, b in calls)])
        found.append((first, last, c_start, c_end, tuple(calls), escaped))
        cursor = max(cursor, last)
    # each message's turn runs from where the one before it in the text ends to where the template closes it
    order = sorted(range(len(found)), key=lambda k: (found[k][0], k))
    spans: list[RenderedMessage | None] = [None] * len(found)
    tails: dict[tuple, str] = {}  # what closes a turn, as the template writes it after a last message, by role
    start = 0
    for n, k in enumerate(order):
        first, last, c_start, c_end, calls, escaped = found[k]
        stop = found[order[n + 1]][0] if n + 1 < len(order) else len(text)
        is_last = n + 1 == len(order)
        key = (messages[k].role, bool(calls), is_last)
        if key not in tails:
            tails[key] = _tail(render, shown if is_last else shown[: where[k] + 1], text, first, last)
        end = max(start, last + _common_prefix(tails[key], text, last, stop))
        spans[k] = RenderedMessage(messages[k].role, start, end, c_start, c_end, calls, escaped)
        start = end
    return Rendered(text, tuple(spans), fallback)  # type: ignore[arg-type]


def _takes_system(template: ChatTemplate, should_cancel: ShouldCancel | None) -> bool:
    """Whether the template takes a system message (Gemma 2's refuses one)."""
    try:
        template.render([Message("system", "A"), Message("user", "B")], should_cancel=should_cancel)
    except ChatTemplateRefusal:
        return False
    return True


def _anchors(render, shown: Sequence[Message], text: str) -> list[int] | None:
    """Where each message's content goes in ``text``, from one render with a
    marker for every content: the template's text between two markers must
    be what ``text`` holds between the two contents. None when a template
    writes the conversation otherwise (it puts a message before an earlier
    one, or changes its text by what a content holds, as Qwen3 does with
    its thinking): then each message is placed on its own (:func:`_anchor`)."""
    marks = [f"\u2063lmdesk-{k}\u2063" for k in range(len(shown))]
    try:
        probed = render([dataclasses.replace(m, content=marks[k]) for k, m in enumerate(shown)], False)
    except ChatTemplateError:
        return None
    anchors = []
    p = t = 0  # where the walk is in ``probed`` and in ``text``
    for mark, msg in zip(marks, shown):
        at = probed.find(mark, p)
        if at < 0 or probed.count(mark) != 1:
            return None
        between = probed[p:at]
        if not text.startswith(between, t):
            return None
        t += len(between)
        if msg.content:
            form = _find_content(text, msg.content, t, t)
            if form is None or form[0] != t:
                return None
            t = form[1]
        anchors.append(t - (form[1] - form[0] if msg.content else 0))
        p = at + len(mark)
    return anchors


def _anchor(render, shown: Sequence[Message], j: int, text: str) -> int | None:
    """Where message ``j``'s content goes in ``text``: where a render with a
    marker for that content puts the marker, when that render agrees with
    ``text`` up to it; else None."""
    probe = [*shown[:j], dataclasses.replace(shown[j], content=_SENTINEL), *shown[j + 1 :]]
    try:
        probed = render(probe, False)
    except ChatTemplateError:
        return None
    at = probed.find(_SENTINEL)
    if at < 0 or probed[:at] != text[:at]:
        return None
    return at


def _after_thinking(content: str) -> str:
    return content.split("</think>")[-1].lstrip("\n") if "</think>" in content else ""


def _find_content(text: str, content: str, cursor: int, anchor: int | None) -> tuple[int, int, bool] | None:
    """The content as the template wrote it: as it is, trimmed, without its
    thinking (Qwen3), or as a JSON string (Llama 3.x's tool results)."""
    if not content:
        return None
    escaped_form = json.dumps(content, ensure_ascii=False)[1:-1]
    forms = [(content, False), (content.strip(), False), (_after_thinking(content), False)]
    if escaped_form != content:
        forms.append((escaped_form, True))
    forms = [(f, e) for f, e in forms if f]
    if anchor is not None:
        for form, escaped in forms:
            if text.startswith(form, anchor):
                return anchor, anchor + len(form), escaped
    for form, escaped in forms:
        at = text.find(form, cursor)
        if at >= 0:
            return at, at + len(form), escaped
    return None


def _find_exact(text: str, piece: str, cursor: int) -> tuple[int, int] | None:
    at = text.find(piece, cursor)
    return (at, at + len(piece)) if at >= 0 else None


def _find_call(text: str, call: ToolCall, cursor: int) -> tuple[int, int] | None:
    """A tool call as a template writes it: the JSON object that holds its
    name and its arguments (``{"name": …, "arguments": {…}}``)."""
    name_at = text.find(call.name, cursor)
    if name_at < 0:
        return None
    args = dict(call.arguments)
    ends = []
    for form in (json.dumps(args, ensure_ascii=False), json.dumps(args),
                 json.dumps(args, ensure_ascii=False, indent=2), json.dumps(args, ensure_ascii=False, indent=4)):
        at = text.find(form, name_at + len(call.name))
        if at >= 0:
            ends.append(at + len(form))
    if not ends:
        return None
    args_end = min(ends)
    opening = text.rfind("{", cursor, name_at)
    closing = text.find("}", args_end)
    start = opening if opening >= 0 and _NAME_KEY.fullmatch(text, opening + 1, name_at) else name_at
    # the object closes after the arguments (Mistral writes the call's id there first)
    end = closing + 1 if closing >= 0 and _AFTER_ARGS.fullmatch(text, args_end, closing) else args_end
    return start, end


_NAME_KEY = re.compile(r'\s*"name"\s*:\s*"')
_AFTER_ARGS = re.compile(r'\s*(?:,\s*"id"\s*:\s*"[^"]*"\s*)?')


def _tail(render, upto: Sequence[Message], text: str, first: int, last: int) -> str:
    """What the template writes after a message (``text[first:last]``) when
    it is the conversation's last one (``upto`` ends with it): its turn's end."""
    try:
        alone = render(upto, False)
    except ChatTemplateError:
        return ""
    if alone[:last] == text[:last]:
        return alone[last:]
    at = alone.rfind(text[first:last]) if last > first else -1
    return alone[at + last - first :] if at >= 0 else ""


def _common_prefix(tail: str, text: str, start: int, stop: int) -> int:
    """How many characters of ``text[start:stop]`` begin as ``tail`` does."""
    n = 0
    limit = min(len(tail), stop - start)
    while n < limit and tail[n] == text[start + n]:
        n += 1
    return n


def _find_default_system_prompt(template: ChatTemplate, should_cancel: ShouldCancel | None) -> str | None:
    probe = [Message("user", "Hello")]
    try:
        without = template.render(probe, should_cancel=should_cancel)
        with_sentinel = template.render([Message("system", _SENTINEL), *probe], should_cancel=should_cancel)
    except ChatTemplateError:
        return None
    if _SENTINEL not in with_sentinel:
        return None
    before, after = with_sentinel.split(_SENTINEL, 1)
    if without.startswith(before) and without.endswith(after) and len(without) >= len(before) + len(after):
        found = without[len(before) : len(without) - len(after)]
        return found or None
    return None


def default_system_prompt(template: ChatTemplate, *, should_cancel: ShouldCancel | None = None) -> str | None:
    """The system prompt a template puts in when the conversation has none,
    or None if it adds none; worked out once per template and kept."""
    return template.default_system_prompt(should_cancel=should_cancel)


_TEST_CONVERSATIONS = (
    (Message("user", "Hello"),),
    (Message("system", "Be brief."), Message("user", "Hello"), Message("assistant", "Hi."),
     Message("user", "How are you?")),
)


def check_template(source: str, bos_token: str | None = None, eos_token: str | None = None, *,
                   time_limit: float = TIME_LIMIT_SECONDS) -> str | None:
    """Whether a chat template can be used, for a model being imported: None
    if it compiles and writes a short test conversation (or refuses it on
    purpose, as a template may refuse a system message), else one sentence
    saying what is wrong. Takes at most about ``time_limit`` seconds per
    test conversation."""
    try:
        template = ChatTemplate(source, bos_token=bos_token, eos_token=eos_token, time_limit=time_limit)
    except ChatTemplateError as exc:
        return str(exc)
    first_failure = None
    for conversation in _TEST_CONVERSATIONS:
        try:
            template._render(conversation, True, None, "a short test conversation")
            return None
        except ChatTemplateRefusal:
            continue
        except ChatTemplateLimitError as exc:
            return str(exc)
        except ChatTemplateError as exc:
            first_failure = first_failure or str(exc)
    return first_failure

"""Chat templates are untrusted: every render is bounded in time, size and
depth, can be stopped, and happens only when a conversation needs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_gguf

from lmdesk.convert.gguf_import import import_gguf
from lmdesk.engine import chat_template as ct
from lmdesk.engine import family_templates
from lmdesk.engine.chat_template import (
    ChatTemplate,
    ChatTemplateError,
    ChatTemplateLimitError,
    Message,
    check_template,
    render_with_spans,
)
from lmdesk.engine.errors import Cancelled
from lmdesk.engine.model import LoadedModel
from lmdesk.engine.session import Session

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2_TEMPLATE = ROOT / "models" / "SmolLM2-135M-Instruct" / "chat_template.jinja"
TWO_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
THREE_LOOPS = ("{% for i in range(100000) %}{% for j in range(100000) %}{% for k in range(100000) %}"
               "{% endfor %}{% endfor %}{% endfor %}")
HELLO = [Message("user", "Hello")]
SLACK = 1.0  # seconds a stop may come after the limit on a busy machine (it comes within milliseconds)

TIME_SENTENCE = "The model's chat template took longer than 1 second on this conversation and was stopped."
SIZE_SENTENCE = ("The model's chat template tried to write more than 4 million characters for this "
                 "conversation and was stopped.")


def stopped_in_time(source: str, limit: float = 1.0) -> tuple[str, float]:
    template = ChatTemplate(source, time_limit=limit)
    start = time.monotonic()
    with pytest.raises(ChatTemplateLimitError) as caught:
        template.render(HELLO, add_generation_prompt=True)
    return str(caught.value), time.monotonic() - start


# -- time ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", [TWO_LOOPS, THREE_LOOPS], ids=["two loops", "three loops"])
def test_nested_loops_are_stopped_at_the_time_limit(source: str) -> None:
    message, elapsed = stopped_in_time(source)
    assert message == TIME_SENTENCE
    assert 1.0 <= elapsed < 1.0 + SLACK


@pytest.mark.parametrize("source", [
    # loops over long strings, not ranges
    "{% for a in 'x' * 3000000 %}{% for b in 'x' * 3000000 %}{% endfor %}{% endfor %}",
    # a macro that calls itself twice: a tree of 2**40 calls, never too deep
    "{% macro g(n) %}{% if n < 40 %}{{ g(n + 1) }}{{ g(n + 1) }}{% endif %}{% endmacro %}{{ g(0) }}",
    # work inside filters, loop after loop
    "{% for i in range(100000) %}{{ range(100000) | sum }}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ loop.cycle('a', 'b') if false }}{% endfor %}"
    "{% endfor %}",
], ids=["strings", "macro tree", "sum", "cycle"])
def test_other_endless_work_is_stopped_at_the_time_limit(source: str) -> None:
    message, elapsed = stopped_in_time(source)
    assert message == TIME_SENTENCE
    assert elapsed < 1.0 + SLACK


def test_the_time_limit_is_five_seconds_unless_told() -> None:
    template = ChatTemplate("{{ 'hi' }}")
    assert template.time_limit == 5.0
    with pytest.raises(ChatTemplateLimitError, match="longer than 1.5 seconds"):
        ChatTemplate(TWO_LOOPS, time_limit=1.5).render(HELLO)


def test_should_cancel_stops_a_render() -> None:
    template = ChatTemplate(THREE_LOOPS, time_limit=60)
    start = time.monotonic()
    with pytest.raises(Cancelled):
        template.render(HELLO, should_cancel=lambda: time.monotonic() - start > 0.3)
    assert time.monotonic() - start < 0.3 + SLACK


def test_should_cancel_stops_render_with_spans_and_is_not_asked_by_quick_renders() -> None:
    asked = []

    def never() -> bool:
        asked.append(1)
        return False

    quick = ChatTemplate(family_templates.CHATML.source)
    render_with_spans(quick, [Message("user", "hi"), Message("assistant", "yo")], add_generation_prompt=True,
                      should_cancel=never)
    assert asked == []  # a render of a few milliseconds never calls it (Stop's own count stays as it was)

    start = time.monotonic()
    with pytest.raises(Cancelled):
        render_with_spans(ChatTemplate(TWO_LOOPS, time_limit=60), HELLO, add_generation_prompt=True,
                          should_cancel=lambda: time.monotonic() - start > 0.3)
    assert time.monotonic() - start < 0.3 + SLACK


# -- size ---------------------------------------------------------------------------------------
HUGE = [
    "{{ 'x' * 10**8 }}",
    "{% for i in range(130) %}{{ 'x' * 1000000 }}{% endfor %}",
    "{{ '%130000000s' | format('x') }}",
    "{% set s = 'x' * 3000000 %}"
    "{{ '%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s' | format(s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s,s) }}",
    "{{ 'x' | center(10**9) }}",
    "{{ 'x'.center(10**9) }}",
    "{{ '{:>130000000}'.format('x') }}",
    "{{ '%*s' % (130000000, 'x') }}",
    "{{ ('a\n' * 1000000) | indent(100) }}",
    "{{ range(100000) | join('x' * 1300) }}",
    "{{ ('x' * 1000000) | replace('x', 'y' * 130) }}",
    "{{ ('x' * 1000000).replace('x', 'y' * 130) }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
    "{% set s = 'x' * 3000000 %}{{ [s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s, s] }}",
    "{{ ([['x' * 1000] * 1000] * 130) | tojson }}",
]


@pytest.mark.parametrize("source", HUGE)
def test_a_huge_text_is_refused_with_one_sentence(source: str) -> None:
    with pytest.raises(ChatTemplateLimitError) as caught:
        ChatTemplate(source).render(HELLO)
    assert str(caught.value) == SIZE_SENTENCE


def test_many_large_values_are_refused_before_they_fill_the_memory() -> None:
    # each value is allowed, but together they would hold 130 million characters
    source = "{% set s = 'x' * 3000000 %}{{ [" + ", ".join(f"s ~ '{i}'" for i in range(43)) + "] | length }}"
    with pytest.raises(ChatTemplateLimitError, match="built more than 64 million characters of text"):
        ChatTemplate(source).render(HELLO)


@pytest.mark.parametrize("source,sentence", [
    ("{{ 10 ** 100000000 }}", "The model's chat template tried to compute a number of more than 19,728 digits "
                              "for this conversation and was stopped."),
    ("{% set ns = namespace(n=2) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
     "The model's chat template tried to compute a number of more than 19,728 digits for this conversation "
     "and was stopped."),
    ("{{ range(10**9) | length }}", "The model's chat template asked for more than 100,000 numbers at once for "
                                    "this conversation and was stopped."),
    ("{{ ('a-' * 1000000) | wordwrap(5) }}", "The model's chat template tried to rework more than 250,000 "
                                             "characters of text at once for this conversation and was stopped."),
])
def test_other_huge_work_is_refused_with_one_sentence(source: str, sentence: str) -> None:
    with pytest.raises(ChatTemplateLimitError) as caught:
        ChatTemplate(source).render(HELLO)
    assert str(caught.value) == sentence


MEMORY_PROBE = r"""
import json, resource, sys
from lmdesk.engine.chat_template import ChatTemplate, ChatTemplateError, Message

def peak_mb():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10

if sys.platform.startswith("linux"):  # the code before the fix gets MemoryError instead of filling the machine
    pages = int(open("/proc/self/statm").read().split()[0])
    room = pages * resource.getpagesize() + 1500 * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (room, room))
ChatTemplate("{{ 'warm' | upper }}{{ 'x' * 3 }}").render([Message("user", "hi")])
before = peak_mb()
results = []
for source in json.loads(sys.argv[1]):
    try:
        ChatTemplate(source).render([Message("user", "Hello")])
        results.append("rendered")
    except ChatTemplateError as exc:
        results.append(str(exc))
    except MemoryError:
        results.append("MemoryError")
print(json.dumps({"results": results, "grew_mb": peak_mb() - before}))
"""


def test_refusing_a_huge_text_does_not_allocate_it() -> None:
    sources = HUGE[:8]  # 'x' * 10**8, 130 big strings, format, center, str.format, %: each about 130 MB
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, json.dumps(sources)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["results"] == [SIZE_SENTENCE] * len(sources)
    assert report["grew_mb"] < 40  # the refused texts would be 100 MB and more each


# -- depth --------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", [
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}",
], ids=["macro", "recursive loop", "nested lists"])
def test_endless_recursion_is_one_sentence(source: str) -> None:
    with pytest.raises(ChatTemplateLimitError) as caught:
        ChatTemplate(source).render(HELLO)
    assert str(caught.value) == ("The model's chat template kept calling itself on this conversation "
                                 "(it went too deep) and was stopped.")


def test_a_template_nested_too_deeply_to_read_is_one_sentence() -> None:
    with pytest.raises(ChatTemplateError) as caught:
        ChatTemplate("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")
    assert str(caught.value) == "The model's chat template is nested too deeply to be read."


def test_a_long_message_of_the_template_itself_is_cut_short() -> None:
    with pytest.raises(ChatTemplateError) as caught:
        ChatTemplate("{{ raise_exception('no! ' * 100000) }}").render(HELLO)
    message = str(caught.value)
    assert message.startswith("The model's chat template refused this conversation: no! no! ")
    assert len(message) < 400


# -- real templates are untouched --------------------------------------------------------------
CONVERSATION = [Message("system", "Be brief."), Message("user", "Hi"), Message("assistant", "Hello!"),
                Message("user", "2+2? {{ not a template }} 100%")]
SMOLLM2_SOURCE = (SMOLLM2_TEMPLATE.read_text(encoding="utf-8") if SMOLLM2_TEMPLATE.is_file() else
                  # the same template, as SmolLM2-135M-Instruct's tokenizer_config.json has it
                  "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                  "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                  "<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + "
                  "'<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
                  "{% endif %}")
SMOLLM2_DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_smollm2s_template_renders_exactly_as_before() -> None:
    template = ChatTemplate(SMOLLM2_SOURCE, bos_token="<|im_start|>", eos_token="<|im_end|>")
    assert template.render(CONVERSATION, add_generation_prompt=True) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\n2+2? {{ not a template }} 100%<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert template.render(CONVERSATION[1:2]) == (
        f"<|im_start|>system\n{SMOLLM2_DEFAULT}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n")
    assert ct.default_system_prompt(template) == SMOLLM2_DEFAULT
    rendered = render_with_spans(template, CONVERSATION[:2], add_generation_prompt=True)
    first = "<|im_start|>system\nBe brief.<|im_end|>\n"
    opening = "<|im_start|>user\n"
    assert [(m.role, m.start, m.end, m.content_start, m.content_end) for m in rendered.messages] == [
        ("system", 0, len(first), len("<|im_start|>system\n"), len("<|im_start|>system\nBe brief.")),
        ("user", len(first), len(first) + len(opening) + len("Hi<|im_end|>\n"),
         len(first) + len(opening), len(first) + len(opening) + 2),
    ]


def test_gemmas_format_renders_exactly_as_before() -> None:
    template = ChatTemplate(family_templates.GEMMA.source, bos_token="<bos>", eos_token="<eos>")
    assert template.render(CONVERSATION, add_generation_prompt=True) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\n2+2? {{ not a template }} 100%<end_of_turn>\n"
        "<start_of_turn>model\n"
    )


def test_the_filters_templates_use_still_work() -> None:
    source = ("{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}"
              "{% set ns.s = ns.s ~ m.content | trim %}{{ loop.index }}/{{ loop.length }}:{{ m.role | upper }}"
              "{{ '%s-%d' | format(m.role, loop.index0) }}{{ '{}!'.format(m.role) }}{{ m | tojson }}"
              "{% if not loop.last %}|{% endif %}{% endfor %} {{ ns.n }} {{ ns.s }} "
              "{{ messages | map(attribute='role') | join(',') }} {{ range(5)[1:3] | list }} {{ range(3) | reverse "
              "| list }} {{ 2 ** 10 }} {{ '%3s|' % 'a' }} {{ [[1], [2]] | sum(start=[]) }} {{ messages | tojson(indent=1) }}"
              "{% macro f(x) %}<{{ x }}>{% endmacro %}{{ f('q') }}"
              "{% for x in [[1, [2]], 3] recursive %}{{ x if x is number else loop(x) }}{% endfor %}")
    out = ChatTemplate(source).render([Message("system", " a "), Message("user", "b")])
    assert out == (
        '1/2:SYSTEMsystem-0system!{"role": "system", "content": " a "}|'
        '2/2:USERuser-1user!{"role": "user", "content": "b"} 2 ab system,user [1, 2] [2, 1, 0] 1024   a| [1, 2] '
        '[\n {\n  "role": "system",\n  "content": " a "\n },\n {\n  "role": "user",\n  "content": "b"\n }\n]'
        "<q>123"
    )


def test_a_real_template_renders_a_long_conversation_well_within_the_limit() -> None:
    template = ChatTemplate(SMOLLM2_SOURCE, time_limit=1.0)
    long = [Message("user" if i % 2 == 0 else "assistant", "word " * 100) for i in range(800)]
    start = time.monotonic()
    out = template.render(long, add_generation_prompt=True)
    assert time.monotonic() - start < 0.5
    assert out.count("<|im_start|>user\n") == 400 and len(out) > 400_000


def test_a_conversation_longer_than_the_limit_is_not_blamed_on_the_template() -> None:
    huge = [Message("user", "x" * (ct.MAX_CHARS + 10))]
    out = ChatTemplate(family_templates.CHATML.source).render(huge)
    assert out == "<|im_start|>user\n" + "x" * (ct.MAX_CHARS + 10) + "<|im_end|>\n"


# -- checking a template at import ---------------------------------------------------------------
def test_check_template_passes_real_templates() -> None:
    assert check_template(SMOLLM2_SOURCE, "<|im_start|>", "<|im_end|>") is None
    for family in family_templates.FAMILIES:
        assert check_template(family.source, "<s>", "</s>") is None
    # a template may refuse a system message on purpose: that is not a broken template
    refuses_system = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system role') }}"
                      "{% endif %}{{ m.content }}{% endfor %}")
    assert check_template(refuses_system, None, None) is None


def test_check_template_reports_a_template_it_cannot_render() -> None:
    start = time.monotonic()
    assert check_template(TWO_LOOPS, None, None, time_limit=0.5) == (
        "The model's chat template took longer than 0.5 seconds on a short test conversation and was stopped.")
    assert time.monotonic() - start < 0.5 + SLACK
    assert check_template("{{ 'x' * 10**9 }}", None, None) == (
        "The model's chat template tried to write more than 4 million characters for a short test conversation "
        "and was stopped.")
    assert check_template("{% for m in messages %}", None, None).startswith(
        "The model's chat template is not valid (")
    assert check_template("{{ messages[0].content.nope() }}", None, None).startswith(
        "The model's chat template failed on a short test conversation (")


# -- a session renders only when a conversation needs it -------------------------------------------
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tiny-template")
    import_gguf(write_tiny_gguf(tmp / "tiny.gguf", n_layer=1, d_model=32, n_head=2, n_head_kv=1, ctx=64),
                tmp / "model")
    return tmp / "model"


def test_a_session_does_not_render_its_template_until_a_conversation_needs_it(tiny_folder, monkeypatch) -> None:
    renders = []
    real = ChatTemplate.render

    def counting(self, *args, **kwargs):
        renders.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ChatTemplate, "render", counting)
    s = Session(LoadedModel(tiny_folder, threads=1, chat_template=SMOLLM2_SOURCE))
    s.load_text("the cat sat")  # what `lmdesk score` does
    assert renders == []
    assert s.system_prompt == SMOLLM2_DEFAULT
    assert s.default_system_prompt == SMOLLM2_DEFAULT
    made = len(renders)
    assert made > 0
    assert s.system_prompt == SMOLLM2_DEFAULT and len(renders) == made  # worked out once, then kept
    s.use_template(family_templates.CHATML.source)
    assert len(renders) == made
    assert s.system_prompt is None and s.default_system_prompt is None  # ChatML adds none
    s.system_prompt = "Be kind."
    assert s.system_prompt == "Be kind."


def test_a_session_with_an_endless_template_is_made_at_once_and_scores_text(tiny_folder) -> None:
    model = LoadedModel(tiny_folder, threads=1, chat_template=THREE_LOOPS)
    start = time.monotonic()
    s = Session(model)
    s.load_text("the cat sat")
    assert time.monotonic() - start < 1.0
    assert len(s.doc) > 0 and s.template is not None
    s.template.time_limit = 0.5
    start = time.monotonic()
    assert s.default_system_prompt is None  # the template cannot say: there is none
    assert s.default_system_prompt is None
    assert time.monotonic() - start < 0.5 + SLACK  # tried once, not twice
    s.reset()
    with pytest.raises(ChatTemplateLimitError, match="took longer than 0.5 seconds"):
        s.end_turn("hello")


def test_strftime_now_writes_the_date_and_refuses_a_huge_format() -> None:
    from datetime import datetime

    fixed = ChatTemplate("{{ strftime_now('%d %b %Y') }}", today=lambda: datetime(2024, 7, 26))
    assert fixed.render(HELLO) == "26 Jul 2024"
    huge = ChatTemplate("{{ strftime_now('%c' * 100000) }}")
    started = time.monotonic()
    with pytest.raises(ChatTemplateLimitError, match=r"^The model's chat template asked for a date written with "
                                                     r"more than 256 characters of format for this conversation"):
        huge.render(HELLO)
    assert time.monotonic() - started < 1


def test_templates_get_tools_and_messages_in_the_chat_form() -> None:
    from lmdesk.engine.conversation import ToolCall

    source = ("{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% for m in messages %}{{ m.role }}:"
              "{% if 'tool_calls' in m %}{% for c in m.tool_calls %}{{ c.function.name }}"
              "{{ c.function.arguments | tojson }}{% endfor %}{% else %}{{ m.content }}{% endif %}"
              "{% if m.name is defined %}({{ m.name }}){% endif %};{% endfor %}")
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
    text = ChatTemplate(source).render(
        [Message("user", "Paris?"), Message("assistant", "", (ToolCall("get_weather", {"city": "Paris"}),)),
         Message("tool", "18", name="get_weather")], tools=[tool])
    assert text == '[get_weather]user:Paris?;assistant:get_weather{"city": "Paris"};tool:18(get_weather);'
    assert ChatTemplate("{{ tools is none }}").render(HELLO) == "True"  # no tools: None, as transformers passes


def test_spans_never_collapse_when_a_prefix_is_written_differently() -> None:
    # the last assistant turn keeps its thinking, earlier ones lose it (as Qwen3 does): no prefix is a prefix
    source = ("{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' and not loop.last %}"
              "{{ m.content.split('</think>')[-1] }}{% else %}{{ m.content }}{% endif %}</{{ m.role }}>{% endfor %}"
              "{% if add_generation_prompt %}<assistant>{% endif %}")
    conv = [Message("user", "Q1"), Message("assistant", "<think>hm</think>A1"), Message("user", "Q2")]
    rendered = render_with_spans(ChatTemplate(source), conv, add_generation_prompt=True)
    assert rendered.text == "<user>Q1</user><assistant>A1</assistant><user>Q2</user><assistant>"
    got = [(s.role, rendered.text[s.start : s.end], rendered.text[s.content_start : s.content_end])
           for s in rendered.messages]
    assert got == [("user", "<user>Q1</user>", "Q1"), ("assistant", "<assistant>A1</assistant>", "A1"),
                   ("user", "<user>Q2</user>", "Q2")]

"""The command line: score and generate, and their errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_gguf

from lmdesk.convert.gguf_import import import_gguf


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    import_gguf(write_tiny_gguf(tmp / "tiny.gguf", ctx=128), tmp / "model")
    return tmp / "model"


def lmdesk(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmdesk", *args], input=stdin, capture_output=True, timeout=300)


def assert_clear_error(proc: subprocess.CompletedProcess, words: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("lmdesk: ") and words in lines[0], err


def test_score_json(tiny_dir: Path, tmp_path: Path) -> None:
    f = tmp_path / "t.txt"
    f.write_text("the cat sat<|im_end|>", encoding="utf-8")
    proc = lmdesk("score", "--model", str(tiny_dir), "--top", "3", "--json", str(f))
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    toks = out["tokens"]
    assert [t["text"] for t in toks][-1] == "<|im_end|>" and toks[-1]["id"] == 2
    assert "".join(t["text"] for t in toks) == "the cat sat<|im_end|>"
    assert toks[0]["logprob"] is None and toks[0]["bits"] is None and toks[0]["top"] == []
    for t in toks[1:]:
        assert t["bits"] == pytest.approx(-t["logprob"] / math.log(2))
        assert len(t["top"]) == 3 and t["rank"] >= 1 and t["entropy"] > 0
        assert t["top"][0]["prob"] >= t["top"][1]["prob"]
    total = sum(t["bits"] for t in toks[1:])
    assert out["total_bits"] == pytest.approx(total)
    assert out["bits_per_token"] == pytest.approx(total / (len(toks) - 1))
    assert out["perplexity"] == pytest.approx(2 ** out["bits_per_token"])


# commas, quotes, a new line, a tab, leading spaces, a letter of two bytes (two tokens), a special token
TRICKY = ' the, "cat"\n\tsat  é "a,b"<|im_end|>'


def score_csv(tiny_dir: Path, text: str, *extra: str) -> tuple[str, list[dict]]:
    import csv
    import io

    proc = lmdesk("score", "--model", str(tiny_dir), "--csv", *extra, "-", stdin=text.encode())
    assert proc.returncode == 0, proc.stderr.decode()
    assert not proc.stdout.startswith(b"\xef\xbb\xbf")  # plain UTF-8 on standard output: no BOM
    out = proc.stdout.decode("utf-8")
    return out, list(csv.DictReader(io.StringIO(out, newline="")))


def test_score_csv_is_the_json_table(tiny_dir: Path) -> None:
    out, rows = score_csv(tiny_dir, TRICKY)
    assert out.split("\n")[0] == "position,id,text,prob,logprob,bits,rank,entropy"
    proc = lmdesk("score", "--model", str(tiny_dir), "--json", "-", stdin=TRICKY.encode())
    assert proc.returncode == 0, proc.stderr.decode()
    toks = json.loads(proc.stdout)["tokens"]
    assert len(rows) == len(toks) > 10
    for n, (row, tok) in enumerate(zip(rows, toks)):
        assert int(row["position"]) == n == tok["position"] and int(row["id"]) == tok["id"]
        assert row["text"] == tok["text"]
        for key in ("prob", "logprob", "bits", "entropy"):
            assert (row[key] == "" and tok[key] is None) if n == 0 else float(row[key]) == tok[key], (n, key)
        assert (row["rank"] == "" and tok["rank"] is None) if n == 0 else int(row["rank"]) == tok["rank"]
        if n:
            assert float(row["bits"]) == pytest.approx(-float(row["logprob"]) / math.log(2), rel=1e-12)
            assert float(row["prob"]) == pytest.approx(math.exp(float(row["logprob"])), rel=1e-12)
    # the text column reads back as the text; the two bytes of "é" are written as bytes, one token each
    texts = [r["text"] for r in rows]
    assert "<0xC3>" in texts and "<0xA9>" in texts
    assert "".join(texts).replace("<0xC3><0xA9>", "é") == TRICKY
    assert out.split("\n")[1].endswith(',"","","","",""')  # the first token: nothing predicted it


def test_score_csv_numbers_worked_out_independently(tiny_dir: Path) -> None:
    """The CSV's numbers against numpy on the reference forward pass of the GGUF file (no lmdesk)."""
    import numpy as np
    from reference import ReferenceModel
    from tokenizers import Tokenizer

    text = "the cat sat on the mat, and what is the capital of France?"
    _, rows = score_csv(tiny_dir, text)
    ids = Tokenizer.from_file(str(tiny_dir / "tokenizer.json")).encode(text).ids
    assert [int(r["id"]) for r in rows] == ids
    logits = ReferenceModel(tiny_dir.parent / "tiny.gguf").forward(ids)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    lp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    for j in range(1, len(ids)):
        dist, actual, row = lp[j - 1], lp[j - 1, ids[j]], rows[j]
        assert float(row["logprob"]) == pytest.approx(actual, abs=2e-3)
        assert float(row["bits"]) == pytest.approx(-actual / math.log(2), abs=3e-3)
        assert float(row["prob"]) == pytest.approx(math.exp(actual), rel=3e-3)
        assert float(row["entropy"]) == pytest.approx(-(np.exp(dist) * dist).sum() / math.log(2), abs=3e-3)
        assert (dist > actual + 1e-3).sum() + 1 <= int(row["rank"]) <= (dist > actual - 1e-3).sum() + 1


def test_score_csv_and_json_together_is_one_sentence(tiny_dir: Path) -> None:
    assert_clear_error(lmdesk("score", "--model", str(tiny_dir), "--csv", "--json", "-", stdin=b"the cat"),
                       "--csv and --json")


def test_score_table_from_stdin(tiny_dir: Path) -> None:
    proc = lmdesk("score", "--model", str(tiny_dir), "-", stdin="the  cat\n".encode())
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "bits per token" in text and "perplexity" in text
    assert "↵" in text  # the newline is shown, not printed


def test_generate_is_reproducible(tiny_dir: Path) -> None:
    args = ("generate", "--model", str(tiny_dir), "--max-new-tokens", "8", "--seed", "5", "--json", "the cat")
    a, b = lmdesk(*args), lmdesk(*args)
    assert a.returncode == 0, a.stderr.decode()
    assert b.returncode == 0, b.stderr.decode()
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    assert ja["tokens"] == jb["tokens"] and ja["seed"] == 5
    assert 1 <= len(ja["tokens"]) <= 8
    assert ja["finished"] in ("stop", "length")


def test_generate_chat_greedy(tiny_dir: Path) -> None:
    proc = lmdesk("generate", "--model", str(tiny_dir), "--chat", "--temperature", "0", "--max-new-tokens", "4",
                  "--json", "hello")
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["prompt_tokens"] > 3 and out["seed"] is None
    assert 1 <= len(out["tokens"]) <= 4  # all() of no tokens would pass too
    assert all(t["rank"] == 1 and t["top"][0]["id"] == t["id"] for t in out["tokens"])
    start = out["prompt_tokens"]
    assert [t["position"] for t in out["tokens"]] == list(range(start, start + len(out["tokens"])))


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("missing", "There is no file named"),
        ("binary", "is not UTF-8 text"),
        ("empty", "is empty"),
        ("long", "reads at most 128"),
    ],
)
def test_score_errors(tiny_dir: Path, tmp_path: Path, setup: str, words: str) -> None:
    f = tmp_path / "input.txt"
    if setup == "binary":
        f.write_bytes(b"caf\xe9 \xff\xfe")
    elif setup == "empty":
        f.write_text("  \n")
    elif setup == "long":
        f.write_text("the cat sat on the mat. " * 80)
    assert_clear_error(lmdesk("score", "--model", str(tiny_dir), str(f)), words)


def test_generate_errors(tiny_dir: Path, tmp_path: Path) -> None:
    assert_clear_error(lmdesk("generate", "--model", str(tiny_dir), "  "), "prompt is empty")
    assert_clear_error(lmdesk("generate", "--model", str(tiny_dir), "--top-p", "0", "x"), "Top-p")
    assert_clear_error(lmdesk("score", "--model", str(tmp_path), "-", stdin=b"hi"), "is empty, so it holds no model")


@pytest.mark.realmodel
def test_real_score_known_answer(real_model_dir: Path) -> None:
    proc = lmdesk("score", "--model", str(real_model_dir), "--json", "-", stdin=b"The capital of France is Paris.")
    out = json.loads(proc.stdout)
    texts = [t["text"] for t in out["tokens"]]
    assert texts == ["The", " capital", " of", " France", " is", " Paris", "."]
    paris = out["tokens"][5]
    assert paris["rank"] == 1 and 0.6 < math.exp(paris["logprob"]) < 0.95
    assert out["tokens"][5]["top"][0]["text"] == " Paris"


@pytest.mark.realmodel
def test_the_smoke_test_passes_from_source(real_model_dir: Path) -> None:
    import os

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-m", "lmdesk", "--smoke-test"], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("lmdesk ") and "smoke test passed" in out.stdout and "→ ' Paris'" in out.stdout


# a template of the teacher's own: every turn after its role in square brackets
BRACKETS = ("{% for m in messages %}{{ '[[ ' + m['role'] + ' ]] ' + m['content'] + '\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '[[ assistant ]] ' }}{% endif %}")


def test_a_chat_template_of_ones_own(tiny_dir: Path, tmp_path: Path) -> None:
    """--chat-template FILE on a command that renders a conversation, and on
    import-gguf, where the folder keeps it (with where it came from)."""
    template = tmp_path / "brackets.jinja"
    template.write_text(BRACKETS, encoding="utf-8")
    proc = lmdesk("generate", "--model", str(tiny_dir), "--chat-template", str(template), "--chat",
                  "--max-new-tokens", "1", "--temperature", "0", "--json", "hi")
    assert proc.returncode == 0, proc.stderr.decode()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    bracketed = len(tok.encode("[[ user ]] hi\n[[ assistant ]] ").ids)
    chatml = len(tok.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n").ids)
    assert bracketed != chatml
    assert json.loads(proc.stdout)["prompt_tokens"] == bracketed

    out = tmp_path / "own"
    proc = lmdesk("import-gguf", str(write_tiny_gguf(tmp_path / "t.gguf", ctx=128, chat_template=None)),
                  "--out", str(out), "--chat-template", str(template))
    assert proc.returncode == 0, proc.stderr.decode()
    assert (out / "chat_template.jinja").read_text(encoding="utf-8") == BRACKETS
    assert json.loads((out / "manifest.json").read_text(encoding="utf-8"))["chat_template_origin"] == "given at import"

    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}", encoding="utf-8")
    assert_clear_error(lmdesk("score", "--model", str(tiny_dir), "--chat-template", str(bad), "-", stdin=b"x"),
                       "chat template is not valid")
    assert_clear_error(lmdesk("score", "--model", str(tiny_dir), "--chat-template", str(tmp_path / "none.jinja"),
                              "-", stdin=b"x"), "There is no chat template file")


@pytest.mark.parametrize("args,words", [
    (["generate", "--seed", "-5", "hi"], "--seed must be a whole number from 0"),
    (["generate", "--temperature", "nan", "hi"], "--temperature must be a number from 0"),
    (["generate", "--top-p", "nan", "hi"], "Top-p must be above 0"),
    (["score", "--threads", "1000", "-"], "--threads must be from 1 to"),
    (["score", "--top", "0", "-"], "--top must be from 1 to 1000"),
])
def test_numbers_that_make_no_sense_are_one_sentence(tiny_dir: Path, args: list[str], words: str) -> None:
    assert_clear_error(lmdesk(*args[:1], "--model", str(tiny_dir), *args[1:], stdin=b"the cat"), words)


def test_a_reader_that_stops_early_gets_no_traceback(tiny_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "long.txt"
    text.write_text("the cat sat on the mat. " * 6, encoding="utf-8")
    proc = subprocess.run(f"'{sys.executable}' -m lmdesk score --model '{tiny_dir}' '{text}' | head -2",
                          shell=True, capture_output=True, timeout=300)
    assert proc.stderr.decode() == ""
    assert len(proc.stdout.decode().splitlines()) == 2


def test_import_into_a_read_only_folder_is_one_sentence(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:  # root writes anywhere; make the folder a file's child instead
        blocked = tmp_path / "a-file"
        blocked.write_text("x", encoding="utf-8")
        out = blocked / "model"
    else:
        blocked = tmp_path / "ro"
        blocked.mkdir()
        blocked.chmod(0o500)
        out = blocked / "model"
    proc = lmdesk("import-gguf", str(write_tiny_gguf(tmp_path / "t.gguf", ctx=128)), "--out", str(out))
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]  # after the progress line
    assert last.startswith("lmdesk: Cannot ") and str(blocked) in last and last.endswith("."), err


# -- conversations as JSON (issue 13) -----------------------------------------------------------------
CONVERSATION = {"messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "the cat"},
    {"role": "assistant", "content": "sat on the mat"},
]}


def test_score_a_conversation_tells_each_tokens_message(tiny_dir: Path, tmp_path: Path) -> None:
    from tiny_gguf import CHATML_TEMPLATE
    from transformers.utils.chat_template_utils import render_jinja_template

    f = tmp_path / "c.json"
    f.write_text(json.dumps(CONVERSATION), encoding="utf-8")
    proc = lmdesk("score", "--model", str(tiny_dir), "--conversation", str(f), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    assert out["messages"] == CONVERSATION["messages"]  # read back from the document's tokens
    toks = out["tokens"]
    # the document is the template's rendering of the conversation (the oracle: transformers)
    expected, _ = render_jinja_template([CONVERSATION["messages"]], chat_template=CHATML_TEMPLATE)
    assert "".join(t["text"] for t in toks) == expected[0]
    for k, m in enumerate(CONVERSATION["messages"]):
        assert "".join(t["text"] for t in toks if t["message"] == k) == m["content"]
        assert {t["role"] for t in toks if t["message"] == k} == {m["role"]}
    markup = [t["text"] for t in toks if t["message"] is None]
    assert "".join(markup) == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|im_end|>\n" \
                              "<|im_start|>assistant\n<|im_end|>\n"
    assert out["total_bits"] == pytest.approx(sum(t["bits"] for t in toks[1:]))


def test_generate_continues_a_conversation_and_parses_its_tool_call(tiny_dir: Path, tmp_path: Path) -> None:
    conv = {"messages": [{"role": "user", "content": "cat?"},
                         {"role": "assistant",
                          "content": '<tool_call>{"name": "find", "arguments": {"animal": "cat"}}</tool_call>'}]}
    f = tmp_path / "c.json"
    f.write_text(json.dumps(conv), encoding="utf-8")
    proc = lmdesk("generate", "--model", str(tiny_dir), "--conversation", str(f), "--json",
                  "--max-new-tokens", "1", "--temperature", "0")
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout)
    # the assistant's turn was continued (not closed, no new turn opened) ...
    assert out["prompt_tokens"] > 0 and len(out["tokens"]) == 1
    # ... and its call is reported as a parsed message
    message = out["message"]
    assert message["role"] == "assistant"
    assert message["tool_calls"] == [{"type": "function", "function": {"name": "find", "arguments": {"animal": "cat"}}}]


@pytest.mark.parametrize("args, content, words", [
    (["score", "--conversation", "{f}"], '{"messages": [', "c.json is not valid JSON (line 1, column 15)."),
    (["score", "--conversation", "{f}"], '{"messages": []}', "c.json holds no messages"),
    (["score", "--conversation", "{f}", "other.txt"], '{"messages": []}', "not both"),
    (["generate", "--conversation", "{f}", "a prompt"], '{"messages": []}', "not both"),
    (["score", "--conversation", "{f}"], '{"messages": [{"role": "bot", "content": "x"}]}', "has the role 'bot'"),
])
def test_a_bad_conversation_on_the_command_line_is_one_sentence(tiny_dir: Path, tmp_path: Path, args: list[str],
                                                                content: str, words: str) -> None:
    f = tmp_path / "c.json"
    f.write_text(content, encoding="utf-8")
    proc = lmdesk(*[a.replace("{f}", str(f)) for a in args], "--model", str(tiny_dir))
    assert_clear_error(proc, words)

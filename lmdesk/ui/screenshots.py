"""Make the README's screenshots from the real window and the default model.

    xvfb-run -a -s "-screen 0 1280x800x24" python -m lmdesk.ui.screenshots [--out resources/screenshots]

Drives the window as a student would: ends a turn, picks ten tokens from the
chart, samples one token (the Sampling tab), lets the model write a story,
clicks a token, selects a span, looks inside the model at that token (the
Inside tab), and finally shows projector mode at 1024 × 768.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lmdesk.ui.screenshots")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "resources" / "screenshots"))
    parser.add_argument("--model", default=None, help="model folder (default: the prepared default model)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv)
    win = MainWindow(model_folder=args.model, threads=2)
    win.resize(1280, 800)
    win.show()

    def wait(condition, seconds: float = 60.0) -> None:
        end = time.time() + seconds
        while not condition():
            if time.time() > end:
                raise SystemExit("the window did not get there in time")
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
            time.sleep(0.01)

    def settle(ms: int = 400) -> None:
        end = time.time() + ms / 1000
        while time.time() < end:
            app.processEvents()
            time.sleep(0.01)
        wait(lambda: not win.busy)

    def shot(name: str) -> None:
        settle(350)
        win.grab().save(str(out / f"{name}.png"))
        print(out / f"{name}.png")

    wait(lambda: win.info is not None)
    settle()
    win.message.setPlainText("Tell me a short story about a robot who learns to paint.")
    win.end_turn.click()
    wait(lambda: len(win.state.tokens) > 0)
    shot("1-after-end-turn")
    for _ in range(10):
        n = len(win.state.tokens)
        win.dist.click_bar(0)
        wait(lambda n=n: len(win.state.tokens) == n + 1)
        settle(120)
    shot("2-ten-greedy-picks")
    win.seed.setValue(7)
    win.fixed_seed.setChecked(True)
    settle()
    win.sample_step.click()  # the Sampling tab: how that token was drawn
    wait(lambda: win.sampling_view.drawn is not None)
    shot("2b-sample-one-token")
    win.right_tabs.setCurrentIndex(0)
    win.temperature.setValue(0.8)
    win.max_tokens.setValue(120)
    settle()
    win.generate.click()
    wait(lambda: win.busy, 10)
    wait(lambda: not win.busy, 120)
    index = len(win.state.tokens) // 2 + 10
    win.on_token_clicked(index)
    shot("3-story-with-a-token-selected")
    win.on_span(index - 8, index + 12)
    shot("4-span-selected")
    win.on_token_clicked(index)
    win.right_tabs.setCurrentWidget(win._inside_page)  # the Inside tab: the logit lens and the attention
    wait(lambda: win.inside_view.shown is not None and win.inside_view.shown.inspection.position == index)
    win.inside_view.layer.setValue(12)
    shot("6-inside-the-model")
    win.right_tabs.setCurrentIndex(0)
    win.resize(1024, 768)
    win.act_projector.setChecked(True)
    shot("5-projector-1024x768")
    win.act_projector.setChecked(False)
    win.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Starting the window: the application object, logging, the main window."""

from __future__ import annotations

import logging
import os
import sys

from .. import __version__
from ..engine.paths import resources_dir, user_data_dir


def setup_logging() -> None:
    """Log to a file in the user's data folder (a windowed app has no console)."""
    folder = user_data_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(folder / "lmdesk.log", encoding="utf-8")
    except OSError:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


ICON = "icons/lmdesk.svg"  # under resources/: three token chips colored by surprise, ranked like the chart


def application_icon():
    """The icon of every lmdesk window (and, on Linux, of its task bar entry)."""
    from PySide6.QtGui import QIcon

    return QIcon(str(resources_dir() / ICON))


def run(model_folder: str | None = None, threads: int | None = None, chat_template: str | None = None) -> int:
    from PySide6.QtWidgets import QApplication

    from .fonts import install_fallback_fonts
    from .main_window import MainWindow

    setup_logging()
    logging.getLogger(__name__).info("lmdesk %s starting", __version__)
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("lmdesk")
    app.setApplicationVersion(__version__)
    app.setWindowIcon(application_icon())
    install_fallback_fonts()
    window = MainWindow(model_folder=model_folder, threads=threads, chat_template=chat_template,
                        keep_last=user_data_dir() / "last-conversation.lmdesk.json")
    window.show()
    close_on_signals(window)
    if app.platformName() in ("offscreen", "minimal"):
        # these platforms' own clipboard frees copied data after Python has shut down (a crash
        # at exit): let it go before. A desktop's clipboard keeps it for after the app.
        app.aboutToQuit.connect(app.clipboard().clear)
    code = app.exec()
    if window.client.thread.isRunning():
        # the worker is inside one long step of the model and did not stop in time; the
        # document was kept as the window last drew it. Ending here, rather than letting
        # Qt abort on a running thread, exits cleanly.
        logging.getLogger(__name__).warning("the model's thread was still working at exit")
        logging.shutdown()
        os._exit(code)
    return code


def close_on_signals(window) -> None:
    """Ctrl+C in the terminal, SIGTERM (a log-out, a kill) and SIGHUP (the
    terminal closed) close the window as its close button does: the work is
    stopped and the document kept. Python runs its signal handlers only
    between bytecodes, so a timer lets it look in while Qt waits."""
    import signal

    from PySide6.QtCore import QTimer

    def close(signum, _frame) -> None:
        logging.getLogger(__name__).info("signal %s: closing the window", signum)
        QTimer.singleShot(0, window.close)

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), close)
    tick = QTimer(window)
    tick.timeout.connect(lambda: None)
    tick.start(200)

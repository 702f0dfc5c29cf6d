"""Nothing is sent: the engine, the command line and the window, watched by
strace for a socket call to any address but this machine's own.

onnxruntime's Python package looks up a Microsoft telemetry host about 9 s
after it is imported; the watch lasts longer than that.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_gguf

from lmdesk.convert.gguf_import import import_gguf

WATCH_SECONDS = 14
STRACE = shutil.which("strace")

SCRIPT = """
import sys, os
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import lmdesk  # first, as every way into lmdesk
from lmdesk import cli
assert cli.main(["score", "--model", sys.argv[1], sys.argv[2]]) == 0
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from lmdesk.ui.main_window import MainWindow
app = QApplication([])
win = MainWindow(model_folder=sys.argv[1], threads=1)
win.show()
QTimer.singleShot(int(float(sys.argv[3]) * 1000), app.quit)
app.exec()
win.close()
win.client.shutdown()
"""

# connect/sendto/sendmsg with an internet address: family, then the address
_INET = re.compile(r'(connect|sendto|sendmsg)\(.*?sa_family=(AF_INET6?),.*?(inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"\))')


def outside_calls(log: str) -> list[str]:
    """The lines of an strace log that reach an address that is not this machine's."""
    found = []
    for line in log.splitlines():
        m = _INET.search(line)
        if not m:
            continue
        address = m.group(4) or m.group(5) or ""
        if address.startswith("127.") or address in ("::1", "0.0.0.0", "::"):
            continue
        found.append(line.strip())
    return found


def test_the_watch_sees_what_it_looks_for() -> None:
    dns = ('123 connect(7, {sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.255.255.53")}, 16) = 0\n'
           '124 connect(3, {sa_family=AF_INET, sin_port=htons(631), sin_addr=inet_addr("127.0.0.1")}, 16) = 0\n'
           '125 connect(4, {sa_family=AF_UNIX, sun_path="/tmp/.X11-unix/X0"}, 20) = 0\n')
    assert outside_calls(dns) == [dns.splitlines()[0]]


@pytest.mark.skipif(STRACE is None, reason="strace is installed by .ci/run (Debian package)")
def test_nothing_leaves_the_machine(tmp_path: Path) -> None:
    import_gguf(write_tiny_gguf(tmp_path / "tiny.gguf", ctx=128), tmp_path / "model")
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat", encoding="utf-8")
    log = tmp_path / "strace.log"
    proc = subprocess.run(
        [STRACE, "-f", "-qq", "-e", "trace=execve,connect,sendto,sendmsg", "-o", str(log),
         sys.executable, "-c", SCRIPT, str(tmp_path / "model"), str(text), str(WATCH_SECONDS)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bits per token" in proc.stdout  # the score really ran
    calls = log.read_text()
    assert "execve(" in calls  # the watch really followed the program
    assert outside_calls(calls) == []

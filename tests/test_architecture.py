"""The core/ui split: lmdesk.core must work without Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import lmdesk.core


def test_core_never_imports_qt() -> None:
    modules = [f"lmdesk.core.{m.name}" for m in pkgutil.iter_modules(lmdesk.core.__path__)]
    assert len(modules) >= 8
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph', 'shiboken6'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""

"""The layout: the engine works without Qt and without the converter.

``lmdesk.engine`` (loading, inference, statistics, documents) must never pull
in Qt, nor ``lmdesk.convert`` and the libraries only conversion needs (``gguf``;
``onnx`` is read lazily for a graph's header); ``lmdesk.convert`` must not pull
in Qt either. Each check imports the modules in a fresh interpreter and lists
what came with them.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import lmdesk.convert
import lmdesk.engine

QT = ("PySide6", "pyqtgraph", "shiboken6")


def _modules(package) -> list[str]:
    return [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


def _loaded_after(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {prefixes!r} or m.startswith('lmdesk.convert'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_engine_never_imports_qt_nor_the_converter() -> None:
    modules = _modules(lmdesk.engine)
    assert len(modules) >= 12
    assert _loaded_after(modules, QT + ("gguf",)) == []


def test_converter_never_imports_qt() -> None:
    modules = _modules(lmdesk.convert)
    assert len(modules) >= 4
    loaded = _loaded_after(modules, QT)
    assert [m for m in loaded if not m.startswith("lmdesk.convert")] == []
    assert "lmdesk.convert.gguf_import" in loaded  # the check sees what it looks for


@pytest.mark.parametrize("package", ["lmdesk.core"])
def test_the_old_flat_core_is_gone(package: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        __import__(package)

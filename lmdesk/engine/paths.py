"""Where lmdesk finds its resources and model folders, from source or frozen."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "lmdesk"


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def install_root() -> Path:
    """The folder holding ``resources/`` and ``models/``: the PyInstaller
    bundle when frozen, the source checkout otherwise."""
    if is_frozen():
        return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
    return Path(__file__).resolve().parents[2]


def resources_dir() -> Path:
    return install_root() / "resources"


def user_data_dir() -> Path:
    """The per-user data folder of the platform (no admin rights needed)."""
    if sys.platform.startswith("win"):
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / APP_NAME


def model_dirs() -> list[Path]:
    """Folders that may hold model folders, most preferred first.

    ``LMDESK_MODELS_DIR`` (if set), then the ``models/`` folder shipped with
    the program or the source checkout, then the user's data folder.
    """
    dirs: list[Path] = []
    env = os.environ.get("LMDESK_MODELS_DIR")
    if env:
        dirs.append(Path(env))
    root = install_root()
    if is_frozen() or (root / "pyproject.toml").is_file():
        dirs.append(root / "models")
    dirs.append(user_data_dir() / "models")
    return dirs


def writable(folder: Path) -> bool:
    """True if files can be created in ``folder`` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{APP_NAME}-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False

"""The model folders on this computer: what the window lists under File →
Models, and how an import finds a file it has converted before.

Only manifests are read (a few kB each); no model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .model_format import CONVERTER_REVISION, MANIFEST, MANIFEST_FORMAT
from .paths import model_dirs


@dataclass(frozen=True)
class InstalledModel:
    name: str
    folder: Path
    architecture: str
    source_sha256: str | None  # of the GGUF file it was converted from
    current: bool  # made by this converter revision


def read_entry(folder: Path) -> InstalledModel | None:
    """The lmdesk model folder ``folder`` as an entry, or None if it is not one."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    converter = manifest.get("converter") if isinstance(manifest.get("converter"), dict) else {}
    return InstalledModel(
        name=str(manifest.get("name") or folder.name),
        folder=folder,
        architecture=str(manifest.get("architecture") or "?"),
        source_sha256=source.get("sha256") if isinstance(source.get("sha256"), str) else None,
        current=converter.get("revision") == CONVERTER_REVISION,
    )


def installed_models(places: list[Path] | None = None) -> list[InstalledModel]:
    """Every lmdesk model folder directly inside the model places, by name
    (hidden folders, such as an import under way, are left out)."""
    found: dict[Path, InstalledModel] = {}
    for base in places if places is not None else model_dirs():
        try:
            children = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
        for folder in children:
            entry = read_entry(folder)
            if entry is not None:
                found.setdefault(folder.resolve(), entry)
    return sorted(found.values(), key=lambda e: (e.name.lower(), str(e.folder)))


def converted_before(sha256: str, places: list[Path] | None = None) -> InstalledModel | None:
    """A current model folder converted from the file with this sha256, if any."""
    for entry in installed_models(places):
        if entry.source_sha256 == sha256 and entry.current:
            return entry
    return None


def free_folder(base: Path, stem: str) -> Path:
    """``base/stem``, or ``stem-2``, ``stem-3`` … : a name no folder has yet."""
    candidate, n = base / stem, 1
    while candidate.exists():
        n += 1
        candidate = base / f"{stem}-{n}"
    return candidate

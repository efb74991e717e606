"""A one-frame mailbox between the camera thread and the inference thread.

A closed loop must act on the newest frame: a queue would make inference work through
stale frames while the animals move on. So the slot holds one frame, a new frame
replaces an untaken one (that frame is *dropped*, and counted), and the inference
thread always takes the latest. Every frame put is eventually either taken, replaced,
or left in the slot when it closes, which is what keeps ``acquired = processed +
dropped`` exact.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

from rtpose import clock

Item = TypeVar("Item")


class FrameSlot(Generic[Item]):
    """Latest wins; thread-safe; ``close`` wakes every waiter."""

    def __init__(self) -> None:
        self._ready = threading.Condition(threading.Lock())
        self._item: Item | None = None
        self._closed = False
        self.puts = 0
        self.taken = 0
        self.replaced = 0  # put over an untaken frame: that frame was dropped

    def put(self, item: Item) -> Item | None:
        """Offer the newest frame; returns the frame this put dropped, if any.

        That is the untaken previous frame, or ``item`` itself once the slot is closed.
        """
        with self._ready:
            if self._closed:
                return item
            dropped = self._item
            self._item = item
            self.puts += 1
            if dropped is not None:
                self.replaced += 1
            self._ready.notify()
            return dropped

    def take(self, timeout_s: float | None = None) -> Item | None:
        """The newest frame, waiting up to ``timeout_s``; ``None`` on timeout or once closed and empty.

        A frame put before ``close`` can still be taken after it, so that the last frame
        of a finished source gets processed.
        """
        with self._ready:
            if self._item is None and not self._closed:
                if timeout_s is None:
                    while self._item is None and not self._closed:
                        self._ready.wait()
                else:
                    deadline = clock.now() + timeout_s
                    while self._item is None and not self._closed:
                        remaining = deadline - clock.now()
                        if remaining <= 0 or not self._ready.wait(remaining):
                            break
            item, self._item = self._item, None
            if item is not None:
                self.taken += 1
            return item

    def close(self) -> None:
        """No more puts; waiters wake up (a frame still in the slot stays takeable)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def drain(self) -> Item | None:
        """Remove and return the untaken frame, if any (at shutdown: it was never processed)."""
        with self._ready:
            item, self._item = self._item, None
            return item

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return 0 if self._item is None else 1

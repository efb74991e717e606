"""One bounded queue drained by one thread: how the loop hands work to the publisher and the recorder.

The loop must never wait for a subscriber or a disk, so it only ``offer``s an item: a
full queue loses the item and counts it (``overflow``). The worker's thread takes items
in batches, hands each batch to ``handle``, and when ``stop`` is called it drains what
is queued before ``finish`` runs. A failure in the thread is kept in ``error`` and
reported once through ``on_error`` (the daemon logs it with its traceback to ``run.log``
and stops the run, outputs at 0 V first), or logged here when there is no ``on_error``.

Subclasses implement ``handle`` and may override ``setup`` (in the thread, before the
first item), ``finish`` (after the queue is drained, on a normal stop) and ``cleanup``
(always, last).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

POLL_S = 0.1  # how often an idle worker looks at its stop flag


class QueueWorker(Generic[T]):
    """A bounded queue and the one thread that drains it.

    Args:
        name: The thread's name (``rtpose-recorder``), shown in ``run.log``.
        queue_size: Items held before ``offer`` starts refusing them.
        batch_max: The most items handed to one ``handle`` call.
        on_error: Called once, from the worker's thread, with what ended it early;
            without one, the failure is logged with its traceback.
    """

    def __init__(self, name: str, queue_size: int, batch_max: int = 1,
                 on_error: Callable[[BaseException], None] | None = None):
        self.name = name
        self._queue: queue.Queue[T] = queue.Queue(maxsize=queue_size)
        self._batch_max = batch_max
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None  # what ended the thread early, if anything
        self.offered = 0
        self.overflow = 0  # items refused because the queue was full (the thread behind)

    # -- the loop's side ---------------------------------------------------------------

    def offer(self, item: T) -> bool:
        """Queue an item without waiting; ``False`` (and counted in ``overflow``) when the queue is full."""
        self.offered += 1
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self.overflow += 1
            return False

    def start_thread(self) -> None:
        """Start the worker's thread (``setup`` runs there first)."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Let the thread drain the queue and ``finish``; wait up to ``timeout_s`` for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("%s: still busy %.1f s after stop; left behind", self.name, timeout_s)

    # -- the thread's side -------------------------------------------------------------

    def setup(self) -> None:
        """In the thread, before the first item (open a socket, a file)."""

    def handle(self, batch: list[T]) -> None:
        """Process up to ``batch_max`` items, oldest first."""
        raise NotImplementedError

    def finish(self) -> None:
        """In the thread, after the queue is drained, when stopped without a failure."""

    def cleanup(self) -> None:
        """In the thread, last, whatever happened (close what ``setup`` opened)."""

    def _run(self) -> None:
        try:
            self.setup()
            while True:
                try:
                    batch = [self._queue.get(timeout=POLL_S)]
                except queue.Empty:
                    if self._stop.is_set():
                        break
                    continue
                while len(batch) < self._batch_max:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                self.handle(batch)
            self.finish()
        except BaseException as exc:
            self.error = exc
            if self._on_error is not None:
                self._on_error(exc)  # the daemon logs it with its traceback, and stops the run
            else:
                log.error("%s failed", self.name, exc_info=exc)
        finally:
            self.cleanup()

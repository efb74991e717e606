"""The bounded-queue worker behind the publisher and the recorder: real threads, events, no sleeps to wait."""

from __future__ import annotations

import threading

import pytest

from rtpose.live.worker import QueueWorker


class Collector(QueueWorker[int]):
    """Keeps what it handles; holds its first batch until ``release`` is set, so the queue can fill."""

    def __init__(self, queue_size: int, batch_max: int, fail_on: int | None = None, on_error=None):
        super().__init__("test-worker", queue_size, batch_max, on_error)
        self.batches: list[list[int]] = []
        self.release, self.holding = threading.Event(), threading.Event()
        self.fail_on = fail_on
        self.calls: list[str] = []

    def setup(self) -> None:
        self.calls.append("setup")

    def handle(self, batch: list[int]) -> None:
        if not self.batches:
            self.holding.set()
            assert self.release.wait(10)
        if self.fail_on in batch:
            raise ValueError(f"cannot handle {self.fail_on}")
        self.batches.append(batch)

    def finish(self) -> None:
        self.calls.append("finish")

    def cleanup(self) -> None:
        self.calls.append("cleanup")


def test_offer_never_waits_counts_what_it_refuses_and_stop_drains_the_rest():
    worker = Collector(queue_size=5, batch_max=3)
    worker.start_thread()
    worker.offer(0)
    assert worker.holding.wait(10)  # the thread holds item 0; the queue is empty again
    accepted = [worker.offer(i) for i in range(1, 9)]
    assert accepted == [True] * 5 + [False] * 3 and worker.offered == 9 and worker.overflow == 3
    worker.release.set()
    worker.stop(timeout_s=10)
    assert [item for batch in worker.batches for item in batch] == [0, 1, 2, 3, 4, 5]
    assert all(len(batch) <= 3 for batch in worker.batches) and len(worker.batches) >= 3
    assert worker.calls == ["setup", "finish", "cleanup"] and worker.error is None


def test_a_failure_is_reported_once_and_cleans_up():
    reported: list[BaseException] = []
    worker = Collector(queue_size=10, batch_max=1, fail_on=2, on_error=reported.append)
    worker.release.set()
    worker.start_thread()
    for i in range(5):
        worker.offer(i)
    worker.stop(timeout_s=10)
    assert len(reported) == 1 and isinstance(reported[0], ValueError) and worker.error is reported[0]
    assert worker.batches == [[0], [1]] and worker.calls == ["setup", "cleanup"]  # no finish after a failure


def test_without_on_error_the_failure_is_logged_with_its_traceback(caplog):
    worker = Collector(queue_size=10, batch_max=1, fail_on=0)
    worker.release.set()
    worker.start_thread()
    worker.offer(0)
    worker.stop(timeout_s=10)
    record = next(r for r in caplog.records if r.name == "rtpose.live.worker")
    assert record.getMessage() == "test-worker failed" and record.exc_info[0] is ValueError


def test_handle_must_be_implemented():
    worker = QueueWorker[int]("bare", queue_size=1)
    with pytest.raises(NotImplementedError):
        worker.handle([1])

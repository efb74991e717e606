"""FrameSlot: one frame, the newest wins, every frame is taken, replaced or left at close."""

from __future__ import annotations

import threading
import time

from rtpose.live.frameslot import FrameSlot


def test_the_newest_frame_wins_and_replaced_frames_are_counted():
    slot: FrameSlot[int] = FrameSlot()
    assert slot.put(1) is None
    assert slot.put(2) == 1  # 1 was never taken: dropped
    assert slot.put(3) == 2
    assert slot.take(0) == 3
    assert slot.take(0) is None  # taken frames are gone: nothing is handed out twice
    assert (slot.puts, slot.taken, slot.replaced) == (3, 1, 2)


def test_take_waits_for_a_put_from_another_thread():
    slot: FrameSlot[str] = FrameSlot()
    threading.Timer(0.05, slot.put, args=("frame",)).start()
    start = time.monotonic()
    assert slot.take(2.0) == "frame"
    assert 0.03 < time.monotonic() - start < 1.0


def test_take_times_out_with_none():
    slot: FrameSlot[int] = FrameSlot()
    start = time.monotonic()
    assert slot.take(0.05) is None
    assert 0.04 < time.monotonic() - start < 0.5


def test_close_wakes_a_waiting_take_and_refuses_later_puts():
    slot: FrameSlot[int] = FrameSlot()
    got = []
    waiter = threading.Thread(target=lambda: got.append(slot.take()))
    waiter.start()
    time.sleep(0.05)
    slot.close()
    waiter.join(1.0)
    assert not waiter.is_alive() and got == [None]
    assert slot.put(7) == 7  # refused: the caller counts it as dropped


def test_a_frame_put_before_close_can_still_be_taken_or_drained():
    slot: FrameSlot[int] = FrameSlot()
    slot.put(1)
    slot.close()
    assert slot.take(0) == 1 and slot.take(0) is None
    slot2: FrameSlot[int] = FrameSlot()
    slot2.put(5)
    slot2.close()
    assert slot2.drain() == 5 and len(slot2) == 0


def test_every_frame_is_taken_or_replaced_exactly_once_under_contention():
    slot: FrameSlot[int] = FrameSlot()
    taken, replaced = [], []
    n = 20_000

    def producer():
        for i in range(n):
            dropped = slot.put(i)
            if dropped is not None:
                replaced.append(dropped)
        slot.close()

    def consumer():
        while (item := slot.take(1.0)) is not None:
            taken.append(item)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(taken + replaced) == list(range(n))
    assert taken == sorted(taken)  # in order, never twice
    assert len(replaced) == slot.replaced and len(taken) == slot.taken

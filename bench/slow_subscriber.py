"""How old are the poses a slow subscriber receives? In order (the default) and newest-only (CONFLATE).

    .venv/bin/python bench/slow_subscriber.py                     # hwm 1, 150 Hz, a read every 0.5 s, 19 reads
    .venv/bin/python bench/slow_subscriber.py --reads 10 --pause 0.25

A real ``Publisher`` on 127.0.0.1 is fed records at ``--rate`` Hz, each stamped with the
time it was offered; a subscriber reads one message every ``--pause`` seconds and
prints the age of each (receipt - stamp), first as an ordinary SUB socket, then with
``ZMQ_CONFLATE`` (what ``rtpose listen --latest`` sets). See ``rtpose/live/publisher.py``
for where the in-order messages wait.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

import attrs
import msgpack
import numpy as np
import zmq

from rtpose import clock
from rtpose.live.publisher import Publisher, split_message
from rtpose.live.records import FrameRecord
from rtpose.machine import describe
from rtpose.poses import Poses


def a_record(i: int) -> FrameRecord:
    poses = Poses(np.zeros((2, 13, 2), np.float32), np.ones((2, 13), np.float32), np.ones(2, np.float32),
                  np.array([0, 1], np.int32), np.full((2, 2), 0.5, np.float32))
    t = clock.now()
    return FrameRecord(i, i, t, t, t, t, t, t, t, poses, {"thorax_distance": 3.0}, {"close": False}, {}, {})


def ages(address: str, conflate: bool, reads: int, pause: float) -> list[float]:
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    if conflate:
        sub.setsockopt(zmq.CONFLATE, 1)
    sub.setsockopt(zmq.SUBSCRIBE, b"poses ")
    sub.connect(address)
    out = []
    for _ in range(reads):
        _, payload = split_message(sub.recv())
        out.append(clock.now() - msgpack.unpackb(payload, raw=False)["t"]["output"])
        time.sleep(pause)
    sub.close(linger=0)
    context.term()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hwm", type=int, default=1)
    parser.add_argument("--rate", type=float, default=150.0, help="messages per second published")
    parser.add_argument("--reads", type=int, default=19)
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between the subscriber's reads")
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    publisher = Publisher(address, hwm=args.hwm)
    publisher.start()
    stop = threading.Event()

    def feed() -> None:
        i = 0
        while not stop.is_set():
            publisher.offer(attrs.evolve(a_record(i), output=clock.now()))
            i += 1
            time.sleep(1.0 / args.rate)

    threading.Thread(target=feed, daemon=True).start()
    m = describe()
    print(f"machine: {m['cpu']}, {m['cpu_count']} cores, load average {m['load_average']}; pyzmq {zmq.__version__}, "
          f"libzmq {zmq.zmq_version()}")
    print(f"publisher hwm {args.hwm}, {args.rate:g} messages/s; a read every {args.pause:g} s, {args.reads} reads")
    try:
        for conflate in (False, True):
            a = ages(publisher.endpoint, conflate, args.reads, args.pause)
            name = "CONFLATE (rtpose listen --latest)" if conflate else "in order (default SUB socket)"
            print(f"{name:36s} age of message 1: {a[0] * 1000:7.1f} ms, last: {a[-1] * 1000:7.1f} ms, "
                  f"max: {max(a) * 1000:7.1f} ms")
    finally:
        stop.set()
        publisher.close()
    print(f"publisher: sent {publisher.sent}, not sent {publisher.not_sent}, queue overflow {publisher.overflow}")


if __name__ == "__main__":
    main()

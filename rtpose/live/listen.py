"""``rtpose listen [ADDRESS] [-o FILE [--overwrite]] [--count N] [--topic poses] [--latest]``: watch or record a daemon's stream.

Prints one line per message (frame, how old the frame was when its output was written,
how late the message reached us, instances found, the rules that hold), or, with ``-o``,
writes each payload to FILE as it comes: the payloads are msgpack maps, so FILE is a
msgpack stream (read it with ``msgpack.Unpacker(open(FILE, "rb"))``). A FILE that exists
is refused before anything connects, unless ``--overwrite`` (which replaces it; nothing is
ever appended to an earlier file). Ctrl-C stops it
cleanly. The address is checked before the first line is printed (a malformed one is a
one-line error, exit 2); with no message after a few seconds (``QUIET_S``) one line
says that nothing has arrived yet on that address and topic, and it keeps waiting.
Both ends use the monotonic clock, so the "late" figure is meaningful on the
machine running the daemon.

By default every message is received in order; a listener slower than the daemon (a
slow terminal, a slow sink) then falls behind by as many messages as the sockets and the
kernel buffer (see ``rtpose.live.publisher``). ``--latest`` sets ``ZMQ_CONFLATE``: each
message received is the newest one published, and the ones in between are skipped.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import msgpack
import zmq

from rtpose import clock
from rtpose.errors import RtposeError
from rtpose.live.publisher import port_problem, split_message, web_server_line
from rtpose.paths import claim_report_file, make_parent

QUIET_S = 3.0  # no message this long after the start: say so once (and keep waiting)


def describe(message: dict[str, Any], received: float) -> str:
    """One compact line for a published message."""
    t = message.get("t", {})
    output, exposure = t.get("output"), t.get("exposure")
    latency = f"{1000 * (output - exposure):6.1f} ms" if output is not None and exposure is not None else "   -    "
    late = f"{1000 * (received - output):6.1f} ms" if output is not None else "   -   "
    holding = [name for name, state in message.get("rules", {}).items() if state]
    identities = ",".join(str(i) for i in message.get("identity", [])) or "-"
    return (f"frame {message.get('frame', '?'):>6}  exposure->output {latency}  received +{late}  "
            f"[{identities}]  rules: {', '.join(holding) if holding else '-'}")


def listen(address: str, topic: str = "poses", count: int | None = None, output: str | None = None,
           stop: threading.Event | None = None, out=sys.stdout, latest: bool = False,
           on_connected: Callable[[], None] | None = None, quiet_s: float = QUIET_S, err=sys.stderr,
           overwrite: bool = False) -> int:
    """Receive until ``count`` messages, ``stop`` is set, or Ctrl-C; returns how many were received.

    Args:
        address: a ZeroMQ endpoint (``tcp://HOST:PORT``) where a daemon publishes.
        topic: the topic subscribed to (the daemon's ``publisher.topic``).
        count: stop after this many messages (None: never).
        output: write the payloads to this file (a msgpack stream; missing folders are made) instead of printing;
            an existing file is refused unless ``overwrite``, which replaces it.
        stop: set from another thread (or a signal handler) to stop.
        out: where the lines go.
        latest: keep only the newest message (``ZMQ_CONFLATE``), for a listener slower
            than the stream.
        on_connected: called once the socket is connected (the address is well formed
            and the output file claimed), before waiting for messages. The file itself
            is made at the first message, so a listener stopped before one leaves none.
        quiet_s: with no message for this many seconds since the start, one line to
            ``err`` says that nothing has arrived yet (the listener keeps waiting).
        err: where that line goes.
        overwrite: replace an existing ``output`` (``--overwrite``).

    Raises:
        RtposeError: an ``output`` that exists without ``overwrite`` (before any socket
            is made), a malformed address, or an output file that cannot be written.
    """
    problem = port_problem(address)
    if problem:
        raise RtposeError(problem)
    if output is not None:  # a folder, an existing file without overwrite, a path no folder can be made for
        claim_report_file(output, overwrite, "-o")
    stop = stop or threading.Event()
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    if latest:
        socket.setsockopt(zmq.CONFLATE, 1)  # before connect: the pipe is made with it
    socket.setsockopt(zmq.SUBSCRIBE, topic.encode() + b" ")
    received = 0
    sink = None
    try:
        try:
            socket.connect(address)
        except zmq.ZMQError as exc:
            bare = address.split(":/", 1)[1].lstrip("/") if ":/" in address else address  # tcp:/host:port
            hint = f"; an address is TRANSPORT://HOST:PORT, e.g. tcp://{bare}" if "://" not in address else ""
            raise RtposeError(f"cannot connect to {address} ({exc}){hint}") from None
        if on_connected is not None:
            on_connected()
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        quiet_until = clock.now() + quiet_s
        while not stop.is_set() and (count is None or received < count):
            if not poller.poll(100):  # short polls keep Ctrl-C and `stop` responsive
                if received == 0 and quiet_until is not None and clock.now() >= quiet_until:
                    quiet_until = None  # said once
                    from rtpose.live.probe import HTTP, probe  # what answers there, if anything

                    if probe(address) == HTTP:
                        print(f"{web_server_line(address)}; still waiting", file=err, flush=True)
                    else:
                        print(f"nothing has arrived yet on {address} (topic {topic}) after {quiet_s:g} s: is a "
                              "daemon publishing there (its publisher.address and publisher.topic)? still waiting",
                              file=err, flush=True)
                continue
            data = socket.recv()
            now = clock.now()
            try:
                _, payload = split_message(data)
            except ValueError:
                continue
            received += 1
            if output is not None:
                if sink is None:  # made at the first message: a listener stopped before one leaves no file
                    try:
                        sink = open(make_parent(Path(output)), "wb")
                    except OSError as exc:
                        raise RtposeError(f"{output}: cannot write ({exc.strerror})") from None
                sink.write(payload)
                sink.flush()
            else:
                try:
                    message = msgpack.unpackb(payload, raw=False)
                except (ValueError, msgpack.ExtraData) as exc:
                    print(f"(undecodable message: {exc})", file=out)
                    continue
                print(describe(message, now), file=out, flush=True)
    finally:
        if sink is not None:
            sink.close()
        socket.close(linger=0)
        context.term()
    return received


def main(args: argparse.Namespace) -> int:
    """``rtpose listen``. Exit status: 0 after ``--count`` messages; 130 Ctrl-C (SIGINT),
    143 SIGTERM, as ``rtpose run``: the messages received are printed or written either way."""
    stop = threading.Event()
    signalled: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum, frame) -> None:
            signalled.append(signum)
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        where = f" -> {args.output}" if args.output else ""
        mode = ", newest message only" if args.latest else ""

        def announce() -> None:  # once the address is known to be well formed
            print(f"listening on {args.address} (topic {args.topic}{mode}){where}; Ctrl-C to stop", file=sys.stderr,
                  flush=True)

        received = listen(args.address, args.topic, args.count, args.output, stop, latest=args.latest,
                          on_connected=announce, overwrite=args.overwrite)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    print(f"{received} message(s)", file=sys.stderr)
    return 128 + signalled[0] if signalled else 0

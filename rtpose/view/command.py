"""``rtpose view [ADDRESS] [--port 8050] [--host 127.0.0.1]``: a live view of a running daemon.

A separate process: it subscribes to the daemon's ZeroMQ stream like any other
subscriber and serves a page at ``http://HOST:PORT/``. It starts before, during or
after a run, outlives the daemon and picks up the next run on the same address. It
prints one line to the terminal whenever what the page's banner says changes
(waiting, live, stale, stopped, a stream of another format...). Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import signal
import socket
import sys
import threading
from datetime import datetime

from aiohttp import web

from rtpose.errors import RtposeError
from rtpose.live.publisher import port_problem
from rtpose.view.server import make_app
from rtpose.view.stream import StreamWatcher


def page_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/"


def _say(state: str, line: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    stream = sys.stderr if state == "error" else sys.stdout
    print(f"{stamp} {'error: ' if state == 'error' else ''}{line}", file=stream, flush=True)


async def _serve(watcher: StreamWatcher, host: str, port: int, stop: asyncio.Event) -> None:
    runner = web.AppRunner(make_app(watcher), access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise RtposeError(f"--host {host} --port {port}: cannot serve there ({exc.strerror or exc})") from None
    print(f"rtpose view: {page_url(host, port)}  (stream {watcher.address}; Ctrl-C to stop)", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _bind_problem(host: str, port: int) -> OSError | None:
    """The error binding ``host:port`` as the page's server would (``SO_REUSEADDR``), or None if free."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return exc
    return None


def check_port(host: str, port: int) -> None:
    """Refuse a page address that cannot be served, before anything is started.

    Raises:
        RtposeError: ``port`` is in use on ``host`` (the line names a free port above it),
            or ``host`` is not an address of this computer.
    """
    problem = _bind_problem(host, port)
    if problem is None:
        return
    if getattr(problem, "errno", None) == errno.EADDRINUSE:
        free = next((p for p in range(port + 1, min(port + 50, 65536)) if _bind_problem(host, p) is None), None)
        other = f"; give another, e.g. --port {free}" if free else "; give another --port"
        raise RtposeError(f"--port {port}: in use on {host} (another rtpose view, or another server){other}")
    raise RtposeError(f"--host {host} --port {port}: cannot serve there "
                      f"({getattr(problem, 'strerror', None) or problem})")


def main(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise RtposeError(f"--port {args.port}: not a TCP port (1-65535)")
    if args.stale_s <= 0:
        raise RtposeError(f"--stale {args.stale_s}: must be > 0 seconds")
    problem = port_problem(args.address)  # ZeroMQ would retry tcp://...:99999 for ever
    if problem:
        raise RtposeError(problem)
    check_port(args.host, args.port)  # before the stream's first line: a busy port is said alone
    watcher = StreamWatcher(args.address, args.topic, args.stale_s, on_change=_say)
    try:
        watcher.start()
    except ValueError as exc:
        raise RtposeError(str(exc)) from None
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    previous = {}
    signalled: list[int] = []
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum, frame) -> None:
            signalled.append(signum)
            loop.call_soon_threadsafe(stop.set)

        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        loop.run_until_complete(_serve(watcher, args.host, args.port, stop))
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        loop.close()
        watcher.close()
    print("rtpose view: stopped", flush=True)
    return 128 + signalled[0] if signalled else 0  # 130 Ctrl-C, 143 SIGTERM, as rtpose run

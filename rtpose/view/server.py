"""The view's web server (aiohttp): one page, its static files, and a WebSocket per page.

Routes:

- ``GET /``: the page (``static/index.html``; plain HTML, CSS and JavaScript, no build
  step, nothing fetched from elsewhere, so it works on an offline rig).
- ``GET /static/...``: the page's script and style sheet.
- ``GET /state``: the current state as JSON (what the page gets, without the JPEG), for
  scripts and ``curl``.
- ``GET /ws``: a WebSocket on which the server pushes, ``push_hz`` times a second, a
  JSON text message (``StreamWatcher.snapshot``) followed, when there is a new preview,
  by its JPEG as a binary message.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from rtpose.view.stream import StreamWatcher

STATIC = Path(__file__).resolve().parent / "static"
PUSH_HZ = 15.0


def _json_safe(value: Any) -> Any:
    """NaN and infinities (not JSON) as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, bytes):
        return None
    return value


def dumps(value: Any) -> str:
    return json.dumps(_json_safe(value), separators=(",", ":"))


def make_app(watcher: StreamWatcher, push_hz: float = PUSH_HZ) -> web.Application:
    """The aiohttp application serving ``watcher``'s state."""
    app = web.Application()
    period = 1.0 / push_hz
    sockets: set[web.WebSocketResponse] = set()

    async def close_sockets(app: web.Application) -> None:  # else shutting down waits for the pages
        for ws in list(sockets):
            await ws.close(code=1001, message=b"rtpose view stopped")

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def state(request: web.Request) -> web.Response:
        data, _ = watcher.snapshot(after_sample=watcher.sample_seq)
        return web.Response(text=dumps(data), content_type="application/json")

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)

        async def push() -> None:
            after_sample, after_preview = 0, 0
            while not ws.closed:
                data, jpeg = watcher.snapshot(after_sample, after_preview)
                after_sample, after_preview = data["sample_seq"], data["preview_seq"]
                await ws.send_str(dumps(data))
                if jpeg is not None:
                    await ws.send_bytes(jpeg)
                await asyncio.sleep(period)

        sockets.add(ws)
        task = asyncio.create_task(push())
        try:
            async for message in ws:  # the page sends nothing; this notices it closing
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            sockets.discard(ws)
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, ConnectionError):
                pass
        return ws

    app.router.add_get("/", index)
    app.router.add_get("/state", state)
    app.router.add_get("/ws", websocket)
    app.router.add_static("/static/", STATIC)
    app.on_shutdown.append(close_sockets)
    return app

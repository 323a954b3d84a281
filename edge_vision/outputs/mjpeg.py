"""MJPEG over HTTP: ``/stream.mjpg`` (multipart/x-mixed-replace), ``/snapshot.jpg`` and ``/``.

Every client has its own coroutine that sends the newest frame, at most ``max_fps`` per second;
a frame is JPEG-encoded once (in a worker thread) however many clients send it. A slow client
skips frames: its ``write`` waits for its own socket only, and a client whose socket accepts
nothing for ``WRITE_TIMEOUT_S`` is dropped. A client that goes away ends only its coroutine.
"""

from __future__ import annotations

import asyncio
import html
import time
from dataclasses import dataclass

import cv2
from aiohttp import web

from edge_vision.outputs.frame_hub import DurationStats, FrameHub, OutputFrame, Pacer, RateMeter
from edge_vision.outputs.http_server import AsyncFrames, HttpServer

__all__ = ["BOUNDARY", "MjpegOutput", "MjpegSettings", "MjpegStats", "encode_jpeg"]

OUTPUT = "mjpeg"
BOUNDARY = "edgevisionframe"
WRITE_TIMEOUT_S = 10.0
FIRST_FRAME_TIMEOUT_S = 5.0
"""How long a new client or a snapshot waits for a frame (the subscription may be starting)."""
KEEPALIVE_S = 2.0
"""Without new frames, send the last one again this often (proxies drop silent streams)."""


@dataclass
class MjpegSettings:
    """Read on every frame, so the node can change them while clients watch."""

    max_fps: float = 15.0
    quality: int = 80
    max_clients: int = 16


@dataclass(frozen=True)
class MjpegStats:
    clients: int
    fps_out: float
    """JPEG frames sent per second, all clients together."""
    frames_out: int
    encode_ms: tuple[float, float] | None


def encode_jpeg(image, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image.shape}")
    return data.tobytes()


class _JpegCache:
    """The newest frame's JPEG, encoded once for every client (on the server's loop)."""

    def __init__(self, stats: DurationStats) -> None:
        self._key: tuple[int, int] | None = None
        self._future: asyncio.Future[bytes] | None = None
        self._stats = stats

    def _encode(self, frame: OutputFrame, quality: int) -> bytes:
        started = time.perf_counter()
        data = encode_jpeg(frame.image, quality)
        self._stats.add((time.perf_counter() - started) * 1e3)
        return data

    async def get(self, frame: OutputFrame, quality: int) -> bytes:
        key = (frame.seq, quality)
        if self._key != key or self._future is None:
            self._key = key
            loop = asyncio.get_running_loop()
            self._future = loop.run_in_executor(None, self._encode, frame, quality)
        return await asyncio.shield(self._future)


_INDEX = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}}
img{{display:block;max-width:100vw;max-height:95vh;margin:auto}}
p{{text-align:center}}a{{color:#8cf}}</style></head>
<body><img id="stream" src="stream.mjpg" alt="{title}">
<p>{title} &middot; <a href="snapshot.jpg">snapshot</a>{webrtc}</p></body></html>
"""


class MjpegOutput:
    """Adds ``/``, ``/stream.mjpg`` and ``/snapshot.jpg`` to ``server``'s app on ``port``."""

    def __init__(
        self,
        hub: FrameHub,
        server: HttpServer,
        port: int,
        *,
        settings: MjpegSettings | None = None,
        title: str = "edge_vision",
        webrtc_url: str | None = None,
    ) -> None:
        self.hub = hub
        self.server = server
        self.port = port
        self.settings = settings or MjpegSettings()
        self.title = title
        self.webrtc_url = webrtc_url
        self._encode_ms = DurationStats()
        self._cache = _JpegCache(self._encode_ms)
        self._rate = RateMeter()
        self._clients = 0
        self._closing = False
        self._frames: AsyncFrames | None = None
        app = server.app(port)
        app.router.add_get("/", self._index)
        app.router.add_get("/stream.mjpg", self._stream)
        app.router.add_get("/snapshot.jpg", self._snapshot)
        server.on_stop(self._stop)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.server.host in ("0.0.0.0", "") else self.server.host
        return f"http://{host}:{self.server.ports.get(self.port, self.port)}/stream.mjpg"

    def _async_frames(self) -> AsyncFrames:
        if self._frames is None:
            self._frames = AsyncFrames(self.hub, asyncio.get_running_loop())
        return self._frames

    def stats(self) -> MjpegStats:
        return MjpegStats(
            clients=self._clients,
            fps_out=self._rate.rate(),
            frames_out=self._rate.total,
            encode_ms=self._encode_ms.summary(),
        )

    async def _stop(self) -> None:
        self._closing = True
        if self._frames is not None:
            self._frames.close()

    # -- handlers -------------------------------------------------------------------------------
    async def _index(self, _request: web.Request) -> web.Response:
        link = ""
        if self.webrtc_url:
            link = f' &middot; <a href="{html.escape(self.webrtc_url)}">WebRTC</a>'
        body = _INDEX.format(title=html.escape(self.title), webrtc=link)
        return web.Response(text=body, content_type="text/html")

    async def _snapshot(self, _request: web.Request) -> web.Response:
        frames = self._async_frames()
        self.hub.acquire(OUTPUT)
        try:
            frame = self.hub.latest() or await frames.next(0, FIRST_FRAME_TIMEOUT_S)
            if frame is None:
                raise web.HTTPServiceUnavailable(text="no frame received on the image topic yet")
            data = await self._cache.get(frame, self.settings.quality)
        finally:
            self.hub.release(OUTPUT)
        return web.Response(
            body=data, content_type="image/jpeg", headers={"Cache-Control": "no-store"}
        )

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        limit = self.settings.max_clients
        if limit > 0 and self._clients >= limit:
            raise web.HTTPServiceUnavailable(text=f"at most {limit} MJPEG clients")
        frames = self._async_frames()
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
                "Cache-Control": "no-store, no-cache, must-revalidate",
                "Pragma": "no-cache",
                "Connection": "close",
            }
        )
        self._clients += 1
        self.hub.acquire(OUTPUT)
        try:
            await response.prepare(request)
            await self._send_frames(response, frames)
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the client went away or stalled: only this coroutine ends
        finally:
            self.hub.release(OUTPUT)
            self._clients -= 1
        return response

    async def _send_frames(self, response: web.StreamResponse, frames: AsyncFrames) -> None:
        pacer = Pacer(self.settings.max_fps)
        last: OutputFrame | None = None
        last_sent = 0.0
        while not self._closing:
            pacer.max_fps = self.settings.max_fps
            delay = pacer.delay()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = await frames.next(last.seq if last else 0, KEEPALIVE_S)
            if self._closing:
                return
            if frame is None:
                if last is None or time.monotonic() - last_sent < KEEPALIVE_S:
                    continue
                frame = last  # the topic is quiet: repeat the last frame
            data = await self._cache.get(frame, self.settings.quality)
            part = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
                f"X-Timestamp: {frame.stamp_ns / 1e9:.6f}\r\n\r\n"
            ).encode()
            await asyncio.wait_for(response.write(part + data + b"\r\n"), WRITE_TIMEOUT_S)
            last = frame
            last_sent = time.monotonic()
            pacer.sent(last_sent)
            self._rate.tick(last_sent)

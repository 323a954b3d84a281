"""An aiohttp server on an asyncio loop of its own thread, for the MJPEG and WebRTC outputs.

:class:`HttpServer` owns the loop and one aiohttp application per port; outputs add their
routes to the application of their port before ``start()``. :class:`AsyncFrames` lets
coroutines on that loop wait for the :class:`FrameHub`'s next frame without blocking the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import web

from edge_vision.outputs.frame_hub import FrameHub, OutputFrame

__all__ = ["AsyncFrames", "HttpServer"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class AsyncFrames:
    """Newest frames of ``hub`` for coroutines running on ``loop``.

    The hub's producer thread only schedules a wake-up on the loop; each waiting coroutine then
    takes the newest frame itself, so a slow one skips frames instead of queueing them.
    """

    def __init__(self, hub: FrameHub, loop: asyncio.AbstractEventLoop) -> None:
        self.hub = hub
        self._loop = loop
        self._event = asyncio.Event()
        self._closed = False
        hub.add_listener(self._on_frame)

    def _on_frame(self) -> None:  # the producer's thread
        if not self._closed:
            self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:  # the loop's thread
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def next(self, after_seq: int, timeout: float) -> OutputFrame | None:
        """The newest frame newer than ``after_seq``, or None after ``timeout`` s."""
        deadline = self._loop.time() + timeout
        while True:
            event = self._event  # taken before looking, so a frame arriving now wakes us
            frame = self.hub.newer_than(after_seq)
            if frame is not None:
                return frame
            remaining = deadline - self._loop.time()
            if remaining <= 0 or self._closed:
                return None
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except asyncio.TimeoutError:
                return None

    def close(self) -> None:
        self._closed = True
        self.hub.remove_listener(self._on_frame)
        self._loop.call_soon_threadsafe(self._wake)


class HttpServer:
    """aiohttp applications on ``host``, one per port, served from a background thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.loop = asyncio.new_event_loop()
        self._apps: dict[int, web.Application] = {}
        self._runners: list[web.AppRunner] = []
        self._thread = threading.Thread(target=self._run, name="http-server", daemon=True)
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self.ports: dict[int, int] = {}
        """Requested port -> bound port (they differ when 0 was requested)."""

    def app(self, port: int) -> web.Application:
        """The application serving ``port`` (created on first use)."""
        if port not in self._apps:
            self._apps[port] = web.Application()
        return self._apps[port]

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """``await callback()`` on the loop before the sites close."""
        self._on_stop.append(callback)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 10.0) -> T:
        """Run ``coro`` on the server's loop and wait for its result (from another thread)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def start(self) -> None:
        """Listen on every port; raises OSError (with the address) when one cannot be bound."""
        self._thread.start()
        try:
            self.call(self._start())
        except BaseException:
            self.stop()
            raise

    async def _start(self) -> None:
        for port, app in self._apps.items():
            # Streaming handlers end by themselves at stop (on_stop): a short grace period.
            runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
            await runner.setup()
            self._runners.append(runner)
            site = web.TCPSite(runner, self.host, port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                raise OSError(
                    exc.errno, f"cannot listen on http://{self.host}:{port}: {exc.strerror}"
                ) from None
            self.ports[port] = int(site.port)

    async def _stop(self) -> None:
        for callback in self._on_stop:
            try:
                await callback()
            except Exception:  # one output's cleanup must not keep the others from theirs
                log.exception("stopping an HTTP output failed")
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self.call(self._stop(), timeout=10.0)
            except Exception:
                log.exception("stopping the HTTP server failed")
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5.0)
        if not self.loop.is_running():
            self.loop.close()

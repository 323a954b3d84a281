"""A browser's camera as a video source, over WebRTC (aiortc), with a page served by aiohttp.

``webrtc://127.0.0.1:8089`` makes the source listen on that address (port 8089 when omitted;
``webrtc://0.0.0.0:8089`` for every interface). Open ``http://<address>/`` in a browser: the
page asks for the camera (``getUserMedia``), creates an ``RTCPeerConnection`` without any
STUN/TURN server, POSTs its offer to ``/offer`` (plain HTTP signalling, no trickle ICE) and
applies the answer; the video track is decoded by aiortc and ``read()`` returns its frames as
BGR ``Frame`` s stamped on arrival (after decoding), newest first like the other live
sources (``queue_size``, default 1: a slow consumer gets the latest frame and the skipped ones
count as dropped). Frames are converted to BGR only when read.

One sender at a time: a new browser that connects replaces the current one, whose connection
is closed (its page says so). When the sender goes away (page closed or reloaded, tab crashed,
network lost: RTCP BYE, a closed or failed connection, or no frame for ``read_timeout_s``)
the loss is logged, kept as ``last_error``, ``state`` becomes ``"reconnecting"`` and
``read()`` keeps waiting for the next sender; the server stays up throughout, so the page can
simply be reloaded. ``state`` is also ``"reconnecting"`` before the first sender (waiting
for a browser, as ``ReconnectingSource`` with ``retry_initial`` reports), ``"connected"``
while frames flow; ``reconnects`` counts the senders that delivered video after the first.
``open()`` fails only if the address cannot be bound (``SourceOpenError``, e.g. port in use).

Options (URI query or keywords): ``width``, ``height``, ``fps`` -- the camera constraints the
page asks for (``ideal`` values; the browser may pick others, ``size`` reports what arrives);
``queue_size``; ``read_timeout_s`` (5 s); ``open_timeout_s`` (bind time limit, 5 s);
``certfile`` + ``keyfile`` -- serve the page over HTTPS (browsers allow the camera only in a
secure context: ``https://`` or ``http://localhost``/``127.0.0.1``; see docs/webrtc_input.md);
``ice_addresses`` -- comma-separated local addresses offered as ICE host candidates.

Keeping ICE where the page is: aioice, under aiortc, offers a host candidate on every
non-loopback interface address and never on 127.0.0.1, and aiortc adds Google's STUN server
when given no configuration. This source passes an empty ``iceServers`` list (no STUN, no
TURN) and chooses the host candidates itself: for a loopback bind address only 127.0.0.1
(so a browser on the same machine connects without any packet on a real interface, and it
works in a network namespace that has only ``lo``), for a specific address that address, and
for a wildcard bind (``0.0.0.0``, ``::``) aioice's default (every interface, loopback
excluded). aioice has no option for this; :mod:`edge_vision.core.ice` (shared with
video_output) wraps ``aioice.ice.get_host_addresses`` once, and this source sets the addresses
only while its own answer gathers candidates; other aiortc users in the process see aioice's
default.
With restricted addresses the offer's mDNS (``*.local``) candidates are dropped as well
(browsers use them only when no camera permission was given; resolving one would send a
multicast query out of the machine): the browser's connectivity checks reach us anyway and
become peer-reflexive candidates.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import html
import ipaddress
import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from edge_vision.core.frame import Frame
from edge_vision.core.ice import ice_host_candidates, install_ice_hook, strip_mdns_candidates
from edge_vision.sources.base import SourceDisconnected, SourceOpenError, VideoSource

__all__ = [
    "DEFAULT_PORT",
    "WebRtcSource",
    "build_webrtc_source",
    "ice_host_addresses",
]

_log = logging.getLogger(__name__)

DEFAULT_PORT = 8089


def ice_host_addresses(bind_host: str) -> tuple[str, ...] | None:
    """The ICE host candidate addresses for a server bound to ``bind_host``; None means
    aioice's default (every non-loopback interface)."""
    if bind_host in ("", "0.0.0.0", "::"):
        return None
    if bind_host == "localhost":
        return ("127.0.0.1",)
    try:
        address = ipaddress.ip_address(bind_host)
    except ValueError:
        return None  # a host name: let aioice enumerate the interfaces
    if address.is_loopback:
        return ("::1",) if address.version == 6 else ("127.0.0.1",)
    return (str(address),)


# -- the page -------------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>edge_vision camera</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;margin:1em;max-width:60em}video{max-width:100%;background:#222}
#state{font-weight:bold}</style></head><body>
<h1>Send this camera to edge_vision</h1>
<p>Source: <code>__DESCRIPTION__</code>. State: <span id="state">starting</span></p>
<p><button id="start">Start</button> <button id="stop">Stop</button></p>
<video id="preview" autoplay muted playsinline></video>
<script>
"use strict";
const config = __CONFIG__;
const stateEl = document.getElementById("state");
const preview = document.getElementById("preview");
// window.edgeVision is read by tests (edge_vision.testing.webrtc_scenario) and is handy to debug.
const ev = window.edgeVision = { state: "starting", error: null, pc: null, stream: null };
function setState(state, error) {
  ev.state = state; ev.error = error || null;
  stateEl.textContent = state + (error ? ": " + error : "");
}
async function stop(state) {
  if (ev.pc) { ev.pc.close(); ev.pc = null; }
  if (ev.stream) { ev.stream.getTracks().forEach((t) => t.stop()); ev.stream = null; }
  setState(state || "stopped");
}
async function start() {
  await stop("starting");
  if (!window.isSecureContext || !navigator.mediaDevices) {
    setState("error", "this page is not a secure context, so the browser offers no camera: " +
      "open it as https://... or through http://localhost (an SSH tunnel), see " +
      "docs/webrtc_input.md");
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: config.video, audio: false });
    ev.stream = stream; preview.srcObject = stream;
    const pc = new RTCPeerConnection({ iceServers: [] });
    ev.pc = pc;
    stream.getVideoTracks().forEach((track) => pc.addTrack(track, stream));
    pc.onconnectionstatechange = () => {
      if (ev.pc !== pc) return;
      const s = pc.connectionState;
      if (s === "connected") setState("connected");
      else if (s === "failed" || s === "closed" || s === "disconnected")
        setState(s, "the server closed or lost the connection (another sender may have " +
                 "replaced this one); press Start to send again");
    };
    await pc.setLocalDescription(await pc.createOffer());
    // No trickle ICE: wait for gathering to finish (only local candidates, no STUN).
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const check = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, 3000);
    });
    setState("connecting");
    const response = await fetch("offer", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
    });
    if (!response.ok) throw new Error("server: " + response.status + " " + await response.text());
    await pc.setRemoteDescription(await response.json());
    // Analytics wants the size asked for: when the bandwidth estimate is low (it starts low and
    // grows slowly with aiortc's REMB), lower the frame rate or quality, not the resolution.
    for (const sender of pc.getSenders()) {
      const params = sender.getParameters();
      params.degradationPreference = "maintain-resolution";
      await sender.setParameters(params).catch(() => {});
    }
  } catch (e) {
    await stop("error");
    setState("error", String(e && e.message || e));
  }
}
// Closing or leaving the tab ends the connection at once (RTCP BYE, DTLS close).
window.addEventListener("pagehide", () => { if (ev.pc) ev.pc.close(); });
document.getElementById("start").onclick = start;
document.getElementById("stop").onclick = () => stop("stopped");
start();
</script></body></html>
"""


# -- the source -----------------------------------------------------------------------------------


@dataclass
class _Session:
    """One browser sender."""

    number: int
    peer: str
    pc: Any  # aiortc.RTCPeerConnection
    task: asyncio.Task[None] | None = None
    ended: bool = False


class WebRtcSource(VideoSource):
    """Receives one browser's camera over WebRTC; see the module doc."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        queue_size: int = 1,
        read_timeout_s: float = 5.0,
        open_timeout_s: float = 5.0,
        certfile: str | None = None,
        keyfile: str | None = None,
        ice_addresses: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__()
        if not 0 <= port <= 65535:
            raise SourceOpenError(f"invalid WebRTC listen port {port}")
        if queue_size < 1:
            raise SourceOpenError(f"queue_size must be >= 1, got {queue_size}")
        if read_timeout_s <= 0 or open_timeout_s <= 0:
            raise SourceOpenError("read_timeout_s and open_timeout_s must be positive")
        if bool(certfile) != bool(keyfile):
            raise SourceOpenError("give both certfile and keyfile for HTTPS, or neither")
        for name, value in (("width", width), ("height", height), ("fps", fps)):
            if value is not None and value <= 0:
                raise SourceOpenError(f"{name} must be positive, got {value}")
        self._host = host
        self._port = port
        self._video_constraints: dict[str, Any] = {}
        if width:
            self._video_constraints["width"] = {"ideal": int(width)}
        if height:
            self._video_constraints["height"] = {"ideal": int(height)}
        if fps:
            self._video_constraints["frameRate"] = {"ideal": float(fps)}
        self._fps = float(fps) if fps else None
        self._queue_size = queue_size
        self._read_timeout_s = read_timeout_s
        self._open_timeout_s = open_timeout_s
        self._certfile = certfile
        self._keyfile = keyfile
        self._ice_addresses = ice_addresses if ice_addresses else ice_host_addresses(host)

        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[Any, int, int, str]] = collections.deque(
            maxlen=queue_size
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._bound_port: int | None = None
        self._session: _Session | None = None
        self._sessions_started = 0
        self._senders_seen = 0  # sessions that delivered a frame
        self._next_index = 0
        self._size: tuple[int, int] | None = None
        self._connected = False

    # -- description ------------------------------------------------------------------------------

    @property
    def description(self) -> str:
        return f"WebRTC browser camera at {self.page_url}"

    @property
    def page_url(self) -> str:
        """The page a browser opens to send its camera (the bound port once open)."""
        host = self._host or "0.0.0.0"
        host = f"[{host}]" if ":" in host else host
        scheme = "https" if self._certfile else "http"
        return f"{scheme}://{host}:{self._bound_port or self._port}/"

    @property
    def port(self) -> int | None:
        """The bound TCP port while open (useful with port 0), else None."""
        return self._bound_port

    @property
    def is_live(self) -> bool:
        return True

    @property
    def nominal_fps(self) -> float | None:
        return self._fps

    @property
    def size(self) -> tuple[int, int] | None:
        return self._size

    @property
    def state(self) -> str:
        if not self.is_open:
            return "closed"
        return "connected" if self._connected else "reconnecting"

    @property
    def reconnects(self) -> int:
        return max(0, self._senders_seen - 1)

    @property
    def sender(self) -> str | None:
        """Address of the current sender, or None."""
        session = self._session
        return session.peer if session is not None and not session.ended else None

    # -- VideoSource ------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            import aiohttp.web  # noqa: F401
            import aiortc  # noqa: F401
        except ImportError as exc:  # pragma: no cover - both are runtime requirements
            raise SourceOpenError(f"WebRTC input needs aiortc and aiohttp: {exc}") from None
        ssl_context = None
        if self._certfile:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ssl_context.load_cert_chain(self._certfile, self._keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise SourceOpenError(
                    f"cannot load the HTTPS certificate {self._certfile} / key "
                    f"{self._keyfile}: {exc}"
                ) from None
        install_ice_hook()
        self._stopping = threading.Event()
        with self._cond:
            self._queue = collections.deque(maxlen=self._queue_size)
        self._connected = False
        started = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._run_loop,
            args=(started, failure, ssl_context),
            name=f"src:webrtc:{self._port}",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        if not started.wait(self._open_timeout_s):
            self._shutdown()
            raise SourceOpenError(
                f"{self.description}: server did not start within {self._open_timeout_s:g} s"
            )
        if failure:
            self._shutdown()
            exc = failure[0]
            if isinstance(exc, OSError):
                raise SourceOpenError(
                    f"cannot listen on {self._host}:{self._port} for WebRTC input: "
                    f"{exc.strerror or exc}"
                ) from None
            raise SourceOpenError(f"cannot start {self.description}: {exc}") from None
        _log.info("%s: waiting for a browser", self.description)

    def _read(self) -> Frame | None:
        with self._cond:
            while not self._queue and not self._stopping.is_set():
                self._cond.wait(1.0)
            if self._stopping.is_set():
                return None
            av_frame, stamp_ns, index, peer = self._queue.popleft()
        image = av_frame.to_ndarray(format="bgr24")
        self._size = (image.shape[1], image.shape[0])
        return Frame(image=image, stamp_ns=stamp_ns, index=index, meta={"sender": peer})

    def _close(self) -> None:
        self._shutdown()

    # -- the event loop thread --------------------------------------------------------------------

    def _run_loop(
        self,
        started: threading.Event,
        failure: list[BaseException],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._start_server(ssl_context))
            except BaseException as exc:  # reported by open()
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._stop_server())
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._loop = None

    async def _start_server(self, ssl_context: ssl.SSLContext | None) -> None:
        from aiohttp import web

        app = web.Application(client_max_size=1 << 20)
        app.router.add_get("/", self._handle_page)
        app.router.add_post("/offer", self._handle_offer)
        app.router.add_get("/status", self._handle_status)
        app.router.add_get("/favicon.ico", _no_content)
        self._offer_lock = asyncio.Lock()
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runner = runner
        try:
            site = web.TCPSite(
                runner, self._host or None, self._port, ssl_context=ssl_context, backlog=16
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            self._runner = None
            raise
        addresses = runner.addresses  # [(host, port, ...)] of the listening sockets
        self._bound_port = int(addresses[0][1]) if addresses else self._port

    async def _stop_server(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await self._end_session(session, None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # Let connections that were closing finish (aiortc's own tasks too), then cancel.
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            _done, pending = await asyncio.wait(others, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _shutdown(self) -> None:
        with self._cond:
            self._stopping.set()
            self._queue.clear()
            self._cond.notify_all()
        self._connected = False
        loop, thread = self._loop, self._thread
        self._thread = None
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
            if thread.is_alive():
                _log.warning("%s: event loop thread did not stop in 5 s", self.description)
        self._bound_port = None

    # -- HTTP handlers ----------------------------------------------------------------------------

    async def _handle_page(self, request: Any) -> Any:
        from aiohttp import web

        config = json.dumps({"video": self._video_constraints or True})
        page = _PAGE.replace("__CONFIG__", config.replace("</", "<\\/")).replace(
            "__DESCRIPTION__", html.escape(self.description)
        )
        return web.Response(text=page, content_type="text/html", headers=_NO_CACHE)

    async def _handle_status(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response(
            {
                "state": self.state,
                "sender": self.sender,
                "frames_read": self.frames_read,
                "reconnects": self.reconnects,
                "last_error": self.last_error,
            },
            headers=_NO_CACHE,
        )

    async def _handle_offer(self, request: Any) -> Any:
        from aiohttp import web
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        try:
            body = await request.json()
            sdp, kind = str(body["sdp"]), str(body["type"])
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text="expected JSON {sdp, type} of an SDP offer") from None
        if kind != "offer":
            raise web.HTTPBadRequest(text=f"expected an SDP offer, got {kind!r}")
        if self._ice_addresses is not None:
            sdp = strip_mdns_candidates(sdp)  # the browser's checks reach us anyway
        offer = RTCSessionDescription(sdp=sdp, type=kind)
        peer = request.remote or "unknown"
        async with self._offer_lock:
            if self._stopping.is_set():
                raise web.HTTPServiceUnavailable(text="the source is closing")
            # Empty iceServers: aiortc would otherwise add Google's STUN server.
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self._sessions_started += 1
            session = _Session(number=self._sessions_started, peer=peer, pc=pc)
            previous, self._session = self._session, session
            self._connected = False

            @pc.on("track")
            def on_track(track: Any) -> None:
                if track.kind == "video" and session.task is None:
                    session.task = asyncio.ensure_future(self._receive(session, track))

            @pc.on("connectionstatechange")
            async def on_state() -> None:
                if pc.connectionState in ("failed", "closed") and not session.ended:
                    await self._end_session(session, f"connection {pc.connectionState}")

            if previous is not None and not previous.ended:
                _log.warning("%s: new sender %s replaces %s", self.description, peer, previous.peer)
                await self._end_session(previous, f"replaced by a new sender ({peer})")
            try:
                await pc.setRemoteDescription(offer)
                if not any(t.kind == "video" for t in pc.getTransceivers()):
                    await self._end_session(session, "the offer has no video track")
                    raise web.HTTPBadRequest(text="the offer has no video track")
                # Candidates are gathered here: on the addresses chosen for our bind address.
                with ice_host_candidates(self._ice_addresses):
                    await pc.setLocalDescription(await pc.createAnswer())
            except web.HTTPException:
                raise
            except Exception as exc:
                await self._end_session(session, f"negotiation failed: {exc}")
                raise web.HTTPBadRequest(text=f"cannot answer the offer: {exc}") from None
        _log.info("%s: sender %s connecting", self.description, peer)
        answer = pc.localDescription
        return web.json_response({"sdp": answer.sdp, "type": answer.type}, headers=_NO_CACHE)

    # -- receiving --------------------------------------------------------------------------------

    async def _receive(self, session: _Session, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        reason = "the video track ended"
        first = True
        try:
            while not session.ended:
                try:
                    av_frame = await asyncio.wait_for(track.recv(), self._read_timeout_s)
                except asyncio.TimeoutError:
                    reason = f"no video for {self._read_timeout_s:g} s"
                    if first:  # never connected: say how far it got
                        pc = session.pc
                        reason += (
                            f" after the offer (ICE {pc.iceConnectionState}, "
                            f"connection {pc.connectionState})"
                        )
                    break
                except MediaStreamError:
                    break
                if session.ended:
                    return
                stamp_ns = time.time_ns()
                if first:
                    first = False
                    self._senders_seen += 1
                    self._connected = True
                    self._size = (av_frame.width, av_frame.height)
                    _log.info(
                        "%s: receiving %dx%d from %s",
                        self.description,
                        av_frame.width,
                        av_frame.height,
                        session.peer,
                    )
                with self._cond:
                    self._queue.append((av_frame, stamp_ns, self._next_index, session.peer))
                    self._next_index += 1
                    self._cond.notify_all()
        except asyncio.CancelledError:
            return
        if not session.ended:
            await self._end_session(session, reason)

    async def _end_session(self, session: _Session, reason: str | None) -> None:
        if session.ended:
            return
        session.ended = True
        if self._session is session:
            self._connected = False
            if reason is not None:
                message = (
                    f"{self.description}: sender {session.peer} disconnected ({reason}); "
                    "waiting for the next browser"
                )
                self._record_error(SourceDisconnected(message))
                _log.warning("%s", message)
        elif reason is not None:
            _log.info("%s: sender %s ended (%s)", self.description, session.peer, reason)
        task = session.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        await session.pc.close()


_NO_CACHE = {"Cache-Control": "no-store"}


async def _no_content(request: Any) -> Any:
    from aiohttp import web

    return web.Response(status=204)


# -- URI builder (registered for webrtc:// in edge_vision.sources.factory) ----------------------


def build_webrtc_source(uri: str, options: dict[str, Any]) -> WebRtcSource:
    """``webrtc://HOST[:PORT][/]`` -> an unopened :class:`WebRtcSource`; pops its options."""
    parts = urlsplit(uri)
    if parts.path not in ("", "/"):
        raise SourceOpenError(
            f"WebRTC source URI takes no path (the page is served at /): {uri!r}; "
            "use webrtc://HOST:PORT"
        )
    try:
        port = parts.port
    except ValueError:
        raise SourceOpenError(f"invalid port in {uri!r}") from None
    host = parts.hostname if parts.hostname is not None else "127.0.0.1"
    ice = options.pop("ice_addresses", None)
    if isinstance(ice, str):
        ice = tuple(a.strip() for a in ice.split(",") if a.strip())
    return WebRtcSource(
        host,
        DEFAULT_PORT if port is None else port,
        width=options.pop("width", None),
        height=options.pop("height", None),
        fps=options.pop("fps", None),
        queue_size=options.pop("queue_size", None) or 1,
        read_timeout_s=options.pop("read_timeout_s", None) or 5.0,
        open_timeout_s=options.pop("open_timeout_s", None) or 5.0,
        certfile=options.pop("certfile", None),
        keyfile=options.pop("keyfile", None),
        ice_addresses=tuple(ice) if ice else None,
    )

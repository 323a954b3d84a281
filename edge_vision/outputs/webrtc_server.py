"""WebRTC output (aiortc): ``/webrtc`` is a page that plays the stream, ``/offer`` its signalling.

The page creates an ``RTCPeerConnection`` with a receive-only video transceiver, gathers its
ICE candidates, POSTs the offer as JSON (``{"sdp": ..., "type": "offer"}``) to ``/offer`` and
plays the answer's stream in a ``<video>``; any WebRTC client can do the same (no trickle ICE:
candidates travel inside the SDP).

Encoding. With H.264 (``codec="h264"``, the default, when the browser offers it) one encoder
(libx264 through PyAV: ultrafast, zerolatency, baseline, ``bitrate_kbps``, a keyframe every
``keyframe_interval_s``) serves every peer: each peer's track hands the encoded packets to
aiortc, which only packetizes them. A peer that joins waits for a keyframe (one is forced at
once); a peer too slow to take its packets is cut back to the next keyframe rather than
holding the others. The encoder runs only while a peer is connected. With VP8 (``codec="vp8"``
or a browser without H.264) aiortc encodes for each peer separately, with its own congestion
control (REMB) choosing the bitrate.

ICE stays where the HTTP server listens. aiortc is given no STUN/TURN server (its default would
be Google's STUN server), and the host candidates it offers are ``ice_addresses``: by default
the bind address, so 127.0.0.1 when bound to loopback. aioice never offers 127.0.0.1 on its own
(its ``get_host_addresses`` skips it) and has no option to choose addresses, so
:func:`edge_vision.core.ice.ice_host_candidates` (shared with the WebRTC source) sets them
around this module's ``setRemoteDescription``/``setLocalDescription`` calls only, so other
aiortc users in the same process are not affected. With
restricted addresses the offer's mDNS (``*.local``) candidates are dropped too (resolving them
would send multicast queries off the machine; the browser's connectivity checks reach us anyway
and become peer-reflexive candidates).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
from aiohttp import web
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av.video.frame import PictureType

from edge_vision.core.ice import ice_host_candidates, strip_mdns_candidates
from edge_vision.outputs.frame_hub import DurationStats, FrameHub, Pacer, RateMeter
from edge_vision.outputs.http_server import AsyncFrames, HttpServer

__all__ = [
    "CODECS",
    "WebRtcOutput",
    "WebRtcSettings",
    "WebRtcStats",
]

log = logging.getLogger(__name__)

OUTPUT = "webrtc"
CODECS = ("h264", "vp8")
VIDEO_CLOCK = 90_000
CONNECT_TIMEOUT_S = 30.0
"""A peer that has not connected this long after its offer is closed."""
KEEPALIVE_S = 1.0
_QUEUE = 30
"""Encoded frames a peer may lag behind before it is cut back to the next keyframe."""


def offered_codecs(sdp: str) -> set[str]:
    """Lower-case video codec names in an SDP's rtpmap lines (``{"vp8", "h264", ...}``)."""
    return {m.lower() for m in re.findall(r"^a=rtpmap:\d+ ([A-Za-z0-9-]+)/90000", sdp, re.M)}


# -- settings and stats -------------------------------------------------------------------------


@dataclass
class WebRtcSettings:
    max_fps: float = 30.0
    bitrate_kbps: int = 1500
    """The shared H.264 encoder's bitrate (read when it starts)."""
    keyframe_interval_s: float = 2.0
    codec: str = "h264"
    max_peers: int = 4


@dataclass(frozen=True)
class WebRtcStats:
    peers: int
    """Peer connections open (connecting or connected)."""
    connected: int
    fps_out: float
    """Frames encoded per second by the shared H.264 encoder plus frames handed to VP8 peers."""
    frames_out: int
    encode_ms: tuple[float, float] | None
    """Shared H.264 encoder's time per frame (median, max); VP8 encoding is inside aiortc."""


# -- the shared H.264 encoder -------------------------------------------------------------------


@dataclass(frozen=True)
class _Unit:
    packet: av.Packet
    keyframe: bool


class _H264Encoder:
    """Encodes the hub's newest frames once for every subscribed track (on the server loop)."""

    def __init__(self, output: WebRtcOutput) -> None:
        self.output = output
        self._tracks: set[_PacketTrack] = set()
        self._task: asyncio.Task[None] | None = None
        self._want_key = True
        self._codec: av.VideoCodecContext | None = None
        self._size: tuple[int, int] | None = None
        self._t0 = time.monotonic()
        self._last_pts = -1

    def subscribe(self, track: _PacketTrack) -> None:
        self._tracks.add(track)
        self._want_key = True
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def unsubscribe(self, track: _PacketTrack) -> None:
        self._tracks.discard(track)

    def request_keyframe(self) -> None:
        self._want_key = True

    async def _run(self) -> None:
        output = self.output
        frames = output.frames()
        pacer = Pacer(output.settings.max_fps)
        loop = asyncio.get_running_loop()
        last: np.ndarray | None = None
        last_seq = 0
        last_encode = 0.0
        output.hub.acquire(OUTPUT)
        try:
            while self._tracks and not output.closing:
                pacer.max_fps = output.settings.max_fps
                delay = pacer.delay()
                if delay > 0:
                    await asyncio.sleep(delay)
                frame = await frames.next(last_seq, 0.25)
                if not self._tracks or output.closing:
                    break
                if frame is not None:
                    last_seq, image = frame.seq, frame.image
                elif last is not None and (
                    self._want_key or time.monotonic() - last_encode >= KEEPALIVE_S
                ):
                    image = last  # quiet topic: repeat (as a keyframe if someone joined)
                else:
                    continue
                key, self._want_key = self._want_key, False
                packets = await loop.run_in_executor(None, self._encode, image, key)
                last, last_encode = image, time.monotonic()
                pacer.sent(last_encode)
                output.rate.tick(last_encode)
                for packet in packets:
                    self._distribute(_Unit(packet, bool(packet.is_keyframe)))
        except Exception:
            log.exception("WebRTC H.264 encoder failed")
            for track in list(self._tracks):
                track.end()
        finally:
            output.hub.release(OUTPUT)
            self._codec = None  # a new session starts with a fresh encoder (and settings)
            self._size = None

    def _open(self, width: int, height: int) -> av.VideoCodecContext:
        settings = self.output.settings
        fps = max(1, round(settings.max_fps if settings.max_fps > 0 else 30))
        codec = av.CodecContext.create("libx264", "w")
        codec.width, codec.height = width, height
        codec.pix_fmt = "yuv420p"
        codec.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        codec.framerate = fractions.Fraction(fps, 1)
        codec.bit_rate = int(settings.bitrate_kbps) * 1000
        codec.gop_size = max(1, round(fps * settings.keyframe_interval_s))
        # Baseline (what browsers decode in WebRTC), no B-frames, no lookahead, one thread:
        # the build machines have two shared cores. SPS/PPS go in-band with every keyframe.
        codec.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": "baseline",
            "threads": "1",
        }
        return codec

    def _encode(self, image: np.ndarray, keyframe: bool) -> list[av.Packet]:
        started = time.perf_counter()
        height, width = image.shape[:2]
        width, height = width - width % 2, height - height % 2  # yuv420p needs even sizes
        if self._codec is None or self._size != (width, height):
            self._codec = self._open(width, height)
            self._size = (width, height)
            keyframe = True
        frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(image[:height, :width]), format="bgr24"
        )
        pts = int((time.monotonic() - self._t0) * VIDEO_CLOCK)
        pts = self._last_pts = max(pts, self._last_pts + 1)
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        packets = list(self._codec.encode(frame))
        for packet in packets:
            packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.output.encode_ms.add((time.perf_counter() - started) * 1e3)
        return packets

    def _distribute(self, unit: _Unit) -> None:
        for track in list(self._tracks):
            if track.need_key:
                if not unit.keyframe:
                    continue
                track.need_key = False
            try:
                track.queue.put_nowait(unit)
            except asyncio.QueueFull:
                # Too slow to keep up: drop its backlog and restart it at the next keyframe.
                while not track.queue.empty():
                    track.queue.get_nowait()
                track.need_key = True
                self._want_key = True


# -- tracks -------------------------------------------------------------------------------------


class _PacketTrack(MediaStreamTrack):
    """Hands the shared encoder's packets to one peer's RTCRtpSender (no encoding there)."""

    kind = "video"

    def __init__(self, encoder: _H264Encoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.queue: asyncio.Queue[_Unit | None] = asyncio.Queue(maxsize=_QUEUE)
        self.need_key = True
        self._subscribed = False

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if not self._subscribed:  # aiortc asks once the peer is connected: encode from now
            self._subscribed = True
            self.encoder.subscribe(self)
        unit = await self.queue.get()
        if unit is None:
            raise MediaStreamError
        return unit.packet

    def end(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)

    def stop(self) -> None:
        super().stop()
        self.encoder.unsubscribe(self)
        self.end()


class _FrameTrack(MediaStreamTrack):
    """Raw frames for one peer; aiortc encodes them (VP8)."""

    kind = "video"

    def __init__(self, output: WebRtcOutput) -> None:
        super().__init__()
        self.output = output
        self._frames = output.frames()
        self._pacer = Pacer(output.settings.max_fps)
        self._last_seq = 0
        self._last: np.ndarray | None = None
        self._last_sent = 0.0
        self._t0 = time.monotonic()
        self._last_pts = -1
        self._acquired = False

    async def recv(self) -> av.VideoFrame:
        if not self._acquired and self.readyState == "live":
            self._acquired = True  # aiortc asks once the peer is connected
            self.output.hub.acquire(OUTPUT)
        while True:
            if self.readyState != "live" or self.output.closing:
                raise MediaStreamError
            self._pacer.max_fps = self.output.settings.max_fps
            delay = self._pacer.delay()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = await self._frames.next(self._last_seq, 0.25)
            if frame is not None:
                self._last_seq, image = frame.seq, frame.image
            elif self._last is not None and time.monotonic() - self._last_sent >= KEEPALIVE_S:
                image = self._last
            else:
                continue
            self._last = image
            self._last_sent = time.monotonic()
            self._pacer.sent(self._last_sent)
            self.output.rate.tick(self._last_sent)
            video = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            pts = int((self._last_sent - self._t0) * VIDEO_CLOCK)
            video.pts = self._last_pts = max(pts, self._last_pts + 1)
            video.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            return video

    def stop(self) -> None:
        super().stop()
        if self._acquired:
            self._acquired = False
            self.output.hub.release(OUTPUT)


# -- the page -----------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title} (WebRTC)</title>
<style>body{{margin:0;background:#111;color:#ddd;font:14px sans-serif}}
video{{display:block;max-width:100vw;max-height:95vh;margin:auto;background:#000}}
p{{text-align:center}}</style></head>
<body><video id="video" autoplay muted playsinline></video>
<p>{title} &middot; <span id="state">starting</span></p>
<script>
"use strict";
const video = document.getElementById("video");
const stateText = document.getElementById("state");
const status = window.edgeVision = {{state: "starting", error: null, pc: null}};
function show(state) {{ status.state = state; stateText.textContent = state; }}
function gathered(pc) {{
  return new Promise((resolve) => {{
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => {{ if (pc.iceGatheringState === "complete") resolve(); }};
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);  // send what we have
  }});
}}
async function start() {{
  const pc = status.pc = new RTCPeerConnection({{iceServers: []}});
  pc.addTransceiver("video", {{direction: "recvonly"}});
  pc.ontrack = (event) => {{
    video.srcObject = event.streams[0] || new MediaStream([event.track]);
    video.play().catch(() => {{}});
  }};
  pc.onconnectionstatechange = () => {{
    show(pc.connectionState);
    if (pc.connectionState === "failed") {{ pc.close(); setTimeout(start, 2000); }}
  }};
  try {{
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const response = await fetch("offer", {{
      method: "POST",
      headers: {{"Content-Type": "application/json"}},
      body: JSON.stringify({{sdp: pc.localDescription.sdp, type: pc.localDescription.type}}),
    }});
    if (!response.ok) throw new Error(response.status + " " + await response.text());
    await pc.setRemoteDescription(await response.json());
    show("connecting");
  }} catch (err) {{
    status.error = String(err); show("error: " + err); pc.close(); setTimeout(start, 2000);
  }}
}}
window.addEventListener("pagehide", () => status.pc && status.pc.close());
start();
</script></body></html>
"""


# -- the output ---------------------------------------------------------------------------------


class WebRtcOutput:
    """Adds ``/webrtc`` and ``/offer`` to ``server``'s app on ``port``."""

    def __init__(
        self,
        hub: FrameHub,
        server: HttpServer,
        port: int,
        *,
        settings: WebRtcSettings | None = None,
        ice_addresses: Sequence[str] | None = ("127.0.0.1",),
        title: str = "edge_vision",
    ) -> None:
        self.hub = hub
        self.server = server
        self.port = port
        self.settings = settings or WebRtcSettings()
        self.ice_addresses = tuple(ice_addresses) if ice_addresses is not None else None
        self.title = title
        self.closing = False
        self.rate = RateMeter()
        self.encode_ms = DurationStats()
        self._frames: AsyncFrames | None = None
        self._encoder = _H264Encoder(self)
        self._peers: set[Any] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        app = server.app(port)
        app.router.add_get("/webrtc", self._page)
        app.router.add_post("/offer", self._offer)
        server.on_stop(self._stop)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.server.host in ("0.0.0.0", "") else self.server.host
        return f"http://{host}:{self.server.ports.get(self.port, self.port)}/webrtc"

    def frames(self) -> AsyncFrames:
        if self._frames is None:
            self._frames = AsyncFrames(self.hub, asyncio.get_running_loop())
        return self._frames

    def stats(self) -> WebRtcStats:
        peers = list(self._peers)
        return WebRtcStats(
            peers=len(peers),
            connected=sum(pc.connectionState == "connected" for pc in peers),
            fps_out=self.rate.rate(),
            frames_out=self.rate.total,
            encode_ms=self.encode_ms.summary(),
        )

    async def _page(self, _request: web.Request) -> web.Response:
        import html

        body = _PAGE.format(title=html.escape(self.title))
        return web.Response(text=body, content_type="text/html")

    async def _offer(self, request: web.Request) -> web.Response:
        try:
            params = await request.json()
            sdp, kind = str(params["sdp"]), str(params.get("type", "offer"))
        except (ValueError, KeyError, TypeError):
            raise web.HTTPBadRequest(text='expected JSON {"sdp": ..., "type": "offer"}') from None
        if kind != "offer":
            raise web.HTTPBadRequest(text=f"expected an offer, got {kind!r}")
        limit = self.settings.max_peers
        if limit > 0 and len(self._peers) >= limit:
            raise web.HTTPServiceUnavailable(text=f"at most {limit} WebRTC peers")
        if self.closing:
            raise web.HTTPServiceUnavailable(text="shutting down")
        if self.ice_addresses is not None:
            sdp = strip_mdns_candidates(sdp)
        offered = offered_codecs(sdp)
        codec = self.settings.codec
        if codec == "h264" and "h264" not in offered:
            codec = "vp8"
        if codec not in offered:
            raise web.HTTPBadRequest(text=f"the offer has no video codec we send ({offered})")

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: stay local
        self._peers.add(pc)
        track: Any = None

        async def close() -> None:
            self._peers.discard(pc)
            if track is not None:
                track.stop()
            await pc.close()

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await close()

        try:
            with ice_host_candidates(self.ice_addresses):
                # The transceiver and its codec preferences exist before the offer is applied:
                # aiortc picks the codecs while applying it (and matches the offer's video
                # m-line to this transceiver).
                track = _PacketTrack(self._encoder) if codec == "h264" else _FrameTrack(self)
                transceiver = pc.addTransceiver(track, direction="sendonly")
                wanted = {"h264": "video/H264", "vp8": "video/VP8"}[codec]
                transceiver.setCodecPreferences(
                    [
                        c
                        for c in RTCRtpSender.getCapabilities("video").codecs
                        if c.mimeType in (wanted, "video/rtx")
                    ]
                )
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            await close()
            log.warning("WebRTC offer failed: %s", exc)
            raise web.HTTPBadRequest(text=f"cannot answer the offer: {exc}") from None

        async def watchdog() -> None:
            await asyncio.sleep(CONNECT_TIMEOUT_S)
            if pc.connectionState not in ("connected", "closed"):
                await close()

        task = asyncio.get_running_loop().create_task(watchdog())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        answer = pc.localDescription
        return web.Response(
            text=json.dumps({"sdp": answer.sdp, "type": answer.type}),
            content_type="application/json",
        )

    async def _stop(self) -> None:
        self.closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*(pc.close() for pc in list(self._peers)), return_exceptions=True)
        self._peers.clear()
        if self._frames is not None:
            self._frames.close()

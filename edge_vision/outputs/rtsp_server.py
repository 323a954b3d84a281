"""RTSP output: GStreamer's gst-rtsp-server fed with the newest frames of a :class:`FrameHub`.

One shared media per mount (``rtsp://HOST:PORT/PATH``): however many clients play it there is
one pipeline ``appsrc ! videoconvert ! x264enc tune=zerolatency ! rtph264pay``, built when the
first client asks for the stream and torn down (gst-rtsp-server unprepares a shared media)
after the last one left, so nothing is encoded while nobody watches. A pusher thread takes the
newest frame from the hub (at most ``max_fps``), converts it to I420 with OpenCV (where the
layouts agree; else videoconvert does it) and pushes it into ``appsrc`` stamped with the
pipeline's running time; appsrc keeps at most two frames and drops the oldest, so a slow
encoder never backs up the subscription. When the topic goes quiet the last frame is pushed
again once a second, which keeps clients' decoders and RTCP alive; a joining client gets a
forced keyframe at once. A stream that gets no frame within 5 s of being asked for fails, and
its client gets an error reply.

The server runs in this process on a GLib main loop in its own thread (each client is served
from gst-rtsp-server's thread pool); callers only use :class:`RtspOutput`'s methods. Load
order matters (see ``_import_gst``): create the process's rclpy participant first.

Needs PyGObject and Debian ``gir1.2-gst-rtsp-server-1.0`` + ``gstreamer1.0-plugins-{base,good,
ugly}`` (x264enc). :func:`rtsp_unavailable_reason` says what is missing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edge_vision.outputs.frame_hub import DurationStats, FrameHub, Pacer, RateMeter

__all__ = ["RtspOutput", "RtspSettings", "RtspStats", "rtsp_unavailable_reason"]

log = logging.getLogger(__name__)

OUTPUT = "rtsp"
KEEPALIVE_S = 1.0
"""Push the last frame again after this long without a new one."""
CAPS_WAIT_S = 2.0
"""How long the first client's request waits for a frame to take the stream's size from."""
FIRST_FRAME_TIMEOUT_S = 5.0
"""A stream that got no frame this long after a client asked for it fails (the client gets an
error reply) instead of leaving the client waiting for a description that never comes."""
_ELEMENTS = ("appsrc", "videoconvert", "x264enc", "rtph264pay")


@dataclass
class RtspSettings:
    """Read when a stream starts (bitrate, keyframe interval) or on every frame (max_fps)."""

    max_fps: float = 30.0
    bitrate_kbps: int = 2000
    keyframe_interval_s: float = 1.0


@dataclass(frozen=True)
class RtspStats:
    clients: int
    streaming: bool
    fps_out: float
    frames_out: int
    encode_ms: tuple[float, float] | None
    """(median, max) x264enc time per frame over the recent frames."""


def _import_gst() -> tuple[Any, Any, Any, Any]:
    # Load order matters: GStreamer (through gi) puts libunwind's _Unwind_Resume into the
    # process's global symbol scope, and an rclpy/Fast DDS participant created *afterwards* in
    # the same process crashes (SIGSEGV or abort) on the first C++ exception Fast DDS throws and
    # catches internally (it does when a UDP port it tries is taken). Participants that already
    # exist are fine: the node imports this module only after its own participant is created.
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    gi.require_version("GstVideo", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer, GstVideo

    if not Gst.is_initialized():
        Gst.init(None)
    return GLib, Gst, GstRtspServer, GstVideo


def rtsp_unavailable_reason() -> str | None:
    """None when the RTSP output can run here, else what is missing."""
    try:
        _, gst, _, _ = _import_gst()
    except (ImportError, ValueError) as exc:
        return (
            f"GStreamer RTSP server bindings not available ({exc}): install PyGObject and "
            "gir1.2-gst-rtsp-server-1.0"
        )
    missing = [name for name in _ELEMENTS if gst.ElementFactory.find(name) is None]
    if missing:
        return f"GStreamer elements missing: {', '.join(missing)}"
    return None


class _MediaFeed:
    """One prepared media: its appsrc, the pusher thread and the encoder probes."""

    def __init__(self, output: RtspOutput, media: Any) -> None:
        self.output = output
        self.media = media
        bin_ = media.get_element()
        self.appsrc = bin_.get_by_name_recurse_up("src")
        self.encoder = bin_.get_by_name_recurse_up("enc")
        self.stopped = threading.Event()
        self.want_key = threading.Event()
        self.size: tuple[int, int] | None = None
        self.i420 = False
        self._enc_start: deque[float] = deque(maxlen=8)
        self._gst = output._gst
        settings = output.settings
        self.encoder.set_property("bitrate", int(settings.bitrate_kbps))
        self._add_probes()
        self.thread = threading.Thread(target=self._run, name="rtsp-pusher", daemon=True)

    def _add_probes(self) -> None:
        gst = self._gst

        # x264enc rewrites timestamps (it adds an offset), so frames are matched by order:
        # with tune=zerolatency there is no lookahead and no reordering, one frame in, one out.
        def before(_pad: Any, _info: Any) -> Any:
            self._enc_start.append(time.perf_counter())
            return gst.PadProbeReturn.OK

        def after(_pad: Any, _info: Any) -> Any:
            if self._enc_start:
                started = self._enc_start.popleft()
                self.output._encode_ms.add((time.perf_counter() - started) * 1e3)
            self.output._rate.tick()
            return gst.PadProbeReturn.OK

        self.encoder.get_static_pad("sink").add_probe(gst.PadProbeType.BUFFER, before)
        self.encoder.get_static_pad("src").add_probe(gst.PadProbeType.BUFFER, after)

    def start(self) -> None:
        self.output.hub.acquire(OUTPUT)
        self.thread.start()

    def stop(self) -> None:
        if not self.stopped.is_set():
            self.stopped.set()
            self.output.hub.release(OUTPUT)
            self.output.hub.wake_all()

    def _caps(self, width: int, height: int) -> Any:
        rate = self.output.hub.input_rate.rate()
        max_fps = self.output.settings.max_fps
        fps = min(rate, max_fps) if rate > 0 and max_fps > 0 else (rate or max_fps or 30.0)
        # Nominal only (buffers carry real timestamps); x264's rate control budgets by it.
        fps = max(1, round(fps))
        pixels = "I420" if self.i420 else "BGR"
        return self._gst.Caps.from_string(
            f"video/x-raw,format={pixels},width={width},height={height},framerate={fps}/1"
        )

    def set_caps(self, width: int, height: int) -> None:
        """Fix the stream's size and pixel format (once, from the first frame)."""
        self.size = (width, height)
        # GStreamer's I420 layout equals OpenCV's when the chroma rows need no padding
        # (4-byte aligned strides); otherwise BGR goes in and videoconvert converts.
        self.i420 = width % 8 == 0 and height % 2 == 0
        self.appsrc.set_property("caps", self._caps(width, height))

    def _convert(self, image: np.ndarray) -> bytes:
        """The frame as the bytes appsrc's caps promise (scaled to the stream's size)."""
        if (image.shape[1], image.shape[0]) != self.size:
            # The stream keeps the size it started with; SDP and clients rely on it.
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        if self.i420:
            # OpenCV's SIMD conversion is several times faster than videoconvert (which then
            # passes the buffers through), and half the bytes travel on.
            return cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes()
        return np.ascontiguousarray(image).tobytes()

    def _run(self) -> None:
        hub = self.output.hub
        pacer = Pacer(self.output.settings.max_fps)
        last: bytes | None = None
        last_seq = 0
        last_push = 0.0
        started = time.monotonic()
        try:
            while not self.stopped.is_set():
                if last is None and time.monotonic() - started > FIRST_FRAME_TIMEOUT_S:
                    self._fail("no frame on the image topic")
                    return
                pacer.max_fps = self.output.settings.max_fps
                wait = pacer.delay()
                if wait > 0 and self.stopped.wait(wait):
                    break
                frame = hub.wait_newer(last_seq, timeout=0.25)
                if self.stopped.is_set():
                    break
                if frame is not None:
                    last_seq = frame.seq
                    if self.size is None:
                        self.set_caps(*frame.size)
                    data = self._convert(frame.image)
                elif last is not None and time.monotonic() - last_push >= KEEPALIVE_S:
                    data = last
                else:
                    continue
                if not self._push(data):
                    continue  # the media is not playing yet: the next frame will be
                last = data
                last_push = time.monotonic()
                pacer.sent(last_push)
        except Exception:  # a pusher bug must not kill the process; clients see the stream end
            log.exception("RTSP pusher failed")

    def _fail(self, reason: str) -> None:
        """Post an error on the media's pipeline: gst-rtsp-server answers the waiting client
        with an error and unprepares the media."""
        gst = self._gst
        error = self.output._glib.Error.new_literal(
            gst.ResourceError.quark(), reason, int(gst.ResourceError.NOT_FOUND)
        )
        log.warning("RTSP stream failed: %s", reason)
        self.appsrc.post_message(gst.Message.new_error(self.appsrc, error, reason))

    def _push(self, data: bytes) -> bool:
        """Push one frame, stamped with the pipeline's running time; False (nothing pushed)
        while the pipeline is not playing yet.

        Not appsrc's do-timestamp: a buffer pushed from this thread while the media was still
        being prepared could be stamped against a base time not set yet, far in the future,
        and the sink then waited for it: the stream stalled after its first frame (about one
        start in ten, measured)."""
        gst = self._gst
        clock = self.appsrc.get_clock()
        if clock is None or self.appsrc.current_state != gst.State.PLAYING:
            return False
        base_time = self.appsrc.get_base_time()
        now = clock.get_time()
        if now < base_time:
            return False
        if self.want_key.is_set():
            self.want_key.clear()
            self.appsrc.send_event(
                self.output._gst_video.video_event_new_downstream_force_key_unit(
                    gst.CLOCK_TIME_NONE, gst.CLOCK_TIME_NONE, gst.CLOCK_TIME_NONE, True, 0
                )
            )
        buffer = gst.Buffer.new_wrapped(data)
        buffer.pts = now - base_time
        self.appsrc.emit("push-buffer", buffer)
        return True


class RtspOutput:
    """Serve ``hub`` at ``rtsp://host:port/path`` (H.264) until ``stop()``."""

    def __init__(
        self,
        hub: FrameHub,
        *,
        host: str = "127.0.0.1",
        port: int = 8554,
        path: str = "/stream",
        settings: RtspSettings | None = None,
    ) -> None:
        self.hub = hub
        self.host = host
        self.port = port
        self.path = path if path.startswith("/") else f"/{path}"
        self.settings = settings or RtspSettings()
        self._glib, self._gst, self._rtsp, self._gst_video = _import_gst()
        self._lock = threading.Lock()
        self._clients: set[Any] = set()
        self._feeds: dict[int, _MediaFeed] = {}
        self._rate = RateMeter()
        self._encode_ms = DurationStats()
        self._context: Any = None
        self._loop: Any = None
        self._server: Any = None
        self._source_id = 0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"rtsp://{host}:{self.port}{self.path}"

    def start(self) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        glib, rtsp = self._glib, self._rtsp
        launch = (
            "( appsrc name=src is-live=true format=time block=false "
            "max-bytes=0 max-buffers=2 leaky-type=downstream "
            "! videoconvert ! video/x-raw,format=I420 "
            "! x264enc name=enc tune=zerolatency speed-preset=ultrafast threads=1 "
            f"key-int-max={self._keyint()} "
            "! video/x-h264,profile=constrained-baseline "
            "! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        self._context = glib.MainContext.new()
        server = rtsp.RTSPServer()
        server.set_address(self.host)
        server.set_service(str(self.port))
        factory = rtsp.RTSPMediaFactory()
        factory.set_launch(launch)
        factory.set_shared(True)  # one encoder however many clients
        factory.connect("media-configure", self._on_media_configure)
        server.connect("client-connected", self._on_client_connected)
        server.get_mount_points().add_factory(self.path, factory)
        pool = server.get_thread_pool()
        pool.set_max_threads(16)  # a client in its own thread: a slow one does not stall others
        try:
            self._source_id = server.attach(self._context)
        except glib.Error as exc:
            raise OSError(f"cannot listen on {self.host}:{self.port}: {exc.message}") from None
        if self._source_id == 0:
            raise OSError(f"cannot listen on {self.host}:{self.port}")
        self.port = int(server.get_bound_port())  # the one chosen when 0 was asked for
        self._server = server
        # Sessions of clients that vanished without TEARDOWN time out; sweep them regularly.
        cleanup = glib.timeout_source_new_seconds(2)
        cleanup.set_callback(lambda *_: server.get_session_pool().cleanup() >= 0)
        cleanup.attach(self._context)
        self._loop = glib.MainLoop.new(self._context, False)
        self._thread = threading.Thread(target=self._loop.run, name="rtsp-server", daemon=True)
        self._thread.start()

    def _keyint(self) -> int:
        fps = self.settings.max_fps if self.settings.max_fps > 0 else 30.0
        return max(1, round(fps * self.settings.keyframe_interval_s))

    # -- signals (gst-rtsp-server threads) ----------------------------------------------------
    def _on_media_configure(self, _factory: Any, media: Any) -> None:
        feed = _MediaFeed(self, media)
        feed.encoder.set_property("key-int-max", self._keyint())
        # Caps (the stream's size) before the pipeline starts, so negotiation happens once. The
        # first client may have just caused the subscription: wait a little for a frame (this
        # runs in that client's thread); without one the pusher sets them from the first frame.
        self.hub.acquire(OUTPUT)
        try:
            frame = self.hub.latest() or self.hub.wait_newer(0, CAPS_WAIT_S)
        finally:
            self.hub.release(OUTPUT)
        if frame is not None:
            feed.set_caps(*frame.size)
        key = id(media)
        with self._lock:
            self._feeds[key] = feed
        media.connect("unprepared", lambda _m: self._drop_feed(key))
        feed.start()

    def _drop_feed(self, key: int) -> None:
        with self._lock:
            feed = self._feeds.pop(key, None)
        if feed is not None:
            feed.stop()

    def _on_client_connected(self, _server: Any, client: Any) -> None:
        with self._lock:
            self._clients.add(client)
        client.connect("closed", self._on_client_closed)
        # The encoder's first keyframe is made while the media is prepared, before PLAY, so a
        # joining client would wait up to a keyframe interval: ask for one now.
        client.connect("play-request", lambda _c, _ctx: self._want_keyframe())

    def _on_client_closed(self, client: Any) -> None:
        with self._lock:
            self._clients.discard(client)

    def _want_keyframe(self) -> None:
        with self._lock:
            feeds = list(self._feeds.values())
        for feed in feeds:
            feed.want_key.set()

    # -- status and shutdown ----------------------------------------------------------------
    def stats(self) -> RtspStats:
        with self._lock:
            clients = len(self._clients)
            streaming = bool(self._feeds)
        return RtspStats(
            clients=clients,
            streaming=streaming,
            fps_out=self._rate.rate(),
            frames_out=self._rate.total,
            encode_ms=self._encode_ms.summary(),
        )

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            done = threading.Event()

            def shutdown() -> bool:
                # Close every client connection (their media is unprepared), stop listening.
                server.client_filter(lambda *_: self._rtsp.RTSPFilterResult.REMOVE)
                if self._source_id:
                    source = self._context.find_source_by_id(self._source_id)
                    if source is not None:
                        source.destroy()
                done.set()
                return False

            idle = self._glib.idle_source_new()
            idle.set_callback(lambda *_: shutdown())
            idle.attach(self._context)
            done.wait(5.0)
        with self._lock:
            feeds = list(self._feeds.values())
            self._feeds.clear()
        for feed in feeds:
            feed.stop()
            feed.media.unprepare()
        if self._loop is not None:
            self._loop.quit()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

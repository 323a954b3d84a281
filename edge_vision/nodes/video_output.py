"""video_output: serves one image topic as RTSP, MJPEG over HTTP and WebRTC.

Topics: subscribes ``image`` (sensor_msgs/Image, best effort; remap it or set ``topic``), e.g.
the detector's ``overlay``; publishes ``/diagnostics`` (clients, fps out and encode time per
output, input rate, the URLs).

Outputs (each one can be switched off; every client gets the newest frame, several at once):

- RTSP ``rtsp://HOST:rtsp_port/rtsp_path``: GStreamer RTSP server, H.264 (x264enc
  zerolatency), one shared encoder for every client;
- MJPEG ``http://HOST:http_port/stream.mjpg`` (multipart/x-mixed-replace), ``/snapshot.jpg``,
  and ``/`` (a page showing the stream);
- WebRTC ``http://HOST:webrtc_port/webrtc`` (a page that plays it; signalling ``POST /offer``),
  aiortc, one shared H.264 encoder for every peer (VP8 per peer where the browser has no H.264).

Everything listens on ``bind_address`` (127.0.0.1 unless configured). With ``on_demand`` (the
default) the node subscribes to the topic only while a client watches and unsubscribes 2 s after
the last one left, so an idle output costs nothing: no deserialising, no encoding, and an
upstream node that draws its overlay only for subscribers (the detector) stops drawing too.

Frames go through a newest-frame hub (edge_vision/outputs/frame_hub.py): the subscription
replaces the previous frame and each output takes the newest one at its own pace, so a slow
client or encoder skips frames and never delays the subscription or another client; a client
that disconnects ends only its own session.

Parameters marked read-only are read at start-up (ports, enables, addresses); the rates,
quality, bitrates and limits apply while the node runs (bitrates from the next stream start).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.subscription import Subscription
from sensor_msgs.msg import Image

from edge_vision.outputs.frame_hub import FrameHub
from edge_vision.ros import diagnostics
from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import sensor_subscriber_qos

IDLE_UNSUBSCRIBE_S = 2.0
"""With on_demand, unsubscribe this long after the last client left (a reloading page or a
reconnecting player comes back within it)."""
NO_FRAMES_WARN_S = 3.0


def _check_path(path: str) -> str | None:
    if not path.startswith("/") or len(path) < 2 or any(c.isspace() for c in path):
        return f"rtsp_path {path!r} must start with / and name a mount, e.g. /stream"
    return None


def _check_addresses(items: list[str]) -> str | None:
    import ipaddress

    for item in items:
        if not item.strip():
            continue
        try:
            ipaddress.ip_address(item.strip())
        except ValueError:
            return f"webrtc_ice_addresses entry {item!r} is not an IP address"
    return None


_PORT = (0, 65535)
_FPS = (0.0, 240.0)

PARAMS = (
    Param(
        "topic",
        "image",
        "Image topic to serve (relative names resolve in the node's namespace); or remap image.",
    ),
    Param(
        "bind_address",
        "127.0.0.1",
        "Address every server listens on; 0.0.0.0 = all interfaces (other machines can watch).",
        read_only=True,
    ),
    Param(
        "on_demand",
        True,
        "Subscribe to the topic only while a client watches (no work at all when nobody does).",
    ),
    Param(
        "width",
        0,
        "Scale frames to this width before serving (0 = keep; with height 0 the aspect "
        "ratio is kept).",
        range=(0, 8192),
    ),
    Param("height", 0, "Scale frames to this height (0 = keep).", range=(0, 8192)),
    Param(
        "keyframe_interval_s",
        1.0,
        "Seconds between H.264 keyframes (RTSP and WebRTC; applies from the next stream start).",
        range=(0.1, 60.0),
    ),
    # RTSP
    Param("rtsp", True, "Serve RTSP (GStreamer RTSP server, H.264).", read_only=True),
    Param("rtsp_port", 8554, "RTSP port (0 = any free port; see the log).", _PORT, read_only=True),
    Param(
        "rtsp_path",
        "/stream",
        "RTSP mount: rtsp://HOST:PORT/PATH.",
        read_only=True,
        validator=_check_path,
    ),
    Param("rtsp_max_fps", 30.0, "Most frames/s sent over RTSP (0 = as they come).", _FPS),
    Param(
        "rtsp_bitrate_kbps",
        2000,
        "RTSP H.264 bitrate in kbit/s (from the next stream start).",
        range=(50, 100_000),
    ),
    # HTTP: MJPEG
    Param(
        "http_port",
        8080,
        "HTTP port of the MJPEG stream and pages (0 = any free port).",
        _PORT,
        read_only=True,
    ),
    Param(
        "mjpeg",
        True,
        "Serve MJPEG: /stream.mjpg, /snapshot.jpg and a page at /.",
        read_only=True,
    ),
    Param("mjpeg_max_fps", 15.0, "Most frames/s per MJPEG client (0 = as they come).", _FPS),
    Param("jpeg_quality", 80, "JPEG quality of MJPEG frames and snapshots.", range=(1, 100)),
    Param("mjpeg_max_clients", 16, "Most MJPEG stream clients (0 = no limit).", range=(0, 10_000)),
    # WebRTC
    Param("webrtc", True, "Serve WebRTC: a page at /webrtc, signalling at /offer.", read_only=True),
    Param(
        "webrtc_port",
        0,
        "HTTP port of the WebRTC page and signalling (0 = http_port).",
        _PORT,
        read_only=True,
    ),
    Param("webrtc_max_fps", 30.0, "Most frames/s sent over WebRTC (0 = as they come).", _FPS),
    Param(
        "webrtc_bitrate_kbps",
        1500,
        "Bitrate of the shared WebRTC H.264 encoder in kbit/s (from the next stream start; "
        "VP8 peers are rate-controlled by aiortc).",
        range=(50, 100_000),
    ),
    Param(
        "webrtc_codec",
        "h264",
        "h264: one encoder shared by every peer (VP8 for a browser without H.264); "
        "vp8: aiortc encodes for each peer.",
        choices=("h264", "vp8"),
    ),
    Param("webrtc_max_peers", 4, "Most WebRTC peers at once (0 = no limit).", range=(0, 1000)),
    Param(
        "webrtc_ice_addresses",
        [],
        "Host ICE candidate addresses offered to browsers; empty: bind_address (all host "
        "addresses when it is 0.0.0.0). No STUN/TURN server is used.",
        read_only=True,
        validator=_check_addresses,
        list_type=str,
    ),
)


def _ice_addresses(bind_address: str, configured: list[str]) -> tuple[str, ...] | None:
    chosen = tuple(a.strip() for a in configured if a.strip())
    if chosen:
        return chosen
    if bind_address in ("0.0.0.0", "::", ""):
        return None  # aioice's default: every host address
    return (bind_address,)


class VideoOutputNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("video_output", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        p = self.params
        if not (p["rtsp"] or p["mjpeg"] or p["webrtc"]):
            raise NodeConfigError("rtsp, mjpeg and webrtc are all false: nothing to serve")
        self.hub = FrameHub()
        self._sub: Subscription | None = None
        self._sub_lock = threading.Lock()
        self._sub_group = MutuallyExclusiveCallbackGroup()
        self._idle_since: float | None = time.monotonic()
        self._frames_in = 0
        self._bad_frames = 0
        self._last_error = ""
        self._last_counts: dict[str, int] = {}
        self.rtsp: Any = None
        self.http: Any = None
        self.mjpeg: Any = None
        self.webrtc: Any = None
        try:
            # After super().__init__ (the DDS participant exists): GStreamer must be loaded only
            # then, see edge_vision/outputs/rtsp_server.py _import_gst.
            self._start_outputs()
        except NodeConfigError:
            self.close()
            raise
        if not p["on_demand"]:
            self._subscribe()
        self.create_timer(0.2, self._on_timer)
        self._diag = diagnostics.DiagnosticsPublisher(self, self._status)

    # -- outputs ------------------------------------------------------------------------------
    def _start_outputs(self) -> None:
        p = self.params
        host = p["bind_address"]
        title = self.resolve_topic_name(p["topic"])
        if p["rtsp"]:
            from edge_vision.outputs.rtsp_server import (
                RtspOutput,
                RtspSettings,
                rtsp_unavailable_reason,
            )

            reason = rtsp_unavailable_reason()
            if reason is not None:
                raise NodeConfigError(f"RTSP output unavailable: {reason} (or set rtsp:=false)")
            self.rtsp = RtspOutput(
                self.hub,
                host=host,
                port=p["rtsp_port"],
                path=p["rtsp_path"],
                settings=RtspSettings(),
            )
            self._apply_rtsp_settings()
            try:
                self.rtsp.start()
            except OSError as exc:
                raise NodeConfigError(f"RTSP output: {exc}") from exc
            self.get_logger().info(f"RTSP: {self._rtsp_url()}")
        if p["mjpeg"] or p["webrtc"]:
            from edge_vision.outputs.http_server import HttpServer

            self.http = HttpServer(host)
            http_port = p["http_port"]
            webrtc_port = p["webrtc_port"] or http_port
            if p["webrtc"]:
                from edge_vision.outputs.webrtc_server import WebRtcOutput, WebRtcSettings

                self.webrtc = WebRtcOutput(
                    self.hub,
                    self.http,
                    webrtc_port,
                    settings=WebRtcSettings(),
                    ice_addresses=_ice_addresses(host, p["webrtc_ice_addresses"]),
                    title=title,
                )
            if p["mjpeg"]:
                from edge_vision.outputs.mjpeg import MjpegOutput, MjpegSettings

                link = "/webrtc" if self.webrtc is not None and webrtc_port == http_port else None
                self.mjpeg = MjpegOutput(
                    self.hub,
                    self.http,
                    http_port,
                    settings=MjpegSettings(),
                    title=title,
                    webrtc_url=link,
                )
            self._apply_http_settings()
            try:
                self.http.start()
            except OSError as exc:
                raise NodeConfigError(f"HTTP output: {exc}") from exc
            if self.mjpeg is not None:
                self.get_logger().info(f"MJPEG: {self.mjpeg.url} (page: {self._page_url()})")
            if self.webrtc is not None:
                ice = self.webrtc.ice_addresses
                self.get_logger().info(
                    f"WebRTC: {self.webrtc.url} (ICE host candidates: "
                    f"{', '.join(ice) if ice else 'all host addresses'}; no STUN)"
                )

    def _rtsp_url(self) -> str:
        if self.rtsp is None:
            return ""
        return self.rtsp.url

    def _page_url(self) -> str:
        return self.mjpeg.url.removesuffix("stream.mjpg") if self.mjpeg is not None else ""

    def _apply_rtsp_settings(self) -> None:
        if self.rtsp is None:
            return
        s, p = self.rtsp.settings, self.params
        s.max_fps = p["rtsp_max_fps"]
        s.bitrate_kbps = p["rtsp_bitrate_kbps"]
        s.keyframe_interval_s = p["keyframe_interval_s"]

    def _apply_http_settings(self) -> None:
        p = self.params
        if self.mjpeg is not None:
            s = self.mjpeg.settings
            s.max_fps = p["mjpeg_max_fps"]
            s.quality = p["jpeg_quality"]
            s.max_clients = p["mjpeg_max_clients"]
        if self.webrtc is not None:
            w = self.webrtc.settings
            w.max_fps = p["webrtc_max_fps"]
            w.bitrate_kbps = p["webrtc_bitrate_kbps"]
            w.keyframe_interval_s = p["keyframe_interval_s"]
            w.codec = p["webrtc_codec"]
            w.max_peers = p["webrtc_max_peers"]

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        self._apply_rtsp_settings()
        self._apply_http_settings()
        if "topic" in changed or "on_demand" in changed:
            with self._sub_lock:
                resubscribe = self._sub is not None
            if resubscribe:
                self._unsubscribe()
            if resubscribe or not self.params["on_demand"]:
                self._subscribe()

    # -- subscription ---------------------------------------------------------------------------
    def _subscribe(self) -> None:
        with self._sub_lock:
            if self._sub is not None:
                return
            self._sub = self.create_subscription(
                Image,
                self.params["topic"],
                self._on_image,
                sensor_subscriber_qos(1),
                callback_group=self._sub_group,
            )
            topic = self._sub.topic_name
        self.get_logger().info(f"subscribed to {topic}")

    def _unsubscribe(self) -> None:
        with self._sub_lock:
            sub, self._sub = self._sub, None
        if sub is not None:
            topic = sub.topic_name
            self.destroy_subscription(sub)
            self.hub.clear()  # it would be stale by the time someone watches again
            self.get_logger().info(f"unsubscribed from {topic} (nobody watching)")

    def _on_image(self, msg: Image) -> None:
        try:
            image = image_to_numpy(msg, "bgr8")
            image = self._scale(image)
        except (ValueError, KeyError) as exc:
            self._bad_frames += 1
            message = f"cannot serve a {msg.encoding} {msg.width}x{msg.height} image: {exc}"
            if message != self._last_error:
                self.get_logger().error(message)
            self._last_error = message
            return
        self._frames_in += 1
        self.hub.put(image, stamp_to_ns(msg.header.stamp))

    def _scale(self, image: np.ndarray) -> np.ndarray:
        width, height = self.params["width"], self.params["height"]
        if not (width or height):
            return image
        h, w = image.shape[:2]
        if not width:
            width = max(1, round(w * height / h))
        if not height:
            height = max(1, round(h * width / w))
        if (width, height) == (w, h):
            return image
        interpolation = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
        return cv2.resize(image, (width, height), interpolation=interpolation)

    def _on_timer(self) -> None:
        counts = self._client_counts()
        if counts != self._last_counts:
            shown = ", ".join(f"{k} {v}" for k, v in counts.items())
            self.get_logger().info(f"clients: {shown}")
            self._last_counts = counts
        if not self.params["on_demand"]:
            return
        now = time.monotonic()
        if self.hub.viewers() > 0:
            self._idle_since = None
            self._subscribe()
        else:
            if self._idle_since is None:
                self._idle_since = now
            if now - self._idle_since >= IDLE_UNSUBSCRIBE_S:
                self._unsubscribe()

    def _client_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        if self.rtsp is not None:
            counts["rtsp"] = self.rtsp.stats().clients
        if self.mjpeg is not None:
            counts["mjpeg"] = self.mjpeg.stats().clients
        if self.webrtc is not None:
            counts["webrtc"] = self.webrtc.stats().peers
        return counts

    # -- diagnostics ----------------------------------------------------------------------------
    def _status(self) -> diagnostics.Status:
        with self._sub_lock:
            subscribed = self._sub is not None
        values: dict[str, object] = {
            "subscribed": subscribed,
            "input fps": self.hub.input_rate.rate(),
            "frames in": self._frames_in,
            "frames skipped": self.hub.replaced,
        }

        def ms(summary: tuple[float, float] | None) -> str:
            return "-" if summary is None else f"{summary[0]:.1f} median / {summary[1]:.1f} max"

        if self.rtsp is not None:
            r = self.rtsp.stats()
            values |= {
                "rtsp url": self._rtsp_url(),
                "rtsp clients": r.clients,
                "rtsp fps": r.fps_out,
                "rtsp frames": r.frames_out,
                "rtsp encode ms": ms(r.encode_ms),
            }
        if self.mjpeg is not None:
            m = self.mjpeg.stats()
            values |= {
                "mjpeg url": self.mjpeg.url,
                "mjpeg clients": m.clients,
                "mjpeg fps": m.fps_out,
                "mjpeg frames": m.frames_out,
                "mjpeg encode ms": ms(m.encode_ms),
            }
        if self.webrtc is not None:
            w = self.webrtc.stats()
            values |= {
                "webrtc url": self.webrtc.url,
                "webrtc peers": w.peers,
                "webrtc connected": w.connected,
                "webrtc fps": w.fps_out,
                "webrtc frames": w.frames_out,
                "webrtc encode ms": ms(w.encode_ms),
            }
        viewers = self.hub.viewers()
        latest = self.hub.latest()
        if self._bad_frames and self._last_error:
            return diagnostics.Status(diagnostics.ERROR, self._last_error, values)
        if viewers and (latest is None or time.monotonic() - latest.received > NO_FRAMES_WARN_S):
            return diagnostics.Status(
                diagnostics.WARN, f"{viewers} watching, no frames on the topic", values
            )
        return diagnostics.Status(diagnostics.OK, f"{viewers} watching", values)

    def close(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.rtsp is not None:
            self.rtsp.stop()
            self.rtsp = None
        self.hub.wake_all()


def create_node(args: list[str]) -> VideoOutputNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return VideoOutputNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(VideoOutputNode, args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())

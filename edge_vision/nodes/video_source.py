"""video_source: publishes frames from a file, image folder, test pattern, V4L2 camera or RTSP
stream as ``sensor_msgs/Image`` on ``image_raw``.

Topics: ``image_raw`` (sensor_msgs/Image), ``/diagnostics``.
Services: ``~/get_info`` (edge_vision/srv/GetSourceInfo).
Parameters: see ``PARAMS`` below; all of them can be changed while the node runs (a new ``uri``
or ``loop`` re-opens the source, ``reliability`` re-creates the publisher).

A capture thread reads, paces and publishes, so a slow or blocking source (network stream,
camera) never stalls the executor that serves parameters and services. Header stamps are the
capture time: the decode time for live sources and the paced release time for files, folders and
the test pattern, so latency downstream is measured from when a frame "happened".
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
from rclpy.publisher import Publisher

from edge_vision.core.frame import Frame
from edge_vision.ros import diagnostics
from edge_vision.ros.image_conversion import numpy_to_image
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import RELIABILITY_CHOICES, image_publisher_qos
from edge_vision.sources import SourceError, VideoSource, create_source

ENCODINGS = ("bgr8", "rgb8", "mono8")

PARAMS = (
    Param(
        "uri",
        "test://pattern",
        "What to play: a video file path (anything FFmpeg reads), an image folder, "
        "test://pattern?width=W&height=H&fps=F, /dev/videoN or v4l2:///dev/videoN, rtsp://...",
    ),
    Param("loop", True, "Files and folders: start again at the end instead of stopping."),
    Param(
        "exit_on_end",
        False,
        "When a file or folder ends and loop is false, stop the node (exit code 0) "
        "instead of idling.",
    ),
    Param(
        "realtime",
        True,
        "Files, folders and the test pattern: publish at the media's own rate. "
        "False: as fast as possible (still capped by fps).",
    ),
    Param("fps", 0.0, "Maximum publish rate in frames/s; 0 = no cap.", range=(0.0, 1000.0)),
    Param("frame_id", "camera", "header.frame_id of published images."),
    Param("encoding", "bgr8", "Encoding of published images.", choices=ENCODINGS),
    Param(
        "width",
        0,
        "Resize to this width (0 = keep; with height 0 the aspect ratio is kept).",
        range=(0, 8192),
    ),
    Param(
        "height",
        0,
        "Resize to this height (0 = keep; with width 0 the aspect ratio is kept).",
        range=(0, 8192),
    ),
    Param(
        "reliability",
        "reliable",
        "QoS reliability of image_raw. REP-2003: publish reliable, subscribe best effort.",
        choices=RELIABILITY_CHOICES,
    ),
    Param("queue_depth", 5, "QoS history depth of image_raw.", range=(1, 100)),
    Param(
        "retry_delay",
        1.0,
        "Seconds before retrying to open a live source (camera, stream) that failed; "
        "doubles up to retry_delay_max.",
        range=(0.05, 60.0),
    ),
    Param("retry_delay_max", 10.0, "Longest retry delay in seconds.", range=(0.1, 600.0)),
)

# Parameters whose change needs the source re-opened.
_REOPEN = frozenset({"uri", "loop"})


class VideoSourceNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("video_source", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self._pub_lock = threading.Lock()
        self._publisher: Publisher = self._make_publisher()
        self._wake = threading.Event()
        self._reopen = threading.Event()
        self._stop = threading.Event()
        self._source: VideoSource | None = None
        self._source_lock = threading.Lock()

        # Counters read by diagnostics and ~/get_info (written by the capture thread only).
        self.state = "opening"
        self.last_error = ""
        self.frames_published = 0
        self.publish_failures = 0
        self.throttled = 0
        self.out_size = (0, 0)
        self._publish_times: deque[float] = deque(maxlen=64)
        self._kind = ""
        self._nominal_fps = 0.0

        from edge_vision.srv import GetSourceInfo

        self.create_service(GetSourceInfo, "~/get_info", self._get_info)
        self._diag = diagnostics.DiagnosticsPublisher(
            self, self._diagnostics, hardware_id=self.params["uri"]
        )
        self._thread = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        self._thread.start()

    # -- parameters ---------------------------------------------------------------------------
    def _make_publisher(self) -> Publisher:
        qos = image_publisher_qos(self.params["reliability"], self.params["queue_depth"])
        from sensor_msgs.msg import Image

        return self.create_publisher(Image, "image_raw", qos)

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        if {"reliability", "queue_depth"} & changed.keys():
            with self._pub_lock:
                old, self._publisher = self._publisher, self._make_publisher()
                self.destroy_publisher(old)
        if _REOPEN & changed.keys():
            self._reopen.set()
            self._wake.set()
            self._interrupt_source()

    def _interrupt_source(self) -> None:
        # Closing from this thread unblocks a source stuck in a network read or reconnect wait.
        with self._source_lock:
            if self._source is not None and self._source.is_live:
                self._source.close()

    # -- capture thread -------------------------------------------------------------------------
    def _capture_loop(self) -> None:
        retry = self.params["retry_delay"]
        while not self._stop.is_set():
            self._reopen.clear()
            source = self._open()
            if source is None:
                live = self._kind in ("v4l2", "rtsp", "webrtc")
                # Files that are missing or corrupt wait for a new uri; devices and streams retry.
                self._wake.wait(retry if live else None)
                self._wake.clear()
                retry = min(retry * 2, self.params["retry_delay_max"]) if live else retry
                continue
            retry = self.params["retry_delay"]
            ended = self._play(source)
            with self._source_lock:
                self._source = None
            source.close()
            if ended and not self._stop.is_set() and not self._reopen.is_set():
                self.state = "ended"
                self.get_logger().info(f"end of {source.description}")
                if self.params["exit_on_end"]:
                    self.finish(0)
                    return
                self._wake.wait()
                self._wake.clear()

    def _open(self) -> VideoSource | None:
        uri = self.params["uri"]
        self._kind = _kind_of(uri)
        self.state = "opening"
        try:
            source = create_source(uri, loop=self.params["loop"])
            source.open()
        except SourceError as exc:
            self._set_error(str(exc))
            return None
        except Exception as exc:  # an unexpected decoder failure must not kill the node
            self._set_error(f"cannot open {uri}: {type(exc).__name__}: {exc}")
            return None
        with self._source_lock:
            self._source = source
        self._nominal_fps = float(source.nominal_fps or 0.0)
        self.state = "streaming"
        self.last_error = ""
        self.get_logger().info(
            f"playing {source.description}"
            + (f" at {self._nominal_fps:g} fps" if self._nominal_fps else "")
        )
        return source

    def _set_error(self, message: str) -> None:
        if message != self.last_error:
            self.get_logger().error(message)
        self.last_error = message
        self.state = "error"

    def _play(self, source: VideoSource) -> bool:
        """Publish frames until the source ends (True) or a stop/re-open is requested."""
        pacer = _Pacer()
        last_release = 0.0
        while not self._stop.is_set() and not self._reopen.is_set():
            try:
                frame = source.read()
            except SourceError as exc:
                self._set_error(str(exc))
                return False
            if frame is None:
                return not self._reopen.is_set()
            self.state = "streaming"
            live = source.is_live
            if not live and self.params["realtime"]:
                pacer.wait(frame, source.nominal_fps, self._stop)
            fps_cap = self.params["fps"]
            if fps_cap > 0:
                min_interval = 1.0 / fps_cap
                now = time.monotonic()
                if now - last_release < min_interval:
                    if live:  # a camera does not wait for us: skip the frame
                        self.throttled += 1
                        continue
                    self._stop.wait(min_interval - (now - last_release))
            last_release = time.monotonic()
            stamp_ns = frame.stamp_ns if live else time.time_ns()
            self._publish(frame, stamp_ns)
        return False

    def _publish(self, frame: Frame, stamp_ns: int) -> None:
        image = self._shape(frame.image, frame.encoding)
        msg = numpy_to_image(
            image, self.params["encoding"], frame_id=self.params["frame_id"], stamp=stamp_ns
        )
        with self._pub_lock:
            try:
                self._publisher.publish(msg)
            except Exception as exc:  # e.g. RCLError when a reliable writer's queue is full
                if not self.context.ok():  # shutting down: the capture thread is about to stop
                    return
                self.publish_failures += 1
                if self.publish_failures == 1 or self.publish_failures % 100 == 0:
                    self.get_logger().warning(f"publish failed ({self.publish_failures}x): {exc}")
                return
        self.frames_published += 1
        self.out_size = (image.shape[1], image.shape[0])
        self._publish_times.append(time.monotonic())

    def _shape(self, image: np.ndarray, encoding: str) -> np.ndarray:
        width, height = self.params["width"], self.params["height"]
        if width or height:
            h, w = image.shape[:2]
            if not width:
                width = max(1, round(w * height / h))
            if not height:
                height = max(1, round(h * width / w))
            if (width, height) != (w, h):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        target = self.params["encoding"]
        if encoding == target:
            return image
        code = _CONVERSIONS.get((encoding, target))
        if code is None:
            raise ValueError(f"cannot convert {encoding} frames to {target}")
        return cv2.cvtColor(image, code)

    # -- reporting ------------------------------------------------------------------------------
    def measured_fps(self) -> float:
        times = list(self._publish_times)
        if len(times) < 2 or time.monotonic() - times[-1] > 2.0:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def current_state(self) -> str:
        # A reconnecting stream blocks inside read(); ask the source rather than our last note.
        with self._source_lock:
            source = self._source
        if source is not None and self.state == "streaming" and source.state == "reconnecting":
            return "reconnecting"
        return self.state

    def _counters(self) -> dict[str, Any]:
        with self._source_lock:
            source = self._source
        stats = source.stats if source is not None else None
        return {
            "frames_published": self.frames_published,
            "frames_dropped": (stats.frames_dropped if stats else 0)
            + self.publish_failures
            + self.throttled,
            "reconnects": stats.reconnects if stats else 0,
        }

    def _diagnostics(self) -> diagnostics.Status:
        counters = self._counters()
        state = self.current_state()
        level = {
            "streaming": diagnostics.OK,
            "ended": diagnostics.OK,
            "opening": diagnostics.WARN,
            "reconnecting": diagnostics.WARN,
        }.get(state, diagnostics.ERROR)
        return diagnostics.Status(
            level=level,
            message=self.last_error or state,
            values={
                "uri": self.params["uri"],
                "state": state,
                "fps": self.measured_fps(),
                "nominal_fps": self._nominal_fps,
                "width": self.out_size[0],
                "height": self.out_size[1],
                **counters,
                "publish_failures": self.publish_failures,
                "throttled": self.throttled,
                "last_error": self.last_error,
            },
        )

    def _get_info(self, request: Any, response: Any) -> Any:
        counters = self._counters()
        response.uri = self.params["uri"]
        response.kind = self._kind
        response.state = self.current_state()
        response.width, response.height = self.out_size
        response.nominal_fps = self._nominal_fps
        response.measured_fps = self.measured_fps()
        response.frames_published = counters["frames_published"]
        response.frames_dropped = counters["frames_dropped"]
        response.reconnects = counters["reconnects"]
        response.last_error = self.last_error
        return response

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._interrupt_source()
        self._thread.join(timeout=5.0)


class _Pacer:
    """Releases recorded frames at their media rate: by pts when the source has them, else at
    the nominal fps. After a stall (or a loop back to pts 0) it re-anchors instead of bursting."""

    def __init__(self) -> None:
        self._anchor_wall = 0.0
        self._anchor_pts: float | None = None
        self._last_pts: float | None = None

    def wait(self, frame: Frame, nominal_fps: float | None, stop: threading.Event) -> None:
        pts = frame.source_pts
        if pts is None:
            if not nominal_fps:
                return
            pts = frame.index / nominal_fps
        now = time.monotonic()
        if self._anchor_pts is None or self._last_pts is None or pts <= self._last_pts:
            self._anchor_wall, self._anchor_pts = now, pts
        self._last_pts = pts
        due = self._anchor_wall + (pts - self._anchor_pts)
        if due - now > 0:
            stop.wait(due - now)
        elif now - due > 1.0:  # far behind (slow consumer, paused process): do not catch up
            self._anchor_wall, self._anchor_pts = now, pts


_CONVERSIONS = {
    ("bgr8", "rgb8"): cv2.COLOR_BGR2RGB,
    ("rgb8", "bgr8"): cv2.COLOR_RGB2BGR,
    ("bgr8", "mono8"): cv2.COLOR_BGR2GRAY,
    ("rgb8", "mono8"): cv2.COLOR_RGB2GRAY,
    ("mono8", "bgr8"): cv2.COLOR_GRAY2BGR,
    ("mono8", "rgb8"): cv2.COLOR_GRAY2RGB,
}


def _kind_of(uri: str) -> str:
    from pathlib import Path

    if uri.startswith("rtsp://") or uri.startswith("rtsps://"):
        return "rtsp"
    if uri.startswith("/dev/video") or uri.startswith("v4l2://"):
        return "v4l2"
    if uri.startswith("test://"):
        return "test"
    if uri.startswith("webrtc://"):
        return "webrtc"
    return "folder" if Path(uri.removeprefix("file://")).is_dir() else "file"


def create_node(args: list[str]) -> VideoSourceNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return VideoSourceNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(VideoSourceNode, args)


if __name__ == "__main__":
    raise SystemExit(main())

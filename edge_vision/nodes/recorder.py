"""recorder: a pre-event buffer of the video and clips on request (MP4 + JSON sidecar + bag).

Topics: subscribes ``image`` (sensor_msgs/Image, best effort like every image consumer) and the
``bag_topics`` (any type, as serialised bytes); publishes ``/diagnostics``.
Services: ``~/record`` (edge_vision/srv/Record), the service ``action_trigger``'s ``record``
action calls.

Every frame is encoded once (H.264, libx264 ultrafast/zerolatency, a keyframe every ``gop_s``
seconds of stamps) into a ring of ``buffer_s`` seconds; a clip copies packets out of it, so it
starts before its trigger without re-encoding. Clips are written by a worker thread under a
temporary name and renamed when complete; quota and retention delete the oldest clips. See
:mod:`edge_vision.recording.recorder` for the timing rules and docs/recording.md for the
reference.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from edge_vision.recording.bag import BAG_STORAGES, TypeRegistry
from edge_vision.recording.prebuffer import PRESETS, EncoderSettings
from edge_vision.recording.recorder import Recorder, RecorderConfig
from edge_vision.recording.storage import StorageError, check_pattern
from edge_vision.ros import diagnostics
from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import sensor_subscriber_qos
from edge_vision.srv import Record

MB = 1_000_000

# Encodings handed to the encoder as they are (PyAV pixel format); others become bgr8 first.
_PIXEL_FORMATS = {
    "bgr8": "bgr24",
    "rgb8": "rgb24",
    "mono8": "gray",
    "bgra8": "bgra",
    "rgba8": "rgba",
}


def default_output_dir() -> str:
    """``$XDG_DATA_HOME/edge_vision/clips`` (``~/.local/share/...`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "edge_vision" / "clips")


PARAMS = (
    Param("stream", "", "Stream name in file names and sidecars; empty: the node namespace."),
    Param(
        "output_dir",
        "",
        "Folder for clips; empty: $XDG_DATA_HOME/edge_vision/clips. A change applies to the "
        "next clip.",
    ),
    Param("pre_s", 5.0, "Default pre-roll (seconds before the request).", range=(0.0, 600.0)),
    Param("duration_s", 5.0, "Default seconds recorded after the request.", (0.1, 86400.0)),
    Param(
        "max_duration_s",
        60.0,
        "Default cap on a clip's length, extensions included (first frame to last).",
        range=(0.1, 86400.0),
    ),
    Param(
        "buffer_s",
        10.0,
        "Seconds of encoded video kept for pre-roll (at least pre_s is kept anyway).",
        range=(0.0, 600.0),
    ),
    Param("buffer_max_mb", 256, "Memory cap of the pre-event buffer, MB.", range=(1, 65536)),
    Param("crf", 23, "x264 constant rate factor (lower: better, bigger).", (0, 51), read_only=True),
    Param("preset", "ultrafast", "x264 preset.", choices=PRESETS, read_only=True),
    Param(
        "gop_s",
        1.0,
        "Seconds between keyframes: a clip starts at most this much before its pre-roll.",
        range=(0.1, 10.0),
        read_only=True,
    ),
    Param("encoder_threads", 0, "x264 threads (0: x264 decides).", range=(0, 64), read_only=True),
    Param(
        "file_pattern",
        "{stream}_{time:%Y%m%d-%H%M%S}_{reason}",
        "Clip name without .mp4: {stream}, {time} (UTC datetime of the trigger, strftime "
        "format after ':'), {reason}, {event_id}, {seq}; '/' makes folders.",
        validator=check_pattern,
    ),
    Param("quota_mb", 4096, "Total MB of clips in output_dir; oldest go (0: none).", (0, 10**9)),
    Param(
        "min_free_mb",
        100,
        "Refuse or stop a clip when the file system would have less free space, MB.",
        range=(0, 10**9),
    ),
    Param("retention_days", 30.0, "Delete clips older than this (0: keep).", (0.0, 36500.0)),
    Param("retention_max_files", 0, "Keep at most this many clips (0: no limit).", (0, 10**9)),
    Param(
        "bag_topics",
        [],
        "Topics also recorded over the clip's window into <clip>.rosbag2/; empty: none.",
        list_type=str,
    ),
    Param("bag_storage", "mcap", "rosbag2 storage of the bag.", choices=tuple(BAG_STORAGES)),
    Param("fsync", True, "fsync clips before the rename that publishes them."),
    # Deeper than a viewer's: frames queue here while the process is descheduled, and a clip
    # should not lose them (a stall longer than depth / fps still does).
    Param(
        "queue_depth",
        30,
        "QoS depth of the image subscription: frames held while the node is busy.",
        (1, 300),
        read_only=True,
    ),
)


class RecorderNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("recorder", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        p = self.params
        self.stream = p["stream"] or self.get_namespace().strip("/") or "default"
        # One group per input: frames (and each bag topic's messages) are taken in order, and
        # the service answers while a frame is being handed over.
        self._image_sub = self.create_subscription(
            Image,
            "image",
            self._on_image,
            sensor_subscriber_qos(p["queue_depth"]),
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self._bag_group = MutuallyExclusiveCallbackGroup()
        self.source_topic = self._image_sub.topic_name
        self._registry = TypeRegistry()
        try:
            self.recorder = Recorder(self._config(), log=self._log, registry=self._registry)
        except StorageError as exc:
            raise NodeConfigError(str(exc)) from exc
        self._bag_lock = threading.Lock()
        self._bag_subs: dict[str, Any] = {}  # resolved topic -> subscription
        self._bag_types: dict[str, str] = {}
        self._bag_problems: dict[str, str] = {}
        self._last_frame = 0.0
        self._used_cache: tuple[float, int, int] = (0.0, -1, 0)
        self.create_service(
            Record, "~/record", self._on_record, callback_group=MutuallyExclusiveCallbackGroup()
        )
        timers = MutuallyExclusiveCallbackGroup()
        self.create_timer(1.0, self._resolve_bag_topics, callback_group=timers)
        self.create_timer(60.0, self.recorder.enforce_retention, callback_group=timers)
        self._diag = diagnostics.DiagnosticsPublisher(self, self._status)
        self.get_logger().info(
            f"stream {self.stream!r}: buffering {self.source_topic} "
            f"({self.recorder.ring.keep_s:g} s), clips to {self.recorder.config.output_dir}"
        )

    def _config(self) -> RecorderConfig:
        p = self.params
        return RecorderConfig(
            output_dir=p["output_dir"] or default_output_dir(),
            stream=self.stream,
            source_topic=self.source_topic,
            pre_s=p["pre_s"],
            duration_s=p["duration_s"],
            max_duration_s=p["max_duration_s"],
            buffer_s=max(p["buffer_s"], p["pre_s"]),
            buffer_max_bytes=p["buffer_max_mb"] * MB,
            encoder=EncoderSettings(
                crf=p["crf"], preset=p["preset"], gop_s=p["gop_s"], threads=p["encoder_threads"]
            ),
            file_pattern=p["file_pattern"],
            quota_bytes=p["quota_mb"] * MB,
            max_age_s=p["retention_days"] * 86400.0,
            max_files=p["retention_max_files"],
            min_free_bytes=p["min_free_mb"] * MB,
            bag_storage=p["bag_storage"],
            fsync=p["fsync"],
        )

    def _log(self, level: str, text: str) -> None:
        logger = self.get_logger()
        {"error": logger.error, "warning": logger.warning, "info": logger.info}.get(
            level, logger.info
        )(text)

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        if "stream" in changed:
            self.stream = changed["stream"] or self.get_namespace().strip("/") or "default"
        config = self._config()
        try:
            self.recorder.reconfigure(
                **{
                    k: getattr(config, k)
                    for k in (
                        "output_dir",
                        "stream",
                        "pre_s",
                        "duration_s",
                        "max_duration_s",
                        "buffer_s",
                        "buffer_max_bytes",
                        "file_pattern",
                        "quota_bytes",
                        "max_age_s",
                        "max_files",
                        "min_free_bytes",
                        "bag_storage",
                        "fsync",
                    )
                }
            )
        except StorageError as exc:
            self.get_logger().error(f"new output_dir not used: {exc}")
        if "bag_topics" in changed:
            self._resolve_bag_topics()
        if changed.keys() & {"quota_mb", "retention_days", "retention_max_files"}:
            self.recorder.enforce_retention()

    # -- inputs ---------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._last_frame = time.monotonic()
        stamp = stamp_to_ns(msg.header.stamp)
        fmt = _PIXEL_FORMATS.get(msg.encoding)
        try:
            if fmt is not None:  # 8-bit layouts the encoder takes as they are (a view, no copy)
                image = image_to_numpy(msg)
            else:
                image, fmt = image_to_numpy(msg, "bgr8"), "bgr24"
        except ValueError as exc:
            self.recorder.encode_errors += 1
            self.recorder.report_error(f"cannot use a {msg.encoding} image: {exc}")
            return
        self.recorder.push_frame(image, stamp, fmt)

    def _resolve_bag_topics(self) -> None:
        wanted = {self.resolve_topic_name(t) for t in self.params["bag_topics"] if t.strip()}
        with self._bag_lock:
            for topic in list(self._bag_subs):
                if topic not in wanted:
                    self.destroy_subscription(self._bag_subs.pop(topic))
                    self._bag_types.pop(topic, None)
            pending = wanted - self._bag_subs.keys()
            if not pending:
                return
            types = dict(self.get_topic_names_and_types())
            for topic in sorted(pending):
                names = types.get(topic)
                if not names:
                    self._bag_problems[topic] = "no publisher yet"
                    continue
                self._subscribe_bag(topic, names[0])

    def _subscribe_bag(self, topic: str, msgtype: str) -> None:
        try:
            package, kind, name = msgtype.split("/")
            msg_class = getattr(importlib.import_module(f"{package}.{kind}"), name)
            self._registry.ensure(msgtype)
        except (ValueError, ImportError, AttributeError, KeyError) as exc:
            problem = f"cannot record {topic} ({msgtype}): {exc}"
            if self._bag_problems.get(topic) != problem:
                self.get_logger().error(problem)
            self._bag_problems[topic] = problem
            return
        # Reliable only when every publisher is: a reliable reader cannot match a best-effort
        # writer (what ros2 bag record does too).
        infos = self.get_publishers_info_by_topic(topic)
        reliable = bool(infos) and all(
            i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos
        )
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1000,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        recorder = self.recorder

        def on_message(data: bytes, topic: str = topic, msgtype: str = msgtype) -> None:
            recorder.push_message(topic, msgtype, data)

        self._bag_subs[topic] = self.create_subscription(
            msg_class, topic, on_message, qos, raw=True, callback_group=self._bag_group
        )
        self._bag_types[topic] = msgtype
        self._bag_problems.pop(topic, None)
        self.get_logger().info(
            f"bag topic {topic} ({msgtype}, {'reliable' if reliable else 'best effort'})"
        )

    # -- service --------------------------------------------------------------------------------
    def _on_record(self, request: Record.Request, response: Record.Response) -> Record.Response:
        result = self.recorder.request(
            event_id=request.event_id,
            reason=request.reason,
            pre_s=request.pre_s,
            duration_s=request.duration_s,
            max_duration_s=request.max_duration_s,
        )
        response.success, response.message, response.path = (
            result.success,
            result.message,
            result.path,
        )
        if result.success:
            self.get_logger().info(
                f"record {request.event_id or '-'} ({request.reason or '-'}): {result.message} "
                f"-> {result.path}"
            )
        return response

    # -- diagnostics ----------------------------------------------------------------------------
    def _used_bytes(self) -> int:
        # A scan of output_dir: at most every 5 s, or when a clip was written or deleted.
        at, changes, used = self._used_cache
        now_changes = self.recorder.clips_written + self.recorder.storage.deleted
        if time.monotonic() - at > 5.0 or now_changes != changes:
            used = self.recorder.storage.used_bytes()
            self._used_cache = (time.monotonic(), now_changes, used)
        return used

    def _status(self) -> diagnostics.Status:
        rec = self.recorder
        values: dict[str, object] = dict(rec.stats())
        cfg = rec.config
        values["output dir"] = cfg.output_dir
        values["bytes used"] = self._used_bytes()
        values["quota bytes"] = cfg.quota_bytes
        values["free bytes"] = rec.storage.free_bytes()
        values["source topic"] = self.source_topic
        with self._bag_lock:
            values["bag topics"] = ", ".join(
                f"{t} ({ty})" for t, ty in sorted(self._bag_types.items())
            )
            problems = "; ".join(f"{t}: {p}" for t, p in sorted(self._bag_problems.items()))
        if problems:
            values["bag problems"] = problems
        recent_error = rec.last_error and time.time() - rec.last_error_time < 60.0
        if recent_error:
            return diagnostics.Status(diagnostics.ERROR, rec.last_error, values)
        if time.monotonic() - self._last_frame > 5.0:
            return diagnostics.Status(diagnostics.WARN, f"no frames on {self.source_topic}", values)
        if problems:
            return diagnostics.Status(diagnostics.WARN, problems, values)
        state = f"recording {values['recording']}" if values["recording"] else "buffering"
        return diagnostics.Status(
            diagnostics.OK, f"{state}, {values['buffer seconds']:.1f} s buffered", values
        )

    def close(self) -> None:
        # rclpy is shut down by now (rosout is gone): a clip finished here reports on stderr.
        self.recorder.set_log(
            lambda level, text: print(f"[{level.upper()}] [recorder]: {text}", file=sys.stderr)
        )
        self.recorder.close()


def create_node(args: list[str]) -> RecorderNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return RecorderNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())

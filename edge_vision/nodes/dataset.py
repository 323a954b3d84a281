"""dataset: tag what the camera sees and record it into a dataset folder (Recognizer-style).

Topics: subscribes ``image`` (sensor_msgs/Image, best effort); publishes ``~/stats``
(edge_vision/DatasetStats, reliable + transient-local: late joiners get the latest) on every
change (tags set, recording started/ended, each saved frame, each added image) and
``/diagnostics``.
Services: ``~/set_tags`` (edge_vision/SetTags), ``~/record`` (edge_vision/RecordDataset),
``~/add_image`` (edge_vision/AddImage), ``~/get_stats`` (edge_vision/GetDatasetStats: counts the
folder now, files copied in by hand included).

Folder layout, sanitising and the train/val rule: :mod:`edge_vision.training.dataset`. A request
the node refuses (bad tag, no active tags, bad split, a recording already running, an unreadable
upload) answers ``success: false`` with the reason and changes nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import Image

from edge_vision.msg import DatasetStats as DatasetStatsMsg
from edge_vision.ros import diagnostics
from edge_vision.ros.image_conversion import image_to_numpy
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import latched_qos, sensor_subscriber_qos
from edge_vision.srv import AddImage, GetDatasetStats, RecordDataset, SetTags
from edge_vision.training.dataset import (
    IMAGE_FORMATS,
    DatasetError,
    DatasetFolder,
    DatasetStats,
    sanitize_tags,
    tag_folder,
)


def default_dataset_dir() -> str:
    """``$XDG_DATA_HOME/edge_vision/dataset`` (``~/.local/share/...`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "edge_vision" / "dataset")


PARAMS = (
    Param(
        "root",
        default_dataset_dir(),
        "Dataset folder (train/<tag>/..., val/<tag>/...); created when missing.",
        read_only=True,
    ),
    Param(
        "val_fraction",
        0.2,
        "Share of images saved without an explicit split that go to val/ (per tag set).",
        range=(0.0, 0.95),
    ),
    Param("image_format", "jpg", "Format images are stored in.", choices=IMAGE_FORMATS),
    Param(
        "tags",
        [],
        "Active tags at start (set_tags changes them at run time).",
        list_type=str,
    ),
)


class DatasetNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("dataset", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
            self.folder = DatasetFolder(
                self.params["root"], self.params["image_format"], self.params["val_fraction"]
            )
            self.active_tags = sanitize_tags(self.params["tags"])
        except (ValueError, OSError) as exc:
            raise NodeConfigError(f"dataset: {exc}") from exc
        self._lock = threading.Lock()
        self.recording = False
        self.recorded = 0
        self._rec: dict[str, Any] = {}
        self.errors = 0
        self.last_error = ""
        self._stats = self.folder.stats(rescan=False)

        self._stats_pub = self.create_publisher(DatasetStatsMsg, "~/stats", latched_qos())
        # Frames in a group of their own: saving one never waits for a service call.
        self.create_subscription(
            Image,
            "image",
            self._on_image,
            sensor_subscriber_qos(5),
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        self.create_service(SetTags, "~/set_tags", self._set_tags)
        self.create_service(RecordDataset, "~/record", self._record)
        self.create_service(AddImage, "~/add_image", self._add_image)
        self.create_service(GetDatasetStats, "~/get_stats", self._get_stats)
        self.create_timer(0.1, self._check_duration)
        self._diag = diagnostics.DiagnosticsPublisher(self, self._status)
        self._publish(self._stats)
        self.get_logger().info(
            f"dataset {self.folder.root}: {self._stats.images} images, tags {self._stats.tags}"
        )

    # -- parameters -------------------------------------------------------------------------------
    def _on_params(self, changed: Mapping[str, Any]) -> None:
        if "val_fraction" in changed:
            self.folder.val_fraction = changed["val_fraction"]
        if "image_format" in changed:
            self.folder.image_format = changed["image_format"]

    # -- services -------------------------------------------------------------------------------
    def _set_tags(self, request: Any, response: Any) -> Any:
        try:
            tags = sanitize_tags(request.tags)
        except DatasetError as exc:
            response.success, response.message = False, str(exc)
        else:
            with self._lock:
                if self.recording:
                    # One recording, one tag set: a frame must not land under half-changed tags.
                    response.success = False
                    response.message = "a recording is running; set tags when it has ended"
                else:
                    self.active_tags = tags
                    response.success = True
                    response.message = f"active tags: {', '.join(tags) or '(none)'}"
        with self._lock:
            response.tags = list(self.active_tags)
        if response.success:
            self._publish(self._stats)
        return response

    def _record(self, request: Any, response: Any) -> Any:
        response.success = False
        frames, duration = int(request.frames), float(request.duration_s)
        interval = float(request.interval_s)
        with self._lock:
            if self.recording:
                response.message = f"already recording ({self.recorded} frames saved so far)"
                return response
            if not self.active_tags:
                response.message = "no active tags: call set_tags first"
                return response
            if frames == 0 and duration <= 0.0:
                response.message = "give frames or duration_s (or both)"
                return response
            if duration < 0.0 or interval < 0.0:
                response.message = "duration_s and interval_s must be >= 0"
                return response
            if request.split not in ("", "train", "val"):
                response.message = f"split {request.split!r} is not 'train', 'val' or empty"
                return response
            self.recording = True
            self.recorded = 0
            now = time.monotonic()
            self._rec = {
                "frames": frames,
                "until": now + duration if duration > 0.0 else None,
                "interval": interval,
                "split": request.split,
                "tags": list(self.active_tags),
                "last": None,
            }
        response.success = True
        limits = [f"{frames} frames" if frames else "", f"{duration:g} s" if duration else ""]
        response.message = (
            f"recording {' or '.join(x for x in limits if x)} under {tag_folder(self._rec['tags'])}"
        )
        self.get_logger().info(response.message)
        self._publish(self._stats)
        return response

    def _add_image(self, request: Any, response: Any) -> Any:
        with self._lock:
            tags = list(request.tags) or list(self.active_tags)
        try:
            path = self.folder.add_encoded(
                bytes(request.data), tags, request.split, request.filename or "upload"
            )
        except DatasetError as exc:
            response.success, response.message, response.path = False, str(exc), ""
            return response
        response.success, response.path = True, str(path)
        response.message = f"stored {path.relative_to(self.folder.root)}"
        self._changed()
        return response

    def _get_stats(self, request: Any, response: Any) -> Any:
        stats = self.folder.stats(rescan=True)
        with self._lock:
            self._stats = stats
        response.stats = self._stats_msg(stats)
        self._stats_pub.publish(response.stats)
        return response

    # -- recording ------------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        with self._lock:
            if not self.recording:
                return
            rec = self._rec
            now = time.monotonic()
            if rec["last"] is not None and now - rec["last"] < rec["interval"]:
                return
            rec["last"] = now
        try:
            image = image_to_numpy(msg, "bgr8")
            stamp = msg.header.stamp
            self.folder.add_image(
                image, rec["tags"], rec["split"], f"frame-{stamp.sec}-{stamp.nanosec:09d}"
            )
        except (DatasetError, ValueError, OSError) as exc:
            self.errors += 1
            if str(exc) != self.last_error:
                self.get_logger().error(f"cannot save a frame: {exc}")
            self.last_error = str(exc)
            return
        with self._lock:
            self.recorded += 1
            done = rec["frames"] and self.recorded >= rec["frames"]
        if done:
            self._end_recording("frames reached")
        else:
            self._changed()

    def _check_duration(self) -> None:
        with self._lock:
            until = self._rec.get("until") if self.recording else None
        if until is not None and time.monotonic() >= until:
            self._end_recording("duration reached")

    def _end_recording(self, why: str) -> None:
        with self._lock:
            if not self.recording:
                return
            self.recording = False
            recorded = self.recorded
        self.get_logger().info(f"recording ended ({why}): {recorded} frames saved")
        self._changed()

    # -- publishing -----------------------------------------------------------------------------
    def _changed(self) -> None:
        stats = self.folder.stats(rescan=False)
        with self._lock:
            self._stats = stats
        self._publish(stats)

    def _publish(self, stats: DatasetStats) -> None:
        self._stats_pub.publish(self._stats_msg(stats))

    def _stats_msg(self, stats: DatasetStats) -> DatasetStatsMsg:
        msg = DatasetStatsMsg()
        msg.stamp = self.get_clock().now().to_msg()
        msg.root = stats.root
        msg.tags = list(stats.tags)
        msg.train = [int(n) for n in stats.train]
        msg.val = [int(n) for n in stats.val]
        msg.images = int(stats.images)
        msg.skipped = int(stats.skipped)
        with self._lock:
            msg.active_tags = list(self.active_tags)
            msg.recording = self.recording
            msg.recorded = int(self.recorded)
        return msg

    def _status(self) -> diagnostics.Status:
        with self._lock:
            stats = self._stats
            values: dict[str, object] = {
                "root": stats.root,
                "images": stats.images,
                "skipped": stats.skipped,
                "active_tags": ",".join(self.active_tags),
                "recording": self.recording,
                "recorded": self.recorded,
                "save_errors": self.errors,
            }
        if self.last_error:
            values["last_error"] = self.last_error
            return diagnostics.Status(diagnostics.WARN, "frames failed to save", values)
        return diagnostics.Status(values=values)


def create_node(args: list[str]) -> DatasetNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return DatasetNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(DatasetNode, args, threads=2)


if __name__ == "__main__":
    raise SystemExit(main())

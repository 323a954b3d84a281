"""pose: body or hand keypoints on an image topic (MediaPipe).

Topics: subscribes ``image`` (sensor_msgs/Image, best effort); publishes ``poses``
(edge_vision/msg/PoseKeypointsArray, header copied from the image), ``overlay``
(sensor_msgs/Image with keypoints and skeleton drawn, only while someone subscribes and
``publish_overlay``), ``/diagnostics``.
Services: ``~/load_model`` (edge_vision/srv/LoadModel).

Models: ``mediapipe-pose`` (33 body keypoints) and ``mediapipe-hands`` (21 keypoints per hand,
up to ``max_hands``), MediaPipe's legacy solutions run on the CPU. The body model finds ONE
person per image (the most prominent): MediaPipe's legacy pose graph has no multi-person mode,
so for crowds run it on person crops.

Like the detector it works on the newest frame (frames arriving during inference replace each
other and are counted as dropped) and changes models through :class:`ModelHost`: the new
estimator is built while the old one keeps serving, then swapped in between two frames; a model
that fails to load is refused. A change of the estimator settings (``max_hands``, confidences,
``tracking``) rebuilds the estimator the same way, by setting ``model`` to its current value.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidParameterValueException
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from edge_vision.core.drawing import draw_poses
from edge_vision.core.latest import LatestSlot
from edge_vision.models.errors import ModelLoadError
from edge_vision.ros import diagnostics
from edge_vision.ros.conversions import poses_to_msg
from edge_vision.ros.image_conversion import image_to_numpy, numpy_to_image, stamp_to_ns
from edge_vision.ros.model_host import ModelHost
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import image_publisher_qos, sensor_subscriber_qos

MODELS: dict[str, Literal["body", "hands"]] = {"mediapipe-pose": "body", "mediapipe-hands": "hands"}
"""Zoo name -> PoseEstimator kind."""
DEVICES = ("cpu",)  # the legacy MediaPipe solutions run on the CPU only
ESTIMATOR_SETTINGS = frozenset(
    {"max_hands", "min_detection_confidence", "min_tracking_confidence", "tracking"}
)
"""Parameters the estimator is built with: changing one rebuilds it."""

PARAMS = (
    Param(
        "model",
        "mediapipe-pose",
        "mediapipe-pose: 33 body keypoints of ONE person (the most prominent; MediaPipe's legacy "
        "pose has no multi-person mode); mediapipe-hands: 21 keypoints per hand. Changing it "
        "builds the new estimator first; one that fails to load is refused.",
        choices=tuple(MODELS),
    ),
    Param(
        "device",
        "cpu",
        "Inference device (MediaPipe's legacy solutions: CPU only).",
        choices=DEVICES,
    ),
    Param("max_hands", 2, "mediapipe-hands: most hands to find.", range=(1, 4)),
    Param(
        "min_detection_confidence",
        0.5,
        "Minimum person/palm detector score for an instance.",
        range=(0.0, 1.0),
    ),
    Param(
        "min_tracking_confidence",
        0.5,
        "tracking: minimum landmark score to keep tracking an instance instead of detecting again.",
        range=(0.0, 1.0),
    ),
    Param(
        "tracking",
        True,
        "Track instances from frame to frame (detector only when lost; body keypoints smoothed). "
        "false: every image is independent (MediaPipe static_image_mode), slower.",
    ),
    Param(
        "min_keypoint_score",
        0.5,
        "Keypoints scoring below this are not drawn and do not count for an instance's bbox "
        "(they are still published with their scores).",
        range=(0.0, 1.0),
    ),
    Param("publish_overlay", True, "Publish `overlay` (poses drawn) while it has subscribers."),
)


class PoseNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("pose", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except (ValueError, InvalidParameterValueException) as exc:  # the latter: out of range
            raise NodeConfigError(str(exc)) from exc
        self.models = ModelHost(self, self._load, DEVICES)

        self._frames: LatestSlot[Image] = LatestSlot()
        self.create_subscription(
            Image,
            "image",
            self._frames.put,
            sensor_subscriber_qos(1),
            callback_group=MutuallyExclusiveCallbackGroup(),
        )
        from edge_vision.msg import PoseKeypointsArray

        self._poses_pub = self.create_publisher(PoseKeypointsArray, "poses", 10)
        self._overlay_pub = self.create_publisher(Image, "overlay", image_publisher_qos())
        self.models.load_at_start()

        self._serving: Any = None  # the estimator the inference thread last ran
        self._stream: tuple[str, int, int] | None = None
        self._last_stamp_ns = 0
        self.frames_done = 0
        self.errors = 0
        self.last_error = ""
        self.last_instances = 0
        self._last_latency_ms = 0.0
        self._infer_ms: deque[float] = deque(maxlen=100)
        self._done_times: deque[float] = deque(maxlen=64)
        self._diag = diagnostics.DiagnosticsPublisher(self, self._diagnostics)
        self._thread = threading.Thread(target=self._work, name="inference", daemon=True)
        self._thread.start()

    # -- models -------------------------------------------------------------------------------
    def _load(self, model: str, device: str) -> Any:
        kind = MODELS.get(model)
        if kind is None:
            raise ModelLoadError(f"unknown pose model {model!r}; available: {', '.join(MODELS)}")
        from edge_vision.models.pose import PoseEstimator

        p = self.params
        return PoseEstimator(
            kind,
            max_hands=p["max_hands"],
            min_detection_confidence=p["min_detection_confidence"],
            min_tracking_confidence=p["min_tracking_confidence"],
            static_image_mode=not p["tracking"],
        )

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        self.models.parameters_changed(changed)
        settings = ESTIMATOR_SETTINGS & changed.keys()
        if MODELS.get(self.params["model"]) == "body":
            settings -= {"max_hands"}
        if settings:
            # The loader read the old values (a set is validated before it is applied), so
            # build again now, through ModelHost's own path: load, refuse on failure, swap.
            result = self.set_parameters([Parameter("model", value=self.params["model"])])[0]
            if not result.successful:
                self.get_logger().error(f"cannot apply {sorted(settings)}: {result.reason}")

    # -- inference thread -----------------------------------------------------------------------
    def _work(self) -> None:
        while not self._frames.closed:
            msg = self._frames.take(timeout=0.5)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as exc:  # one bad frame must not stop the node
                self.errors += 1
                if str(exc) != self.last_error:
                    self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}")
                self.last_error = str(exc)

    def _process(self, msg: Image) -> None:
        image = image_to_numpy(msg, "bgr8")
        estimator, _ = self.models.current()
        if estimator is None:
            return  # no model: the frame is dropped; diagnostics say why
        if estimator is not self._serving:
            # Swapped out: only this thread ever runs an estimator, so it can close it now.
            if self._serving is not None:
                self._serving.close()
            self._serving = estimator
        self._reset_on_new_stream(estimator, msg)
        started = time.perf_counter()
        poses = estimator.estimate(image)
        self._infer_ms.append((time.perf_counter() - started) * 1000.0)
        min_score = self.params["min_keypoint_score"]
        size = (int(msg.width), int(msg.height))
        self._poses_pub.publish(poses_to_msg(poses, msg.header, min_score, size))
        if self.params["publish_overlay"] and self._overlay_pub.get_subscription_count() > 0:
            canvas = np.array(image, copy=True)
            draw_poses(canvas, poses, min_score=min_score)
            self._overlay_pub.publish(numpy_to_image(canvas, "bgr8", header=msg.header))
        self.last_instances = len(poses)
        self.frames_done += 1
        self._done_times.append(time.monotonic())
        self._last_latency_ms = (time.time_ns() - stamp_to_ns(msg.header.stamp)) / 1e6

    def _reset_on_new_stream(self, estimator: Any, msg: Image) -> None:
        # Tracking assumes consecutive frames of one stream: forget tracked instances when the
        # camera, the image size or time (a looped file, a restarted source) jumps.
        stream = (msg.header.frame_id, int(msg.width), int(msg.height))
        stamp = stamp_to_ns(msg.header.stamp)
        if stream != self._stream or stamp < self._last_stamp_ns:
            estimator.reset()
        self._stream, self._last_stamp_ns = stream, stamp

    # -- reporting ------------------------------------------------------------------------------
    def _diagnostics(self) -> diagnostics.Status:
        times = list(self._done_times)
        fps = (
            (len(times) - 1) / (times[-1] - times[0])
            if len(times) > 1 and time.monotonic() - times[-1] < 2.0
            else 0.0
        )
        infer = np.asarray(self._infer_ms) if self._infer_ms else np.zeros(1)
        estimator, name = self.models.current()
        error = self.models.error or self.last_error
        level = (
            diagnostics.ERROR
            if estimator is None
            else diagnostics.WARN
            if error
            else diagnostics.OK
        )
        return diagnostics.Status(
            level,
            error or f"serving {name}",
            {
                "model": name,
                "device": self.params["device"],
                "tracking": self.params["tracking"],
                "fps": fps,
                "inference_ms_mean": float(infer.mean()),
                "inference_ms_p95": float(np.percentile(infer, 95)),
                "latency_ms": self._last_latency_ms,
                "instances": self.last_instances,
                "frames_in": self._frames.put_count,
                "frames_done": self.frames_done,
                "frames_dropped": self._frames.replaced,
                "errors": self.errors,
            },
        )

    def close(self) -> None:
        self._frames.close()
        self._thread.join(timeout=5.0)
        estimator, _ = self.models.current()
        for est in {id(e): e for e in (self._serving, estimator) if e is not None}.values():
            est.close()


def create_node(args: list[str]) -> PoseNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return PoseNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(PoseNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())

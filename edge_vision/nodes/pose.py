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

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from edge_vision.core.drawing import draw_poses
from edge_vision.models.errors import ModelLoadError
from edge_vision.ros.conversions import poses_to_msg
from edge_vision.ros.image_conversion import image_to_numpy, numpy_to_image, stamp_to_ns
from edge_vision.ros.inference_loop import InferenceLoop
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
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self.models = ModelHost(self, self._load, DEVICES)

        from edge_vision.msg import PoseKeypointsArray

        self._poses_pub = self.create_publisher(PoseKeypointsArray, "poses", 10)
        self._overlay_pub = self.create_publisher(Image, "overlay", image_publisher_qos())
        self._serving: Any = None  # the estimator the inference thread last ran
        self._stream: tuple[str, int, int] | None = None
        self._last_stamp_ns = 0
        self.last_instances = 0
        self.models.load_at_start()
        self.inference: InferenceLoop[Image] = InferenceLoop(
            self,
            self.models,
            self._process,
            extra_values=lambda: {
                "tracking": self.params["tracking"],
                "instances": self.last_instances,
            },
        )
        # Its own callback group: frames keep arriving while a model loads in the default group.
        self.create_subscription(
            Image,
            "image",
            self.inference.put,
            sensor_subscriber_qos(1),
            callback_group=MutuallyExclusiveCallbackGroup(),
        )

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
    def _process(self, msg: Image) -> int | None:
        image = image_to_numpy(msg, "bgr8")
        estimator, _ = self.models.current()
        if estimator is None:
            return None  # no model: the frame is dropped; diagnostics say why
        if estimator is not self._serving:
            # Swapped out: only this thread ever runs an estimator, so it can close it now.
            if self._serving is not None:
                self._serving.close()
            self._serving = estimator
        self._reset_on_new_stream(estimator, msg)
        poses = self.inference.infer(estimator.estimate, image)
        min_score = self.params["min_keypoint_score"]
        size = (int(msg.width), int(msg.height))
        self._poses_pub.publish(poses_to_msg(poses, msg.header, min_score, size))
        if self.params["publish_overlay"] and self._overlay_pub.get_subscription_count() > 0:
            canvas = np.array(image, copy=True)
            draw_poses(canvas, poses, min_score=min_score)
            self._overlay_pub.publish(numpy_to_image(canvas, "bgr8", header=msg.header))
        self.last_instances = len(poses)
        return stamp_to_ns(msg.header.stamp)

    def _reset_on_new_stream(self, estimator: Any, msg: Image) -> None:
        # Tracking assumes consecutive frames of one stream: forget tracked instances when the
        # camera, the image size or time (a looped file, a restarted source) jumps.
        stream = (msg.header.frame_id, int(msg.width), int(msg.height))
        stamp = stamp_to_ns(msg.header.stamp)
        if stream != self._stream or stamp < self._last_stamp_ns:
            estimator.reset()
        self._stream, self._last_stamp_ns = stream, stamp

    def close(self) -> None:
        self.inference.close()
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

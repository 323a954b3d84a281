"""detector: object detection on an image topic.

Topics: subscribes ``image`` (sensor_msgs/Image, best effort); publishes ``detections``
(vision_msgs/Detection2DArray, header copied from the image), ``labels`` (vision_msgs/LabelInfo,
transient-local: the class id -> name map, republished whenever the model changes), ``overlay``
(sensor_msgs/Image with boxes drawn, only while someone subscribes and ``publish_overlay``),
``/diagnostics``.
Services: ``~/load_model`` (edge_vision/srv/LoadModel).

The node always works on the newest frame: the subscription drops each frame into a one-slot
mailbox and an inference thread takes the latest one, so when inference is slower than the
camera, frames are skipped (and counted) instead of queueing and latency does not grow.

A model change (``model``/``device`` parameters or ``~/load_model``) loads the new model while the
old one keeps serving, then swaps it in between two frames; a model that fails to load is
refused with the reason and nothing changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from edge_vision.core.detections import Detections
from edge_vision.core.drawing import draw_detections
from edge_vision.ros.conversions import detections_to_msg, label_info_msg
from edge_vision.ros.image_conversion import image_to_numpy, numpy_to_image, stamp_to_ns
from edge_vision.ros.inference_loop import InferenceLoop
from edge_vision.ros.model_host import ModelHost
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import image_publisher_qos, latched_qos, sensor_subscriber_qos

DEVICES = ("cpu", "cuda", "tensorrt", "jetson")


def _parse_class_thresholds(items: list[str]) -> dict[str, float]:
    """``["person=0.5", "car=0.3"]`` -> {"person": 0.5, "car": 0.3} (ValueError when malformed)."""
    out: dict[str, float] = {}
    for item in items:
        if not item.strip():  # [''] is how `ros2 param set` clears a string array
            continue
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"class_thresholds entry {item!r} is not NAME=THRESHOLD")
        try:
            threshold = float(value)
        except ValueError:
            raise ValueError(
                f"class_thresholds entry {item!r}: {value!r} is not a number"
            ) from None
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"class_thresholds entry {item!r}: threshold outside [0, 1]")
        out[name.strip()] = threshold
    return out


def _check_class_thresholds(items: list[str]) -> str | None:
    try:
        _parse_class_thresholds(items)
    except ValueError as exc:
        return str(exc)
    return None


PARAMS = (
    Param(
        "model",
        "nanodet-m",
        "Model to run: a zoo name (edge-vision models list), an imported name or an .onnx path. "
        "Changing it loads the new model first; a model that fails to load is refused.",
    ),
    Param("device", "cpu", "Inference device.", choices=DEVICES),
    Param("trt_cache_dir", "", "TensorRT engine cache directory (device tensorrt); empty: none."),
    Param("score_threshold", 0.35, "Minimum detection score.", range=(0.0, 1.0)),
    Param(
        "class_thresholds",
        [],
        "Per-class minimum scores as NAME=THRESHOLD entries, e.g. ['person=0.5', 'car=0.3']; "
        "classes not listed use score_threshold.",
        validator=_check_class_thresholds,
        list_type=str,
    ),
    Param(
        "classes",
        [],
        "Only publish these class names (empty = all classes; [''] also clears it, since "
        "`ros2 param set` cannot send an empty string array).",
        list_type=str,
    ),
    Param(
        "nms_iou", 0.6, "IoU above which overlapping boxes of a class are merged.", range=(0.0, 1.0)
    ),
    Param("max_detections", 100, "Most detections per frame.", range=(1, 10000)),
    Param("publish_overlay", True, "Publish `overlay` (boxes drawn) while it has subscribers."),
)


class DetectorNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("detector", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self.models = ModelHost(self, self._load, DEVICES, on_swapped=self._publish_labels)

        self._det_pub = self.create_publisher(Detection2DArray, "detections", 10)
        self._overlay_pub = self.create_publisher(Image, "overlay", image_publisher_qos())
        self._labels_pub = self.create_publisher(LabelInfo, "labels", latched_qos())
        self.models.load_at_start()
        self.inference: InferenceLoop[Image] = InferenceLoop(self, self.models, self._process)
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
        from edge_vision.models.zoo import load_detector

        trt_cache = self.params["trt_cache_dir"]
        return load_detector(model, device=device, trt_cache_dir=trt_cache or None)

    def _publish_labels(self) -> None:
        detector, _ = self.models.current()
        if detector is None:
            return
        header = Header(stamp=self.get_clock().now().to_msg())
        labels = list(detector.spec.labels)
        self._labels_pub.publish(label_info_msg(labels, header, self.params["score_threshold"]))

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        # A model swap republishes LabelInfo itself (on_swapped); a threshold change does here.
        if not self.models.parameters_changed(changed) and "score_threshold" in changed:
            self._publish_labels()

    # -- inference thread -----------------------------------------------------------------------
    def _process(self, msg: Image) -> int | None:
        image = image_to_numpy(msg, "bgr8")
        detector, _ = self.models.current()
        if detector is None:
            return None  # no model: the frame is dropped; diagnostics say why
        params = self.params
        thresholds = _parse_class_thresholds(params["class_thresholds"])
        floor = min([params["score_threshold"], *thresholds.values()])
        detector.spec = dataclasses.replace(
            detector.spec,
            score_threshold=floor,
            iou_threshold=params["nms_iou"],
            max_detections=params["max_detections"],
        )
        detections = self._filter(self.inference.infer(detector.detect, image), thresholds)
        self._det_pub.publish(detections_to_msg(detections, msg.header))
        if params["publish_overlay"] and self._overlay_pub.get_subscription_count() > 0:
            canvas = np.array(image, copy=True)
            draw_detections(canvas, detections)
            self._overlay_pub.publish(numpy_to_image(canvas, "bgr8", header=msg.header))
        return stamp_to_ns(msg.header.stamp)

    def _filter(self, detections: Detections, thresholds: Mapping[str, float]) -> Detections:
        if len(detections) == 0:
            return detections
        labels = detections.labels or [str(int(c)) for c in detections.class_ids]
        allowed = {c for c in self.params["classes"] if c.strip()}
        default = self.params["score_threshold"]
        keep = np.array(
            [
                (not allowed or label in allowed) and score >= thresholds.get(label, default)
                for label, score in zip(labels, detections.scores, strict=True)
            ],
            dtype=bool,
        )
        return detections[keep]

    def close(self) -> None:
        self.inference.close()


def create_node(args: list[str]) -> DetectorNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return DetectorNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(DetectorNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())

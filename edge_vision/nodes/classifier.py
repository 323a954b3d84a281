"""classifier: image classification of whole frames, or of the objects a detector found.

Two modes (parameter ``mode``, fixed at start since it decides the topics):

``frame`` (whole-frame classification)
    Subscribes ``image`` (sensor_msgs/Image, best effort); publishes ``classification``
    (vision_msgs/Classification, header copied from the image, ``results`` the top-K
    ``ObjectHypothesis(class_id=str(index), score)``, best first). ``smoothing`` > 0 averages the
    per-class probabilities over frames (EMA) before the top-K is taken.

``detections`` (secondary classification of detected objects)
    Subscribes ``image`` and ``detections`` (vision_msgs/Detection2DArray) and pairs them by
    equal header stamp (a detector copies the image header), plus ``detection_labels``
    (the detector's LabelInfo, optional) to name detector classes for ``classes``. For each
    pair the detections to classify (all, or those whose detector class is in ``classes``) are
    cropped as squares ``crop_expand`` times their longer side (shifted inside the frame) and
    classified in one batched inference. Publishes ``classified`` (vision_msgs/Detection2DArray):

    - ``header``: the input Detection2DArray's (so the image stamp);
    - one Detection2D per classified detection, in input order (without ``classes``: exactly
      one per input detection, so ``classified.detections[i]`` is ``detections.detections[i]``);
    - each with the input detection's ``header``, ``bbox`` and ``id`` (track id, if any);
    - ``results``: the classifier's top-K hypotheses, best first, ``class_id`` the decimal
      index in the *classifier's* label space (``labels`` names it), ``score`` its probability,
      pose zero; empty when ``threshold`` dropped them all. The detector's class is not
      repeated (another label space): join on the bbox / id when both are needed.

Both modes publish ``labels`` (vision_msgs/LabelInfo, transient-local: the classifier's class id
-> name map, republished when the model or ``threshold`` changes) and ``/diagnostics``, and serve
``~/load_model`` (edge_vision/srv/LoadModel).

The node works on the newest frame (or pair): when inference is slower than the input, older
ones are skipped and counted instead of queueing. A model change (``model``/``device``
parameters or ``~/load_model``) loads the new model while the old one serves, then swaps it in;
a model that fails to load is refused with the reason. A frame that cannot be classified (an
unsupported encoding, a broken image) is logged once per distinct error, counted in diagnostics
and skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

from edge_vision.core.smoothing import TemporalSmoother
from edge_vision.core.sync import StampMatcher
from edge_vision.ros.conversions import (
    classification_msg,
    classified_detections_msg,
    label_info_msg,
    labels_from_label_info,
    msg_to_detections,
)
from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
from edge_vision.ros.inference_loop import InferenceLoop
from edge_vision.ros.model_host import ModelHost
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import latched_qos, sensor_subscriber_qos

# No "jetson": jetson-inference's imageNet returns the top-1 class only, not the per-class
# probabilities that top-K, smoothing and batched crops need.
DEVICES = ("cpu", "cuda", "tensorrt")
MODES = ("frame", "detections")

PARAMS = (
    Param(
        "mode",
        "frame",
        "frame: classify whole images; detections: classify the crops of a detector's boxes.",
        choices=MODES,
        read_only=True,
    ),
    Param(
        "model",
        "efficientnet-lite0",
        "Classification model: a zoo name (edge-vision models list), an imported name or an "
        ".onnx path. Changing it loads the new model first; a model that fails is refused.",
    ),
    Param("device", "cpu", "Inference device.", choices=DEVICES),
    Param(
        "trt_cache_dir",
        "",
        "TensorRT engine cache directory (device tensorrt); empty: none. Used at the next load.",
    ),
    Param("top_k", 5, "Most classes published per image or object.", range=(1, 100)),
    Param("threshold", 0.0, "Classes scoring below this are not published.", range=(0.0, 1.0)),
    Param(
        "smoothing",
        0.0,
        "Frame mode: EMA weight (alpha) of the newest frame's class probabilities, e.g. 0.3 "
        "averages over about 5 frames; 0 = off. Reset on a model change.",
        range=(0.0, 1.0),
    ),
    Param(
        "crop_expand",
        1.2,
        "Detections mode: crop side = longer box side x this (context around the object).",
        range=(0.5, 4.0),
    ),
    Param(
        "classes",
        [],
        "Detections mode: only classify detections of these detector classes (names from "
        "detection_labels, else class ids); empty or [''] = all.",
        list_type=str,
    ),
    Param(
        "sync_queue_size",
        30,
        "Detections mode: images (and detection arrays) held while waiting for their partner; "
        "must cover the detector's latency in frames.",
        range=(1, 1000),
    ),
)


class ClassifierNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("classifier", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self.mode: str = self.params["mode"]
        self.models = ModelHost(self, self._load, DEVICES, on_swapped=self._publish_labels)

        self._labels_pub = self.create_publisher(LabelInfo, "labels", latched_qos())
        # Inputs in a group of their own: they keep arriving while a model loads.
        self._inputs = MutuallyExclusiveCallbackGroup()
        self._matcher: StampMatcher | None = None
        self._detection_labels: list[str] | None = None
        if self.mode == "frame":
            self.create_subscription(
                Image,
                "image",
                self._put,
                sensor_subscriber_qos(1),
                callback_group=self._inputs,
            )
            self._class_pub = self.create_publisher(Classification, "classification", 10)
        else:
            self._matcher = StampMatcher(2, self.params["sync_queue_size"])
            # Deeper than frame mode: a lost image is a lost pair.
            self.create_subscription(
                Image,
                "image",
                self._on_image,
                sensor_subscriber_qos(5),
                callback_group=self._inputs,
            )
            self.create_subscription(
                Detection2DArray,
                "detections",
                self._on_detections,
                sensor_subscriber_qos(10),
                callback_group=self._inputs,
            )
            self.create_subscription(
                LabelInfo, "detection_labels", self._on_detection_labels, latched_qos()
            )
            self._classified_pub = self.create_publisher(Detection2DArray, "classified", 10)
        self._smoother: TemporalSmoother | None = None
        self._smoothed_model: Any = None
        self.objects_done = 0
        self.models.load_at_start()
        self.inference: InferenceLoop[Any] = InferenceLoop(
            self, self.models, self._process, extra_values=self._extra_values
        )

    def _put(self, item: Any) -> None:
        self.inference.put(item)

    # -- models -------------------------------------------------------------------------------
    def _load(self, model: str, device: str) -> Any:
        from edge_vision.models.zoo import load_classifier

        trt_cache = self.params["trt_cache_dir"]
        return load_classifier(model, device=device, trt_cache_dir=trt_cache or None)

    def _publish_labels(self) -> None:
        classifier, _ = self.models.current()
        if classifier is None:
            return
        labels = list(classifier.spec.labels) or [
            str(i) for i in range(classifier.num_classes or 0)
        ]
        header = Header(stamp=self.get_clock().now().to_msg())
        self._labels_pub.publish(label_info_msg(labels, header, self.params["threshold"]))

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        # A model swap republishes LabelInfo itself (on_swapped); a threshold change does here.
        if not self.models.parameters_changed(changed) and "threshold" in changed:
            self._publish_labels()
        if "sync_queue_size" in changed and self._matcher is not None:
            self._matcher.queue_size = changed["sync_queue_size"]

    # -- inputs (executor threads) ----------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._match(0, msg)

    def _on_detections(self, msg: Detection2DArray) -> None:
        self._match(1, msg)

    def _match(self, index: int, msg: Any) -> None:
        assert self._matcher is not None
        pair = self._matcher.add(index, stamp_to_ns(msg.header.stamp), msg)
        if pair is not None:
            self.inference.put(pair)

    def _on_detection_labels(self, msg: LabelInfo) -> None:
        self._detection_labels = labels_from_label_info(msg)

    # -- inference thread -----------------------------------------------------------------------
    def _process(self, item: Any) -> int | None:
        if self.mode == "frame":
            return self._classify_frame(item)
        return self._classify_detections(*item)

    def _current(self) -> Any:
        """The serving classifier with this frame's top-K and threshold, or None."""
        classifier, _ = self.models.current()
        if classifier is not None:
            # Only this thread runs the model, so setting them here cannot race a classification.
            classifier.top_k = self.params["top_k"]
            classifier.threshold = self.params["threshold"]
        return classifier

    def _classify_frame(self, msg: Image) -> int | None:
        classifier = self._current()
        if classifier is None:
            return None  # no model: the frame is dropped; diagnostics say why
        image = image_to_numpy(msg, "bgr8")
        probs = self._smooth(classifier, self.inference.infer(classifier.predict, [image]))
        kept = classifier.select(probs).row(0)
        self._class_pub.publish(
            classification_msg([c for c, _, _ in kept], [s for _, s, _ in kept], msg.header)
        )
        return stamp_to_ns(msg.header.stamp)

    def _smooth(self, classifier: Any, probs: np.ndarray) -> np.ndarray:
        alpha = self.params["smoothing"]
        if alpha <= 0.0:
            self._smoother = None
            return probs
        if self._smoother is None or self._smoothed_model is not classifier:
            # A new model has other classes (or other calibration): start over.
            self._smoother = TemporalSmoother(alpha)
            self._smoothed_model = classifier
        self._smoother.alpha = alpha
        return self._smoother.update(probs)[None]

    def _classify_detections(self, image_msg: Image, dets_msg: Detection2DArray) -> int | None:
        classifier = self._current()
        if classifier is None:
            return None
        detections = msg_to_detections(dets_msg, self._detection_labels)
        allowed = {c.strip() for c in self.params["classes"] if c.strip()}
        indices = [
            i
            for i, (name, class_id) in enumerate(
                zip(detections.labels, detections.class_ids, strict=True)
            )
            if not allowed or name in allowed or str(int(class_id)) in allowed
        ]
        if indices:
            result = self.inference.infer(
                classifier.classify_boxes,
                image_to_numpy(image_msg, "bgr8"),
                detections.xyxy[indices],
                expand=self.params["crop_expand"],
            )
        else:
            result = classifier.classify_batch([])  # nothing to classify: publish the empty set
        self._classified_pub.publish(classified_detections_msg(dets_msg, indices, result))
        self.objects_done += len(indices)
        return stamp_to_ns(image_msg.header.stamp)

    # -- reporting ------------------------------------------------------------------------------
    def _extra_values(self) -> dict[str, object]:
        values: dict[str, object] = {"mode": self.mode}
        if self._matcher is not None:  # frames_in/dropped then count matched pairs
            values["images_in"] = self._matcher.received[0]
            values["detections_in"] = self._matcher.received[1]
            values["pairs_matched"] = self._matcher.matched
            values["images_unmatched"] = self._matcher.dropped[0]
            values["detections_unmatched"] = self._matcher.dropped[1]
            values["objects_classified"] = self.objects_done
        return values

    def close(self) -> None:
        self.inference.close()


def create_node(args: list[str]) -> ClassifierNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return ClassifierNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(ClassifierNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())

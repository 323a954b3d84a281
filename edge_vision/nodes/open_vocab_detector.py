"""open_vocab_detector: open-vocabulary detection (OWL-ViT / OWLv2, NanoOWL) with a run-time prompt.

Topics: subscribes ``image`` (sensor_msgs/Image, best effort); publishes ``detections``
(vision_msgs/Detection2DArray, header copied from the image, ``class_id`` = the prompt object's
text), ``labels`` (vision_msgs/LabelInfo, transient-local: class index -> object text,
republished on every prompt change and model swap), ``overlay`` (boxes drawn, only while someone
subscribes and ``publish_overlay``), ``/diagnostics``.
Services: ``~/set_prompt`` (edge_vision/srv/SetPrompt), ``~/load_model``
(edge_vision/srv/LoadModel).

The prompt is the ``objects`` and ``thresholds`` parameters. ``~/set_prompt`` sets both at once,
so the parameters always name the serving prompt; setting them with ``ros2 param set`` goes
through the same validation. A refused prompt leaves the running one as it was. An accepted one
has its text embeddings computed right away (in the service call, not on the inference thread)
and is then swapped in as one immutable object, so every frame from the next one on is
detected, labelled and thresholded with the new prompt, and no frame mixes the two.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from edge_vision.core.detections import Detections
from edge_vision.core.drawing import draw_detections
from edge_vision.models.open_vocab import DEVICES, Prompt, PromptError
from edge_vision.ros.conversions import detections_to_msg, label_info_msg
from edge_vision.ros.image_conversion import image_to_numpy, numpy_to_image, stamp_to_ns
from edge_vision.ros.inference_loop import InferenceLoop
from edge_vision.ros.model_host import ModelHost
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import image_publisher_qos, latched_qos, sensor_subscriber_qos

PROMPT_PARAMS = ("objects", "thresholds", "max_objects")

PARAMS = (
    Param(
        "model",
        "google/owlvit-base-patch32",
        "OWL-ViT or OWLv2 model: a Hugging Face hub id (downloaded on first use) or a local "
        "folder written by save_pretrained. Changing it loads the new model first; a model that "
        "fails to load is refused and the old one keeps serving.",
    ),
    Param(
        "device",
        "cpu",
        "cpu or cuda (PyTorch), jetson (NanoOWL with a TensorRT image encoder).",
        choices=DEVICES,
    ),
    Param(
        "image_encoder_engine",
        "",
        "Device jetson: NanoOWL's TensorRT image-encoder engine file.",
        read_only=True,
    ),
    Param(
        "objects",
        ["a person"],
        "What to detect, in words, one object per entry, e.g. ['a person', 'a hat'].",
        list_type=str,
    ),
    Param(
        "thresholds",
        [0.1],
        "Minimum score per object, in [0, 1]: one per object or one for all.",
        list_type=float,
    ),
    Param(
        "threads",
        0,
        "PyTorch CPU threads (read at start-up; 0: PyTorch's default, one per core). On a "
        "machine other processes keep busy, 1 avoids threads spinning against each other.",
        range=(0, 256),
        read_only=True,
    ),
    Param("max_objects", 16, "Most objects a prompt may have.", range=(1, 256)),
    Param(
        "nms_iou",
        0.5,
        "IoU above which overlapping boxes of one object are merged (1.0: off).",
        range=(0.0, 1.0),
    ),
    Param("max_detections", 100, "Most detections per frame.", range=(1, 10000)),
    Param("publish_overlay", True, "Publish `overlay` (boxes drawn) while it has subscribers."),
)


def _round_threshold(value: float) -> float:
    # SetPrompt carries float32: 0.1 arrives as 0.10000000149; keep what the user typed.
    return float(f"{value:.6g}")


def named_detections_msg(detections: Detections, header: Header) -> Detection2DArray:
    """Detection2DArray whose hypotheses' ``class_id`` is the object text, not its index."""
    msg = detections_to_msg(detections, header)
    for det, label in zip(msg.detections, detections.labels or [], strict=True):
        det.results[0].hypothesis.class_id = label
    return msg


class OpenVocabDetectorNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("open_vocab_detector", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        try:
            self._prompt = self._prompt_from({})
        except PromptError as exc:
            raise NodeConfigError(f"invalid prompt: {exc}") from exc
        self.add_on_set_parameters_callback(self._check_prompt_params)
        if self.params["threads"] > 0:
            import torch

            torch.set_num_threads(self.params["threads"])
        self.models = ModelHost(self, self._load, DEVICES, on_swapped=self._model_swapped)

        self._det_pub = self.create_publisher(Detection2DArray, "detections", 10)
        self._overlay_pub = self.create_publisher(Image, "overlay", image_publisher_qos())
        self._labels_pub = self.create_publisher(LabelInfo, "labels", latched_qos())
        from edge_vision.srv import SetPrompt

        self.create_service(SetPrompt, "~/set_prompt", self._set_prompt_srv)
        # A prompt too long for the model fails the load (see _load): reported, node stays up.
        self.models.load_at_start()
        self.inference: InferenceLoop[Image] = InferenceLoop(
            self, self.models, self._process, extra_values=self._diag_values
        )
        # Its own callback group: frames keep arriving while a model loads or a prompt encodes.
        self.create_subscription(
            Image,
            "image",
            self.inference.put,
            sensor_subscriber_qos(1),
            callback_group=MutuallyExclusiveCallbackGroup(),
        )

    # -- models -------------------------------------------------------------------------------
    def _load(self, model: str, device: str) -> Any:
        from edge_vision.models.open_vocab import load_open_vocab

        detector = load_open_vocab(model, device, self.params["image_encoder_engine"])
        # The serving prompt must fit the new model too (token length); refuse the model if not.
        try:
            detector.text_embeddings(self._prompt)
        except PromptError as exc:
            from edge_vision.models.errors import ModelLoadError

            raise ModelLoadError(f"{model}: the serving prompt does not fit it: {exc}") from exc
        return detector

    def _model_swapped(self) -> None:
        self._publish_labels(self._prompt)

    # -- prompt -------------------------------------------------------------------------------
    def _prompt_from(self, values: Mapping[str, Any]) -> Prompt:
        """The prompt the current parameters, overridden by ``values``, describe (validated)."""

        def get(name: str) -> Any:
            return values[name] if name in values else self.params[name]

        return Prompt.create(
            list(get("objects")),
            [float(t) for t in get("thresholds")],
            max_objects=int(get("max_objects")),
        )

    def _check_prompt_params(self, params: list[Parameter]) -> SetParametersResult:
        values = {p.name: p.value for p in params if p.name in PROMPT_PARAMS}
        if not values:
            return SetParametersResult(successful=True)
        try:
            prompt = self._prompt_from(values)
            detector, _ = self.models.current()
            if detector is not None:
                detector.check_prompt(prompt)
        except (PromptError, TypeError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=f"prompt refused: {exc}")
        return SetParametersResult(successful=True)

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        self.models.parameters_changed(changed)
        if not set(PROMPT_PARAMS) & changed.keys():
            return
        prompt = self._prompt_from({})  # validated before the set was accepted
        detector, _ = self.models.current()
        if detector is not None:
            # Encode now, on this (service) thread: the inference thread finds it cached.
            try:
                detector.text_embeddings(prompt)
            except Exception as exc:  # a runtime failure: frames will retry it and report it
                self.get_logger().error(f"encoding the prompt failed: {exc}")
        self._prompt = prompt  # one reference swap: the next frame sees all of it
        self._publish_labels(prompt)
        self.get_logger().info(f"prompt: {prompt}")

    def _publish_labels(self, prompt: Prompt) -> None:
        header = Header(stamp=self.get_clock().now().to_msg())
        self._labels_pub.publish(label_info_msg(prompt.objects, header, min(prompt.thresholds)))

    def _set_prompt_srv(self, request: Any, response: Any) -> Any:
        objects = [str(o) for o in request.objects]
        thresholds = [_round_threshold(t) for t in request.thresholds]
        started = time.monotonic()
        result = self.set_parameters_atomically(
            [
                Parameter("objects", Parameter.Type.STRING_ARRAY, objects),
                Parameter("thresholds", Parameter.Type.DOUBLE_ARRAY, thresholds),
            ]
        )
        prompt = self._prompt
        response.success = result.successful
        response.message = (
            f"prompt set in {time.monotonic() - started:.3f} s: {prompt}"
            if result.successful
            else result.reason
        )
        response.objects = list(prompt.objects)
        response.thresholds = list(prompt.thresholds)
        return response

    # -- inference thread -----------------------------------------------------------------------
    def _process(self, msg: Image) -> int | None:
        image = image_to_numpy(msg, "bgr8")
        detector, _ = self.models.current()
        if detector is None:
            return None  # no model: the frame is dropped; diagnostics say why
        prompt = self._prompt  # read once: this frame uses one prompt throughout
        detections = self.inference.infer(
            detector.detect,
            image,
            prompt,
            nms_iou=self.params["nms_iou"],
            max_detections=self.params["max_detections"],
        )
        self._det_pub.publish(named_detections_msg(detections, msg.header))
        if self.params["publish_overlay"] and self._overlay_pub.get_subscription_count() > 0:
            canvas = np.array(image, copy=True)
            draw_detections(canvas, detections)
            self._overlay_pub.publish(numpy_to_image(canvas, "bgr8", header=msg.header))
        return stamp_to_ns(msg.header.stamp)

    def _diag_values(self) -> dict[str, object]:
        detector, _ = self.models.current()
        return {
            "prompt": str(self._prompt),
            "objects": len(self._prompt),
            "text_encoder_runs": getattr(detector, "text_encoder_runs", 0),
        }

    def close(self) -> None:
        self.inference.close()


def create_node(args: list[str]) -> OpenVocabDetectorNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return OpenVocabDetectorNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(OpenVocabDetectorNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())

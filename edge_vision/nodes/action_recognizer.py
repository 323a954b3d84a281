"""action_recognizer: clip-based action recognition over a sliding window of frames.

Topics, whole-frame mode (``mode: frame``): subscribes ``image``; publishes ``action_windows``
(edge_vision/msg/ActionWindow: top-K actions with the window's first and last frame stamps),
``actions`` (vision_msgs/Classification, header stamp = the window's last frame), ``labels``
(vision_msgs/LabelInfo, transient-local), ``/diagnostics``.
Per-track mode (``mode: tracks``): subscribes ``image`` and ``detections`` (tracked
Detection2DArray: ``Detection2D.id`` set), matched by stamp; keeps one window of square crops per
track, so that one person's action is recognised in a crowd; publishes one ActionWindow per track
and window (``track_id``, ``bbox``).
Services: ``~/load_model`` (edge_vision/srv/LoadModel).

Every ``frame_step``-th frame is preprocessed once, as it arrives, into a ring buffer of T frames
(``clip_len``); every ``stride`` sampled frames a complete window goes to the inference thread.
When inference is slower than windows come, the thread takes the newest window and the ones it
never ran are counted (``frames_dropped`` in diagnostics; gaps in ``window_index``): latency stays
bounded by one inference instead of growing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

from edge_vision.core.clips import Clip, ClipBuffer, TrackClipBuffers
from edge_vision.core.crops import crop_boxes
from edge_vision.core.sync import StampMatcher
from edge_vision.ros.conversions import (
    action_window_msg,
    classification_msg,
    label_info_msg,
    msg_to_detections,
)
from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
from edge_vision.ros.inference_loop import InferenceLoop
from edge_vision.ros.model_host import ModelHost
from edge_vision.ros.node_main import EdgeVisionNode, NodeConfigError, run_node
from edge_vision.ros.parameters import Param, ParameterBinding
from edge_vision.ros.qos import latched_qos, sensor_subscriber_qos

DEVICES = ("cpu", "cuda", "tensorrt")
_WINDOW = frozenset({"clip_len", "stride", "frame_step"})

PARAMS = (
    Param(
        "mode",
        "frame",
        "frame: one window of whole frames; tracks: one window of crops per tracked object "
        "(needs `detections` with track ids). Read at start-up.",
        choices=("frame", "tracks"),
        read_only=True,
    ),
    Param("model", "i3d-kinetics400", "Video model: zoo name, imported name or .onnx path."),
    Param("device", "cpu", "Inference device.", choices=DEVICES),
    Param("trt_cache_dir", "", "TensorRT engine cache directory (device tensorrt)."),
    Param("clip_len", 16, "Frames per window (T); must fit the model.", range=(1, 512)),
    Param(
        "stride",
        8,
        "Sampled frames between two windows (8 with T=16: half overlap).",
        range=(1, 512),
    ),
    Param(
        "frame_step",
        1,
        "Take every n-th input frame into the window (2 on a 30 fps camera ~ 15 fps).",
        range=(1, 100),
    ),
    Param("top_k", 5, "Actions per window.", range=(1, 400)),
    Param("threshold", 0.0, "Leave out actions scoring below this.", range=(0.0, 1.0)),
    Param(
        "crop_expand",
        1.5,
        "Tracks mode: crop side = longer box side x this (context around the person).",
        range=(0.5, 4.0),
    ),
    Param("max_tracks", 16, "Tracks mode: most tracks with a window at once.", range=(1, 1000)),
    Param(
        "track_classes",
        [],
        "Tracks mode: only these detector class ids/names (empty or [''] = all).",
        list_type=str,
    ),
)


class ActionRecognizerNode(EdgeVisionNode):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("action_recognizer", **kwargs)
        try:
            self.params = ParameterBinding(self, PARAMS, on_change=self._on_params)
        except ValueError as exc:
            raise NodeConfigError(str(exc)) from exc
        self.mode: str = self.params["mode"]
        self.models = ModelHost(self, self._load, DEVICES, on_swapped=self._model_swapped)
        # Registered after ModelHost's: rclpy runs the newest callback first, so a clip length
        # the serving model cannot take is refused before anything is loaded.
        self.add_on_set_parameters_callback(self._check_clip_len)

        self._windows_pub = self.create_publisher(_action_window_type(), "action_windows", 10)
        self._actions_pub = self.create_publisher(Classification, "actions", 10)
        self._labels_pub = self.create_publisher(LabelInfo, "labels", latched_qos())
        self._frame_index = 0
        self._buffer = ClipBuffer(1)
        self._tracks = TrackClipBuffers(1)
        self._matcher: StampMatcher | None = None
        self._configure_window()
        self.models.load_at_start()
        self.inference: InferenceLoop[Any] = InferenceLoop(
            self, self.models, self._process, extra_values=self._extra_values
        )
        inputs = MutuallyExclusiveCallbackGroup()  # frames keep coming while a model loads
        if self.mode == "frame":
            self.create_subscription(
                Image, "image", self._on_frame, sensor_subscriber_qos(5), callback_group=inputs
            )
        else:
            self._matcher = StampMatcher(2, 30)
            self.create_subscription(
                Image,
                "image",
                lambda m: self._match(0, m),
                sensor_subscriber_qos(5),
                callback_group=inputs,
            )
            self.create_subscription(
                Detection2DArray,
                "detections",
                lambda m: self._match(1, m),
                sensor_subscriber_qos(10),
                callback_group=inputs,
            )

    # -- models and windows ------------------------------------------------------------------
    def _load(self, model: str, device: str) -> Any:
        from edge_vision.models.zoo import load_video_classifier

        trt_cache = self.params["trt_cache_dir"] or None
        return load_video_classifier(
            model, device=device, trt_cache_dir=trt_cache, clip_len=self.params["clip_len"]
        )

    def _check_clip_len(self, params: list[Parameter]) -> SetParametersResult:
        values = {p.name: p.value for p in params}
        if "clip_len" not in values or "model" in values:
            return SetParametersResult(successful=True)  # a model change checks it on load
        model, name = self.models.current()
        if model is None:
            return SetParametersResult(successful=True)
        clip_len = values["clip_len"]
        fixed, shortest = model.model_clip_len, model.spec.min_clip_len
        if fixed is not None and clip_len != fixed:
            reason = f"{name} takes windows of exactly {fixed} frames, not {clip_len}"
        elif clip_len < shortest:
            reason = f"{name} needs windows of at least {shortest} frames, not {clip_len}"
        else:
            return SetParametersResult(successful=True)
        return SetParametersResult(successful=False, reason=reason)

    def _configure_window(self) -> None:
        p = self.params
        self._buffer = ClipBuffer(p["clip_len"], p["frame_step"], p["stride"])
        self._tracks = TrackClipBuffers(
            p["clip_len"], p["frame_step"], p["stride"], max_tracks=p["max_tracks"]
        )

    def _model_swapped(self) -> None:
        self._configure_window()  # the new model may take another input size
        model, _ = self.models.current()
        header = Header(stamp=self.get_clock().now().to_msg())
        self._labels_pub.publish(label_info_msg(list(model.spec.labels), header))

    def _on_params(self, changed: Mapping[str, Any]) -> None:
        if not self.models.parameters_changed(changed) and (_WINDOW | {"max_tracks"}) & set(
            changed
        ):
            self._configure_window()

    # -- inputs (executor thread) -----------------------------------------------------------------
    def _on_frame(self, msg: Image) -> None:
        index, self._frame_index = self._frame_index, self._frame_index + 1
        model, _ = self.models.current()
        # Frames the window will not use are never converted or preprocessed.
        if model is None or not self._buffer.want(index):
            return
        frame = model.preprocess_frame(image_to_numpy(msg, "bgr8"))
        clip = self._buffer.push(frame, stamp_to_ns(msg.header.stamp))
        if clip is not None:
            self.inference.put((msg.header.frame_id, [clip], []))

    def _match(self, index: int, msg: Any) -> None:
        assert self._matcher is not None
        pair = self._matcher.add(index, stamp_to_ns(msg.header.stamp), msg)
        if pair is not None:
            self._on_tracked_frame(*pair)

    def _on_tracked_frame(self, image_msg: Image, dets_msg: Detection2DArray) -> None:
        model, _ = self.models.current()
        if model is None:
            return
        detections = msg_to_detections(dets_msg)
        allowed = {c.strip() for c in self.params["track_classes"] if c.strip()}
        tracks = detections.track_ids
        if tracks is None:
            return  # untracked detections: nothing to follow over time
        labels = detections.labels or []
        # Each track samples its own observations (every frame_step-th crop of that track).
        rows = [
            i
            for i in range(len(detections))
            if tracks[i] >= 0
            and (not allowed or labels[i] in allowed or str(detections.class_ids[i]) in allowed)
            and self._tracks.want(int(tracks[i]))
        ]
        if not rows:
            return
        image = image_to_numpy(image_msg, "bgr8")
        crops = crop_boxes(image, detections.xyxy[rows], expand=self.params["crop_expand"])
        stamp = stamp_to_ns(image_msg.header.stamp)
        clips: list[Clip] = []
        boxes = []
        for row, crop in zip(rows, crops, strict=True):
            track = int(tracks[row])
            clip = self._tracks.push(track, model.preprocess_frame(crop), stamp)
            if clip is not None:
                clips.append(clip)
                boxes.append(detections.xyxy[row])
        if clips:
            self.inference.put((image_msg.header.frame_id, clips, boxes))

    # -- inference thread -----------------------------------------------------------------------
    def _process(self, item: tuple[str, list[Clip], list[np.ndarray]]) -> int | None:
        frame_id, clips, boxes = item
        model, _ = self.models.current()
        if model is None:
            return None
        model.top_k = self.params["top_k"]
        model.threshold = self.params["threshold"]
        batch = np.stack([c.frames for c in clips])
        results = self.inference.infer(model.classify_clips, batch)
        for i, clip in enumerate(clips):
            kept = results.row(i)
            class_ids = [c for c, _, _ in kept]
            scores = [s for _, s, _ in kept]
            window = action_window_msg(
                clip, class_ids, scores, frame_id, boxes[i] if boxes else None
            )
            self._windows_pub.publish(window)
            if clip.key is None:
                self._actions_pub.publish(classification_msg(class_ids, scores, window.header))
        return clips[-1].last_stamp_ns

    def _extra_values(self) -> dict[str, object]:
        values: dict[str, object] = {"mode": self.mode, "clip_len": self.params["clip_len"]}
        if self.mode == "tracks":
            values["tracks"] = len(self._tracks.tracks)
            values["tracks_evicted"] = self._tracks.evictions
        return values

    def close(self) -> None:
        self.inference.close()


def _action_window_type() -> type:
    from edge_vision.msg import ActionWindow

    return ActionWindow


def create_node(args: list[str]) -> ActionRecognizerNode:
    """Single-process launch hook (``edge-vision launch --single-process``)."""
    return ActionRecognizerNode(cli_args=args)


def main(args: list[str] | None = None) -> int:
    return run_node(ActionRecognizerNode, args, threads=4)


if __name__ == "__main__":
    raise SystemExit(main())

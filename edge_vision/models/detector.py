"""Object detection on onnxruntime: preprocessing per model spec, inference, decoding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from edge_vision.core.detections import Detections
from edge_vision.models.backends import create_onnx_session
from edge_vision.models.decoders import (
    COCO80_LABELS,
    RawBoxes,
    ResizeTransform,
    decode_centernet,
    decode_gfl,
    decode_ssd,
    decode_yolo,
    find_gfl_outputs,
    find_ssd_outputs,
    nms,
)
from edge_vision.models.preprocess import as_bgr


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What a detection model expects and how its outputs decode.

    The input tensor is ``(pixel - mean) / std`` with pixels in 0..255 in ``channel_order``;
    ``mean``/``std`` are given in that same channel order.
    """

    name: str
    input_size: tuple[int, int]
    """(width, height) of the model input."""
    decoder: Literal["gfl", "centernet", "yolo", "ssd"]
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    channel_order: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    letterbox: bool = False
    """Keep the aspect ratio and pad (centred) instead of stretching to the input size."""
    pad_value: int = 0
    labels: tuple[str, ...] = COCO80_LABELS
    score_threshold: float = 0.35
    iou_threshold: float = 0.6
    max_detections: int = 100
    class_agnostic_nms: bool = False
    strides: tuple[int, ...] = (8, 16, 32)
    """GFL only: the stride of each output level."""
    reg_max: int = 10
    """GFL only: box sides are distributions over reg_max + 1 bins."""
    center_offset: float = 0.5
    """GFL only: anchor points at (col + offset) * stride."""
    input_name: str | None = None
    """Graph input to feed; the first input when None."""
    output_names: tuple[str, ...] | None = None
    """Graph outputs to fetch and decode; all outputs when None."""
    ssd_box_format: Literal["xyxy", "yxyx"] = "xyxy"
    """SSD only: corner order of the boxes output."""
    ssd_normalized: bool = True
    """SSD only: boxes are 0..1 fractions of the input size (else input pixels)."""


def resize_to_input(bgr: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, ResizeTransform]:
    """The uint8 HxWx3 model-input image in the spec's channel order, and how it maps back."""
    image = as_bgr(bgr)
    h, w = image.shape[:2]
    in_w, in_h = spec.input_size
    if spec.letterbox:
        scale = min(in_w / w, in_h / h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        pad_x, pad_y = (in_w - new_w) // 2, (in_h - new_h) // 2
        canvas = np.full((in_h, in_w, 3), spec.pad_value, np.uint8)
        canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = cv2.resize(
            image, (new_w, new_h), interpolation=cv2.INTER_LINEAR
        )
        transform = ResizeTransform(new_w / w, new_h / h, pad_x, pad_y, w, h)
    else:
        canvas = cv2.resize(image, (in_w, in_h), interpolation=cv2.INTER_LINEAR)
        transform = ResizeTransform(in_w / w, in_h / h, 0.0, 0.0, w, h)
    if spec.channel_order == "RGB":
        canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    return canvas, transform


def normalize_input(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Float32 batch-of-one tensor from a uint8 model-input image (see :func:`resize_to_input`)."""
    mean = np.asarray(spec.mean, np.float32)
    inv_std = np.float32(1.0) / np.asarray(spec.std, np.float32)
    x = (image.astype(np.float32) - mean) * inv_std
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=np.float32)


class Detector:
    """Runs one ONNX detection model; :meth:`detect` returns boxes in original image pixels.

    The session comes from :func:`edge_vision.models.backends.create_onnx_session`: ``device``
    is ``cpu``, ``cuda`` or ``tensorrt``; ``providers`` (an onnxruntime provider list) overrides
    it. Load failures raise :class:`~edge_vision.models.errors.ModelLoadError`.
    """

    def __init__(
        self,
        model_path: str | Path,
        spec: ModelSpec,
        *,
        device: str = "cpu",
        providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
        intra_op_num_threads: int | None = None,
        trt_cache_dir: str | Path | None = None,
    ) -> None:
        self.spec = spec
        self.session = create_onnx_session(
            model_path,
            device,
            trt_cache_dir=trt_cache_dir,
            intra_op_threads=intra_op_num_threads,
            providers=providers,
        )
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.input_name = spec.input_name or next(iter(inputs))
        if self.input_name not in inputs:
            raise ValueError(f"{model_path}: no input {self.input_name!r} (has {list(inputs)})")
        self._check_input_shape(inputs[self.input_name].shape, model_path)
        outputs = [o.name for o in self.session.get_outputs()]
        missing = [n for n in spec.output_names or () if n not in outputs]
        if missing:
            raise ValueError(f"{model_path}: no output {missing[0]!r} (has {outputs})")
        self.output_names = list(spec.output_names or outputs)

    def _check_input_shape(self, shape: Sequence[Any], model_path: str | Path) -> None:
        w, h = self.spec.input_size
        want = [1, 3, h, w] if self.spec.layout == "NCHW" else [1, h, w, 3]
        static = [d if isinstance(d, int) else None for d in shape]
        if len(static) != 4 or any(
            s is not None and s != x for s, x in zip(static, want, strict=True)
        ):
            raise ValueError(f"{model_path}: input shape {list(shape)} does not match spec {want}")

    def preprocess(self, bgr: np.ndarray) -> tuple[np.ndarray, ResizeTransform]:
        image, transform = resize_to_input(bgr, self.spec)
        return normalize_input(image, self.spec), transform

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Raw model outputs by name."""
        values = self.session.run(self.output_names, {self.input_name: tensor})
        return dict(zip(self.output_names, values, strict=True))

    def decode(self, outputs: Mapping[str, np.ndarray]) -> RawBoxes:
        """Candidates above the score threshold, in model-input pixels, before NMS."""
        spec = self.spec
        input_hw = (spec.input_size[1], spec.input_size[0])
        if spec.decoder == "gfl":
            levels = find_gfl_outputs(
                outputs, input_hw, spec.strides, len(spec.labels), spec.reg_max
            )
            return decode_gfl(
                levels,
                input_hw,
                spec.strides,
                spec.reg_max,
                spec.score_threshold,
                spec.center_offset,
            )
        if spec.decoder == "centernet":
            dets = [v for v in outputs.values() if v.shape[-1] == 6 and v.ndim <= 3]
            if len(dets) != 1:
                shapes = [v.shape for v in outputs.values()]
                raise ValueError(f"expected one (N, 6) detections output, got {shapes}")
            return decode_centernet(dets[0], spec.score_threshold)
        if spec.decoder == "yolo":
            if len(outputs) != 1:
                shapes = [v.shape for v in outputs.values()]
                raise ValueError(f"yolo decodes one output, got {shapes} (set output_names)")
            return decode_yolo(next(iter(outputs.values())), len(spec.labels), spec.score_threshold)
        if spec.decoder == "ssd":
            boxes, scores, background_first = find_ssd_outputs(outputs, len(spec.labels))
            raw = decode_ssd(
                boxes,
                scores,
                spec.score_threshold,
                input_hw,
                spec.ssd_box_format,
                spec.ssd_normalized,
                background_first,
            )
            if not background_first and spec.labels and spec.labels[0].lower() == "background":
                raw = raw.take(np.flatnonzero(raw.class_ids != 0))  # labels.txt lists it first
            return raw
        raise ValueError(f"unknown decoder {spec.decoder!r}")

    def detect(self, bgr: np.ndarray) -> Detections:
        """Detect objects in a BGR (or grey/BGRA) uint8 image."""
        tensor, transform = self.preprocess(bgr)
        raw = self.decode(self.infer(tensor))
        if len(raw.scores) == 0:
            return Detections.empty(with_labels=True)
        keep = nms(
            raw.xyxy,
            raw.scores,
            self.spec.iou_threshold,
            None if self.spec.class_agnostic_nms else raw.class_ids,
            self.spec.max_detections,
        )
        raw = raw.take(keep)
        labels = self.spec.labels
        names = [labels[c] if 0 <= c < len(labels) else str(int(c)) for c in raw.class_ids]
        return Detections(transform.to_image(raw.xyxy), raw.scores, raw.class_ids, labels=names)

"""Video (action) classification on onnxruntime: clips of frames in, top-k classes out.

A video model takes ``(N, C, T, H, W)`` float32 clips. Frames are preprocessed one at a time as
they arrive (:meth:`VideoClassifier.preprocess_frame`, so a node can keep a ring of ready
``(C, H, W)`` frames), stacked to ``(T, C, H, W)`` clips and classified per clip or per batch
of clips (one clip per tracked person: :meth:`VideoClassifier.classify_clips`). Scores and
top-k/threshold selection are the image classifier's (:func:`~edge_vision.models.scoring.
activate`, :func:`~edge_vision.models.scoring.select_top_k`), so results are the same
:class:`~edge_vision.core.classifications.Classifications`.

Frame preprocessing (the choice of DeepMind's I3D/Kinetics pipeline): scale the frame so that
its shorter side is ``resize_shorter`` px (and the crop still fits), take the centred
``input_size`` crop, then ``(pixel * scale - mean) / std`` in ``channel_order``. The centre
crop keeps the aspect ratio (a stretched person moves differently); ``resize_shorter`` above
the crop size drops a margin all round, as the model saw in training (256 -> 224 for I3D).
Shrinking uses area averaging (a 1080p frame would alias with bilinear), enlarging bilinear.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from edge_vision.core.classifications import Classifications
from edge_vision.models.preprocess import as_bgr
from edge_vision.models.scoring import ScoringModel

__all__ = ["ActionSpec", "VideoClassifier", "center_crop_frame"]


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """What a video classification model expects and how its output reads.

    The input tensor is ``(pixel * scale - mean) / std`` with pixels 0..255 in
    ``channel_order``, laid out ``(N, C, T, H, W)``.
    """

    name: str
    clip_len: int | None = None
    """Frames per clip. None: any T the model accepts (a model with a fixed T sets it)."""
    min_clip_len: int = 1
    """Shortest clip the network can take (I3D: 9), checked against ``clip_len``."""
    input_size: tuple[int, int] = (224, 224)
    """(width, height) of each model-input frame."""
    resize_shorter: int | None = None
    """Shorter side before the centre crop; None: just large enough for the crop."""
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    channel_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCTHW"] = "NCTHW"
    labels: tuple[str, ...] = field(default=(), repr=False)  # 400 names would drown a repr
    """One name per output class, in output order; empty: results are labelled by class id."""
    multi_label: bool = False
    outputs_logits: bool = True
    """False when the graph already ends in its softmax/sigmoid."""
    top_k: int = 5
    threshold: float = 0.0
    input_name: str | None = None
    output_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(self.labels))
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.layout != "NCTHW":
            raise ValueError(f"layout {self.layout!r}: only NCTHW video input is supported")
        if self.clip_len is not None and self.clip_len < 1:
            raise ValueError(f"clip_len must be >= 1, got {self.clip_len}")
        if any(s == 0 for s in self.std):
            raise ValueError(f"std {list(self.std)} has a zero")


def center_crop_frame(bgr: np.ndarray, spec: ActionSpec) -> np.ndarray:
    """The uint8 ``(H, W, 3)`` model-input frame in the spec's channel order (see module docs)."""
    image = as_bgr(bgr)
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"cannot classify an empty frame of shape {bgr.shape}")
    in_w, in_h = spec.input_size
    shorter = spec.resize_shorter or min(in_w, in_h)
    # Shorter side to `shorter`, but never so small that the crop would not fit.
    s = max(shorter / min(h, w), in_w / w, in_h / h)
    new_w, new_h = max(in_w, round(w * s)), max(in_h, round(h * s))
    interpolation = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    y0, x0 = (new_h - in_h) // 2, (new_w - in_w) // 2
    out = resized[y0 : y0 + in_h, x0 : x0 + in_w]
    if spec.channel_order == "RGB":
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(out)


class VideoClassifier(ScoringModel):
    """Runs one ONNX video classification model (``(N, C, T, H, W)`` input) on clips.

    ``providers`` (an onnxruntime provider list) overrides ``device`` (``cpu``, ``cuda``,
    ``tensorrt``). ``top_k``/``threshold`` default to the spec's and may be changed on the
    instance. :attr:`clip_len` is the number of frames every clip must have: the spec's, or the
    model's own when its T axis is fixed (None: any T >= ``spec.min_clip_len``);
    :attr:`model_clip_len` is the T fixed in the graph (None: the graph takes any T).

    Raises :class:`ModelLoadError` naming the file when it is missing or not ONNX, or its
    input/output does not fit ``spec`` (rank, channels, fixed T vs ``clip_len``, size, number
    of classes vs labels).
    """

    def __init__(
        self,
        model_path: str | Path,
        spec: ActionSpec,
        device: str = "cpu",
        *,
        providers: Sequence[str | tuple[str, Mapping[str, Any]]] | None = None,
        trt_cache_dir: str | Path | None = None,
        intra_op_threads: int | None = None,
        top_k: int | None = None,
        threshold: float | None = None,
        max_batch: int | None = None,
    ) -> None:
        self._open(
            model_path,
            spec,
            device,
            providers=providers,
            trt_cache_dir=trt_cache_dir,
            intra_op_threads=intra_op_threads,
            top_k=top_k,
            threshold=threshold,
            max_batch=max_batch,
        )
        self.model_clip_len: int | None = None
        self.input_name, self.batchable, self.clip_len = self._check_input()
        self.output_name, self.num_classes = self._check_output()
        w, h = spec.input_size
        self.frame_shape: tuple[int, int, int] = (3, h, w)
        """(C, H, W) of one preprocessed frame."""
        self._scale = np.float32(spec.scale)
        self._mean = np.asarray(spec.mean, np.float32)
        self._inv_std = np.float32(1.0) / np.asarray(spec.std, np.float32)

    def _check_input(self) -> tuple[str, bool, int | None]:
        inputs = {i.name: i for i in self.session.get_inputs()}
        name = self.spec.input_name or next(iter(inputs))
        if name not in inputs:
            raise self._fail(f"no input {name!r} (inputs: {list(inputs)})")
        arg = inputs[name]
        if arg.type != "tensor(float)":
            raise self._fail(f"input {name!r} is {arg.type}, expected tensor(float)")
        shape = list(arg.shape)
        if len(shape) != 5:
            hint = ": is this an image model?" if len(shape) == 4 else ""
            raise self._fail(
                f"expected (N, C, T, H, W) video input, got rank {len(shape)}{hint} "
                f"(input {name!r} shape {shape})"
            )
        batch, channels, time, height, width = shape
        if isinstance(channels, int) and channels != 3:
            raise self._fail(
                f"input {name!r} shape {shape} has {channels} channels at axis 1 (N, C, T, H, W); "
                "expected 3 (RGB/BGR frames)"
            )
        in_w, in_h = self.spec.input_size
        if (isinstance(height, int) and height != in_h) or (
            isinstance(width, int) and width != in_w
        ):
            raise self._fail(
                f"input {name!r} shape {shape} takes {width}x{height} (WxH) frames, the spec "
                f"says {in_w}x{in_h}"
            )
        clip_len = self.spec.clip_len
        if isinstance(time, int):
            if clip_len is not None and clip_len != time:
                raise self._fail(f"model expects T={time} frames, clip_len is {clip_len}")
            clip_len = self.model_clip_len = time
        elif clip_len is not None and clip_len < self.spec.min_clip_len:
            raise self._fail(
                f"model needs clips of at least T={self.spec.min_clip_len} frames, "
                f"clip_len is {clip_len}"
            )
        if isinstance(batch, int) and batch != 1:
            raise self._fail(f"input {name!r} has a fixed batch of {batch}; need 1 or dynamic")
        return name, not isinstance(batch, int), clip_len

    # ----------------------------------------------------------------------------------------

    def preprocess_frame(self, bgr: np.ndarray) -> np.ndarray:
        """One BGR (or grey/BGRA) uint8 frame -> the float32 ``(C, H, W)`` model-input frame."""
        image = center_crop_frame(bgr, self.spec)
        x = (image.astype(np.float32) * self._scale - self._mean) * self._inv_std
        return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)

    def preprocess_clip(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 frames -> the float32 ``(T, C, H, W)`` clip."""
        return np.stack([self.preprocess_frame(f) for f in frames])

    def _check_clips(self, clips: np.ndarray) -> np.ndarray:
        clips = np.asarray(clips, np.float32)
        if clips.ndim != 5 or tuple(clips.shape[2:]) != self.frame_shape:
            raise ValueError(
                f"expected clips of shape (B, T, {', '.join(map(str, self.frame_shape))}), got "
                f"{clips.shape}"
            )
        t = clips.shape[1]
        if self.clip_len is not None and t != self.clip_len:
            raise ValueError(f"clip has {t} frames, the classifier takes T={self.clip_len}")
        if t < self.spec.min_clip_len:
            raise ValueError(f"clip has {t} frames, the model needs >= {self.spec.min_clip_len}")
        return clips

    def predict_clips(self, clips: np.ndarray) -> np.ndarray:
        """``(B, classes)`` probabilities for ``(B, T, C, H, W)`` preprocessed clips."""
        clips = self._check_clips(clips)
        if len(clips) == 0:
            return np.zeros((0, self.num_classes or len(self.spec.labels)), np.float32)
        return self._scores(np.ascontiguousarray(clips.transpose(0, 2, 1, 3, 4)))  # B,C,T,H,W

    def classify_clip(self, frames: np.ndarray) -> Classifications:
        """Classify one preprocessed ``(T, C, H, W)`` clip (B = 1)."""
        frames = np.asarray(frames, np.float32)
        if frames.ndim != 4:
            raise ValueError(f"expected one clip (T, C, H, W), got shape {frames.shape}")
        return self.select(self.predict_clips(frames[None]))

    def classify_clips(self, clips: np.ndarray) -> Classifications:
        """Classify a batch ``(B, T, C, H, W)`` of clips (e.g. one per track); row i is clip i.

        One inference call where the model's batch axis is dynamic (in chunks of
        ``max_batch`` when set), else one call per clip.
        """
        clips = np.asarray(clips, np.float32)
        if clips.ndim == 5 and len(clips) == 0:
            classes = self.num_classes or len(self.spec.labels) or self.top_k
            return Classifications.empty(0, min(self.top_k, classes), self.spec.multi_label)
        return self.select(self.predict_clips(clips))

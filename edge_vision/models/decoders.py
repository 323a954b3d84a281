"""Turn raw detector outputs into boxes: GFL (NanoDet) and CenterNet decoding, NMS, rescaling.

All boxes here are ``(x1, y1, x2, y2)`` float32 in pixels of the coordinate frame named by the
function (model input or original image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# The 80 COCO classes in the contiguous order that 80-way COCO detectors index (the order of
# Darknet's coco.names / OpenCV's object_detection_classes_yolov3.txt, with COCO's own names).
COCO80_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RawBoxes:
    """Decoded candidates before NMS, in model-input pixels."""

    xyxy: np.ndarray  # (N, 4) float32
    scores: np.ndarray  # (N,) float32
    class_ids: np.ndarray  # (N,) int32

    def take(self, rows: np.ndarray) -> RawBoxes:
        return RawBoxes(self.xyxy[rows], self.scores[rows], self.class_ids[rows])

    @staticmethod
    def empty() -> RawBoxes:
        return RawBoxes(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
        )


# --------------------------------------------------------------------------------------------
# NMS
# --------------------------------------------------------------------------------------------


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: np.ndarray | None = None,
    max_detections: int | None = None,
) -> np.ndarray:
    """Greedy NMS; returns kept indices, best score first.

    With ``class_ids`` boxes only suppress boxes of their own class: each class is shifted to
    its own disjoint region of the plane, so that one pass handles all classes.
    """
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    n = len(boxes)
    if n == 0:
        return np.zeros(0, np.intp)
    if class_ids is not None:
        span = float(boxes.max() - boxes.min()) + 1.0
        boxes = boxes + (np.asarray(class_ids, np.float64) * span)[:, None]
    order = np.argsort(-np.asarray(scores), kind="stable")
    boxes = boxes[order]
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    suppressed = np.zeros(n, np.bool_)
    keep: list[int] = []
    limit = n if max_detections is None else max_detections
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if len(keep) >= limit:
            break
        rest = boxes[i + 1 :]
        lt = np.maximum(boxes[i, :2], rest[:, :2])
        rb = np.minimum(boxes[i, 2:], rest[:, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        union = areas[i] + areas[i + 1 :] - inter
        suppressed[i + 1 :] |= inter > iou_threshold * np.maximum(union, 1e-12)
    return order[np.asarray(keep, np.intp)]


# --------------------------------------------------------------------------------------------
# NanoDet (GFL head)
# --------------------------------------------------------------------------------------------


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def find_gfl_outputs(
    outputs: Mapping[str, np.ndarray],
    input_hw: tuple[int, int],
    strides: Sequence[int],
    num_classes: int,
    reg_max: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pair (scores, box distributions) per stride, identified by shape rather than name.

    Each level has ``ceil(H/s) * ceil(W/s)`` rows; the score tensor has ``num_classes`` columns,
    the distribution tensor ``4 * (reg_max + 1)``.
    """
    tensors = [np.asarray(v).reshape(-1, np.asarray(v).shape[-1]) for v in outputs.values()]
    levels = []
    for stride in strides:
        rows = -(-input_hw[0] // stride) * -(-input_hw[1] // stride)
        by_width = {t.shape[1]: t for t in tensors if t.shape[0] == rows}
        scores, dist = by_width.get(num_classes), by_width.get(4 * (reg_max + 1))
        if scores is None or dist is None:
            shapes = [t.shape for t in tensors]
            raise ValueError(f"no GFL outputs for stride {stride} ({rows} rows) among {shapes}")
        levels.append((scores, dist))
    return levels


def decode_gfl(
    levels: Sequence[tuple[np.ndarray, np.ndarray]],
    input_hw: tuple[int, int],
    strides: Sequence[int],
    reg_max: int,
    score_threshold: float,
    center_offset: float = 0.5,
    max_candidates: int = 1000,
) -> RawBoxes:
    """Decode GFL outputs (NanoDet): scores are already sigmoid-activated per class.

    Each anchor point sits at ``(col + center_offset, row + center_offset) * stride``; each box
    side is the expectation of a softmax over ``reg_max + 1`` bins (left, top, right, bottom, in
    that order), times the stride. Every (anchor, class) pair above the threshold is a candidate.
    """
    bins = np.arange(reg_max + 1, dtype=np.float32)
    parts: list[RawBoxes] = []
    for (scores, dist), stride in zip(levels, strides, strict=True):
        anchor, cls = np.nonzero(scores > score_threshold)
        if anchor.size == 0:
            continue
        grid_w = -(-input_hw[1] // stride)
        row, col = np.divmod(anchor, grid_w)
        cx = (col + center_offset) * stride
        cy = (row + center_offset) * stride
        sides = (
            _softmax(dist[anchor].reshape(-1, 4, reg_max + 1).astype(np.float32)) @ bins * stride
        )
        xyxy = np.stack(
            [cx - sides[:, 0], cy - sides[:, 1], cx + sides[:, 2], cy + sides[:, 3]], axis=1
        )
        parts.append(
            RawBoxes(
                xyxy.astype(np.float32),
                scores[anchor, cls].astype(np.float32),
                cls.astype(np.int32),
            )
        )
    if not parts:
        return RawBoxes.empty()
    out = RawBoxes(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("xyxy", "scores", "class_ids"))
    )
    if len(out.scores) > max_candidates:
        # Bound the quadratic NMS when a low threshold lets through thousands of candidates.
        out = out.take(np.argsort(-out.scores, kind="stable")[:max_candidates])
    return out


# --------------------------------------------------------------------------------------------
# CenterNet (decoded in-graph)
# --------------------------------------------------------------------------------------------


def decode_centernet(detections: np.ndarray, score_threshold: float) -> RawBoxes:
    """Rows of the graph's ``detections`` output: x1, y1, x2, y2 (input pixels), score, class.

    The graph already picked the top-100 heat-map peaks (3x3 max-pool suppression) and decoded
    their boxes; the class column is a float holding the 0-based COCO-80 index.
    """
    rows = np.asarray(detections, np.float32).reshape(-1, 6)
    rows = rows[rows[:, 4] > score_threshold]
    return RawBoxes(rows[:, :4].copy(), rows[:, 4].copy(), np.rint(rows[:, 5]).astype(np.int32))


# --------------------------------------------------------------------------------------------
# Back to the original image
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResizeTransform:
    """How an image was mapped onto the model input: ``input = image * scale + pad``."""

    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0
    image_w: int = 0
    image_h: int = 0

    def to_image(self, xyxy: np.ndarray) -> np.ndarray:
        """Model-input boxes to original-image pixels, clipped to the image."""
        out = np.asarray(xyxy, np.float32).reshape(-1, 4).copy()
        out[:, 0::2] = (out[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (out[:, 1::2] - self.pad_y) / self.scale_y
        if self.image_w and self.image_h:
            np.clip(out[:, 0::2], 0, self.image_w, out=out[:, 0::2])
            np.clip(out[:, 1::2], 0, self.image_h, out=out[:, 1::2])
        return out


# --------------------------------------------------------------------------------------------
# YOLO (YOLOv8-style (1, N, 4+C) / (1, 4+C, N); YOLOv5-style (1, N, 5+C) with objectness)
# --------------------------------------------------------------------------------------------


def yolo_layout(shape: Sequence[int], num_classes: int) -> tuple[bool, bool]:
    """``(transposed, has_objectness)`` of a YOLO output shape; ValueError says what fits.

    ``transposed``: features are rows ((4+C, N), Ultralytics' YOLOv8 export); otherwise each of
    the N rows is one candidate. ``has_objectness``: YOLOv5's extra column after the box.
    """
    dims = tuple(int(d) for d in shape)
    if len(dims) == 3 and dims[0] == 1:
        dims = dims[1:]
    v8, v5 = 4 + num_classes, 5 + num_classes
    if len(dims) == 2:
        rows, cols = dims
        # Check the candidate axis last: N is normally much larger than 4 + C.
        for transposed, objectness, width in (
            (False, False, cols == v8),
            (True, False, rows == v8),
            (False, True, cols == v5),
            (True, True, rows == v5),
        ):
            if width:
                return transposed, objectness
    raise ValueError(
        f"shape {list(shape)} does not fit {num_classes} labels: expected (1, N, {v8}) or "
        f"(1, {v8}, N) (YOLOv8: cx, cy, w, h + one score per label) or (1, N, {v5}) "
        "(YOLOv5: cx, cy, w, h, objectness + one score per label)"
    )


def decode_yolo(
    output: np.ndarray,
    num_classes: int,
    score_threshold: float,
    max_candidates: int = 1000,
) -> RawBoxes:
    """Boxes ``cx, cy, w, h`` in model-input pixels; each candidate keeps its best class."""
    out = np.asarray(output, np.float32)
    transposed, objectness = yolo_layout(out.shape, num_classes)
    rows = out.reshape(out.shape[-2:])
    if transposed:
        rows = rows.T
    scores = rows[:, 5:] * rows[:, 4:5] if objectness else rows[:, 4:]
    cls = scores.argmax(axis=1)
    conf = scores[np.arange(len(scores)), cls]
    keep = np.flatnonzero(conf > score_threshold)
    if keep.size > max_candidates:
        keep = keep[np.argsort(-conf[keep], kind="stable")[:max_candidates]]
    box = rows[keep, :4]
    half = box[:, 2:] / 2
    xyxy = np.concatenate([box[:, :2] - half, box[:, :2] + half], axis=1)
    return RawBoxes(
        xyxy.astype(np.float32), conf[keep].astype(np.float32), cls[keep].astype(np.int32)
    )


# --------------------------------------------------------------------------------------------
# SSD-style: separate boxes (1, N, 4) and scores (1, N, C) or (1, N, C+1) outputs
# --------------------------------------------------------------------------------------------


def find_ssd_outputs(
    outputs: Mapping[str, np.ndarray], num_classes: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(boxes (N, 4), scores (N, C or C+1), background_first)`` identified by shape.

    ``background_first``: the scores have one column more than there are labels, the first
    being the background class (jetson-inference's train_ssd.py export, torchvision SSD).
    """
    shapes = {name: np.asarray(v).shape for name, v in outputs.items()}
    flat = {
        name: np.asarray(v).reshape(-1, np.asarray(v).shape[-1])
        for name, v in outputs.items()
        if np.asarray(v).ndim in (2, 3) and (np.asarray(v).ndim == 2 or v.shape[0] == 1)
    }
    listing = ", ".join(f"{n} {list(s)}" for n, s in shapes.items())
    box_names = [n for n, t in flat.items() if t.shape[1] == 4]
    for box_name in box_names:
        n = flat[box_name].shape[0]
        for name, t in flat.items():
            if (
                name != box_name
                and t.shape[0] == n
                and t.shape[1] in (num_classes, num_classes + 1)
            ):
                return flat[box_name], t, t.shape[1] == num_classes + 1
    raise ValueError(
        f"expected a boxes output (1, N, 4) and a scores output (1, N, {num_classes}) or "
        f"(1, N, {num_classes + 1}) (background class first); the outputs are: {listing}"
    )


def decode_ssd(
    boxes: np.ndarray,
    scores: np.ndarray,
    score_threshold: float,
    input_hw: tuple[int, int],
    box_format: str = "xyxy",
    normalized: bool = True,
    background_first: bool = False,
    max_candidates: int = 1000,
) -> RawBoxes:
    """Boxes ``xyxy`` or ``yxyx`` (TF), normalised 0..1 or in input pixels; best class each."""
    if box_format not in ("xyxy", "yxyx"):
        raise ValueError(f"SSD box format {box_format!r} is not xyxy or yxyx")
    s = np.asarray(scores, np.float32)
    if background_first:
        s = s[:, 1:]
    cls = s.argmax(axis=1)
    conf = s[np.arange(len(s)), cls]
    keep = np.flatnonzero(conf > score_threshold)
    if keep.size > max_candidates:
        keep = keep[np.argsort(-conf[keep], kind="stable")[:max_candidates]]
    b = np.asarray(boxes, np.float32)[keep]
    if box_format == "yxyx":
        b = b[:, [1, 0, 3, 2]]
    if normalized:
        h, w = input_hw
        b = b * np.array([w, h, w, h], np.float32)
    return RawBoxes(b.astype(np.float32), conf[keep].astype(np.float32), cls[keep].astype(np.int32))

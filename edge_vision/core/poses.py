"""The pose result type: named 2-D keypoints per instance (a person's body or one hand).

Pure numpy; the keypoint layouts below are those of MediaPipe's BlazePose (33 body keypoints)
and hand landmark model (21 keypoints), which :mod:`edge_vision.models.pose` fills in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np

from edge_vision.core.detections import Detections, row_indices

PoseKind = Literal["body", "hand"]

BODY_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye_inner",
    "left_eye",
    "left_eye_outer",
    "right_eye_inner",
    "right_eye",
    "right_eye_outer",
    "left_ear",
    "right_ear",
    "mouth_left",
    "mouth_right",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_pinky",
    "right_pinky",
    "left_index",
    "right_index",
    "left_thumb",
    "right_thumb",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_heel",
    "right_heel",
    "left_foot_index",
    "right_foot_index",
)
"""BlazePose keypoints; left/right are the person's own sides, not the image's."""

_FINGERS = ("thumb", "index_finger", "middle_finger", "ring_finger", "pinky")
_THUMB_JOINTS = ("cmc", "mcp", "ip", "tip")
_FINGER_JOINTS = ("mcp", "pip", "dip", "tip")

HAND_KEYPOINT_NAMES: tuple[str, ...] = (
    "wrist",
    *(f"thumb_{j}" for j in _THUMB_JOINTS),
    *(f"{f}_{j}" for f in _FINGERS[1:] for j in _FINGER_JOINTS),
)
"""MediaPipe hand landmarks: the wrist, then four joints per finger from palm to tip."""


def _pairs(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> tuple[tuple[int, int], ...]:
    index = {n: i for i, n in enumerate(names)}
    return tuple((index[a], index[b]) for a, b in edges)


def _body_edges() -> list[tuple[str, str]]:
    edges = [
        ("nose", "left_eye_inner"),
        ("left_eye_inner", "left_eye"),
        ("left_eye", "left_eye_outer"),
        ("left_eye_outer", "left_ear"),
        ("nose", "right_eye_inner"),
        ("right_eye_inner", "right_eye"),
        ("right_eye", "right_eye_outer"),
        ("right_eye_outer", "right_ear"),
        ("mouth_left", "mouth_right"),
        ("left_shoulder", "right_shoulder"),
        ("left_hip", "right_hip"),
    ]
    for s in ("left", "right"):
        edges += [
            (f"{s}_shoulder", f"{s}_elbow"),
            (f"{s}_elbow", f"{s}_wrist"),
            (f"{s}_wrist", f"{s}_pinky"),
            (f"{s}_wrist", f"{s}_index"),
            (f"{s}_wrist", f"{s}_thumb"),
            (f"{s}_pinky", f"{s}_index"),
            (f"{s}_shoulder", f"{s}_hip"),
            (f"{s}_hip", f"{s}_knee"),
            (f"{s}_knee", f"{s}_ankle"),
            (f"{s}_ankle", f"{s}_heel"),
            (f"{s}_heel", f"{s}_foot_index"),
            (f"{s}_ankle", f"{s}_foot_index"),
        ]
    return edges


def _hand_edges() -> list[tuple[str, str]]:
    # Palm outline: wrist to the thumb and index/pinky bases, and across the finger bases.
    edges = [
        ("wrist", "thumb_cmc"),
        ("wrist", "index_finger_mcp"),
        ("wrist", "pinky_mcp"),
        ("index_finger_mcp", "middle_finger_mcp"),
        ("middle_finger_mcp", "ring_finger_mcp"),
        ("ring_finger_mcp", "pinky_mcp"),
    ]
    for finger in _FINGERS:
        joints = _THUMB_JOINTS if finger == "thumb" else _FINGER_JOINTS
        edges += [(f"{finger}_{a}", f"{finger}_{b}") for a, b in pairwise(joints)]
    return edges


BODY_SKELETON: tuple[tuple[int, int], ...] = _pairs(BODY_KEYPOINT_NAMES, _body_edges())
HAND_SKELETON: tuple[tuple[int, int], ...] = _pairs(HAND_KEYPOINT_NAMES, _hand_edges())

LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[tuple[int, int], ...]]] = {
    "body": (BODY_KEYPOINT_NAMES, BODY_SKELETON),
    "hand": (HAND_KEYPOINT_NAMES, HAND_SKELETON),
}
"""Default (keypoint_names, skeleton) per kind."""


@dataclass(eq=False, slots=True)
class Poses:
    """P pose instances of one kind, K named keypoints each, as parallel numpy arrays.

    ``keypoints`` (P, K, 2) float32: (x, y) in pixels of the image given to the estimator.
    MediaPipe extrapolates occluded or out-of-frame keypoints, so points may lie outside the
    image; ``scores`` (P, K) float32 in 0..1 tells how much to trust each one.
    ``instance_scores`` (P,) float32: one confidence per instance.
    ``labels``: one name per instance, e.g. "person", "left_hand", "right_hand".
    ``keypoint_names``/``skeleton`` default to the layout of ``kind``; ``skeleton`` holds
    (i, j) index pairs of keypoints to join when drawing.
    Indexing with a boolean mask, an index array, a slice or an int returns a new ``Poses``.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    instance_scores: np.ndarray
    kind: PoseKind
    labels: list[str]
    keypoint_names: tuple[str, ...] = ()
    skeleton: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        # Normalise dtypes/shapes once here so that consumers never have to.
        if self.kind not in LAYOUTS:
            raise ValueError(f"kind must be 'body' or 'hand', not {self.kind!r}")
        default_names, default_skeleton = LAYOUTS[self.kind]
        self.keypoint_names = tuple(self.keypoint_names) or default_names
        if not self.skeleton:
            self.skeleton = default_skeleton if self.keypoint_names == default_names else ()
        self.skeleton = tuple((int(a), int(b)) for a, b in self.skeleton)
        k = len(self.keypoint_names)
        self.keypoints = np.asarray(self.keypoints, np.float32).reshape(-1, k, 2)
        p = len(self.keypoints)
        self.scores = np.asarray(self.scores, np.float32).reshape(p, k)
        self.instance_scores = np.asarray(self.instance_scores, np.float32).reshape(p)
        self.labels = list(self.labels)
        if len(self.labels) != p:
            raise ValueError(f"{len(self.labels)} labels for {p} instances")
        if any(not (0 <= a < k and 0 <= b < k) for a, b in self.skeleton):
            raise ValueError(f"skeleton refers to keypoints outside 0..{k - 1}")

    @classmethod
    def empty(cls, kind: PoseKind) -> Poses:
        """No instances, with the default layout of ``kind``."""
        k = len(LAYOUTS[kind][0]) if kind in LAYOUTS else 0
        return cls(np.zeros((0, k, 2)), np.zeros((0, k)), np.zeros(0), kind, [])

    def __len__(self) -> int:
        return len(self.keypoints)

    def __getitem__(self, index: np.ndarray | Sequence[int] | slice | int) -> Poses:
        rows = row_indices(index, len(self), "instances")
        return Poses(
            self.keypoints[rows],
            self.scores[rows],
            self.instance_scores[rows],
            self.kind,
            [self.labels[i] for i in rows],
            self.keypoint_names,
            self.skeleton,
        )

    def index(self, name: str) -> int:
        """Position of keypoint ``name`` along the K axis."""
        try:
            return self.keypoint_names.index(name)
        except ValueError:
            raise KeyError(f"no keypoint {name!r} in this {self.kind} layout") from None

    def keypoint(self, name: str) -> np.ndarray:
        """(P, 2) positions of keypoint ``name`` in every instance."""
        return self.keypoints[:, self.index(name)]

    def boxes(
        self, min_score: float = 0.0, image_size: tuple[int, int] | None = None
    ) -> np.ndarray:
        """(P, 4) float32 xyxy boxes enclosing each instance's keypoints.

        Only keypoints scoring at least ``min_score`` count; an instance with none of them gets
        the box of all its keypoints. ``image_size`` (width, height) clips the boxes to the
        image, since extrapolated keypoints can lie outside it.
        """
        out = np.zeros((len(self), 4), np.float32)
        for i, (pts, sc) in enumerate(zip(self.keypoints, self.scores, strict=True)):
            keep = sc >= min_score
            use = pts[keep] if keep.any() else pts
            out[i, :2] = use.min(axis=0)
            out[i, 2:] = use.max(axis=0)
        if image_size is not None:
            w, h = image_size
            np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
            np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
        return out

    def to_detections(
        self,
        min_score: float = 0.0,
        image_size: tuple[int, int] | None = None,
        class_ids: Sequence[int] | None = None,
    ) -> Detections:
        """The instances as boxes (see :meth:`boxes`) with their scores and labels.

        ``class_ids`` default to 0 for every instance; lets trackers and the detection
        overlay handle poses like any other detection.
        """
        ids = np.zeros(len(self), np.int32) if class_ids is None else class_ids
        return Detections(
            self.boxes(min_score, image_size), self.instance_scores, ids, labels=self.labels
        )

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{self.labels[i]}:{self.instance_scores[i]:.2f}" for i in range(min(len(self), 5))
        )
        more = ", ..." if len(self) > 5 else ""
        k = len(self.keypoint_names)
        return f"Poses(kind={self.kind}, n={len(self)}, k={k}: {shown}{more})"

"""Conversions between the core result types and ROS messages (vision_msgs, edge_vision).

Images live in ``image_conversion``; everything else that crosses the ROS boundary goes through
here, so nodes stay thin and the mapping is tested in one place.

Conventions (kept consistent with the LabelInfo a node publishes):
- ``ObjectHypothesis.class_id`` is the decimal class index (``"17"``); the node's LabelInfo
  (transient-local, so late subscribers get it) maps it to the class name, see
  :func:`labels_from_label_info`.
- ``Detection2D.id`` carries the track id when a tracker assigned one, else it is empty.
- Boxes are axis-aligned: ``BoundingBox2D.center`` plus ``size_x``/``size_y`` in pixels,
  ``theta`` 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from std_msgs.msg import Header
from vision_msgs.msg import (
    Classification,
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
    VisionClass,
)

from edge_vision.core.detections import Detections


def detections_to_msg(detections: Detections, header: Header) -> Detection2DArray:
    """Detection2DArray with ``header`` (copy the source image's header to keep its stamp)."""
    out = Detection2DArray(header=header)
    xyxy = detections.xyxy.astype(np.float64)
    centers = (xyxy[:, :2] + xyxy[:, 2:]) / 2.0
    sizes = xyxy[:, 2:] - xyxy[:, :2]
    track_ids = detections.track_ids
    items = []
    for i in range(len(detections)):
        det = Detection2D(header=header)
        det.bbox.center.position.x = float(centers[i, 0])
        det.bbox.center.position.y = float(centers[i, 1])
        det.bbox.size_x = float(sizes[i, 0])
        det.bbox.size_y = float(sizes[i, 1])
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(int(detections.class_ids[i]))
        hyp.hypothesis.score = float(detections.scores[i])
        det.results = [hyp]
        if track_ids is not None:
            det.id = str(int(track_ids[i]))
        items.append(det)
    out.detections = items
    return out


def msg_to_detections(msg: Detection2DArray, labels: Sequence[str] | None = None) -> Detections:
    """Detections from a Detection2DArray (the best hypothesis of each detection).

    Non-numeric class ids (other publishers may use names) map to -1 and keep their text as the
    label; ``labels`` (from LabelInfo) names numeric ids.
    """
    n = len(msg.detections)
    xyxy = np.zeros((n, 4), np.float32)
    scores = np.zeros(n, np.float32)
    class_ids = np.full(n, -1, np.int32)
    names: list[str] = []
    track_ids = np.full(n, -1, np.int64)
    has_tracks = False
    for i, det in enumerate(msg.detections):
        cx, cy = det.bbox.center.position.x, det.bbox.center.position.y
        w, h = det.bbox.size_x, det.bbox.size_y
        xyxy[i] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        name = ""
        if det.results:
            best = max(det.results, key=lambda r: r.hypothesis.score)
            scores[i] = best.hypothesis.score
            cid = best.hypothesis.class_id
            if cid.lstrip("-").isdigit():
                class_ids[i] = int(cid)
                if labels is not None and 0 <= class_ids[i] < len(labels):
                    name = labels[class_ids[i]]
            else:
                name = cid
        names.append(name or str(int(class_ids[i])))
        if det.id.lstrip("-").isdigit():
            track_ids[i] = int(det.id)
            has_tracks = True
    return Detections(xyxy, scores, class_ids, track_ids if has_tracks else None, names)


def label_info_msg(labels: Sequence[str], header: Header, threshold: float = 0.0) -> LabelInfo:
    return LabelInfo(
        header=header,
        class_map=[VisionClass(class_id=i, class_name=name) for i, name in enumerate(labels)],
        threshold=float(threshold),
    )


def labels_from_label_info(msg: LabelInfo) -> list[str]:
    """Class names indexed by class id (gaps filled with the id as text)."""
    if not msg.class_map:
        return []
    size = max(c.class_id for c in msg.class_map) + 1
    names = [str(i) for i in range(size)]
    for c in msg.class_map:
        names[c.class_id] = c.class_name
    return names


def classification_msg(
    class_ids: Sequence[int], scores: Sequence[float], header: Header
) -> Classification:
    return Classification(
        header=header,
        results=[
            ObjectHypothesis(class_id=str(int(c)), score=float(s))
            for c, s in zip(class_ids, scores, strict=True)
        ],
    )

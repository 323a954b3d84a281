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
- Secondary classification (:func:`classified_detections_msg`): a Detection2D keeps the input
  detection's header, bbox and id; its ``results`` are the classifier's hypotheses, in the
  classifier's label space.
- Poses (edge_vision/msg/PoseKeypointsArray): one ``PoseKeypoints`` per instance, carrying its
  keypoint names so that a subscriber needs no layout table; the skeleton is not sent (it
  follows from the names for the body and hand layouts).
- Events (edge_vision/msg/Event): the header stamp is the event's latest frame stamp (``end``);
  the bbox is stored as xyxy in the core and as centre + size in the message; attributes are
  ``diagnostic_msgs/KeyValue`` pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from std_msgs.msg import Header
from vision_msgs.msg import (
    Classification,
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesis,
    ObjectHypothesisWithPose,
    Point2D,
    VisionClass,
)

from edge_vision.core.classifications import Classifications
from edge_vision.core.clips import Clip
from edge_vision.core.detections import Detections
from edge_vision.core.poses import PoseKind, Poses
from edge_vision.events.model import Event, EventState
from edge_vision.ros.image_conversion import ns_to_stamp, stamp_to_ns

if TYPE_CHECKING:
    from edge_vision.msg import ActionWindow, PoseKeypointsArray
    from edge_vision.msg import Event as EventMsg


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


def poses_to_msg(
    poses: Poses,
    header: Header,
    min_score: float = 0.0,
    image_size: tuple[int, int] | None = None,
) -> PoseKeypointsArray:
    """PoseKeypointsArray with ``header`` (copy the source image's header to keep its stamp).

    Every keypoint is sent with its score; ``min_score`` and ``image_size`` (width, height) only
    shape each instance's ``bbox`` (see :meth:`Poses.boxes`).
    """
    # Imported on use, like edge_vision.srv in model_host: plain conversions need no build.
    from edge_vision.msg import PoseKeypoints, PoseKeypointsArray

    names = list(poses.keypoint_names)
    boxes = poses.boxes(min_score, image_size).astype(np.float64)
    keypoints = poses.keypoints.astype(np.float64).tolist()
    instances = []
    for i in range(len(poses)):
        inst = PoseKeypoints(
            kind=poses.kind,
            label=poses.labels[i],
            score=float(poses.instance_scores[i]),
            names=names,
            points=[Point2D(x=x, y=y) for x, y in keypoints[i]],
            scores=poses.scores[i].tolist(),
        )
        x1, y1, x2, y2 = boxes[i].tolist()
        inst.bbox.center.position.x = (x1 + x2) / 2.0
        inst.bbox.center.position.y = (y1 + y2) / 2.0
        inst.bbox.size_x = x2 - x1
        inst.bbox.size_y = y2 - y1
        instances.append(inst)
    return PoseKeypointsArray(header=header, instances=instances)


def msg_to_poses(msg: PoseKeypointsArray, kind: PoseKind = "body") -> Poses:
    """Poses from a PoseKeypointsArray; ``kind`` is only used when the message is empty.

    All instances must share one kind and keypoint layout (what one estimator publishes);
    ValueError otherwise.
    """
    if not msg.instances:
        return Poses.empty(kind)
    first = msg.instances[0]
    names = tuple(first.names)
    for inst in msg.instances:
        if inst.kind != first.kind or tuple(inst.names) != names:
            raise ValueError(
                f"mixed pose layouts in one message: {first.kind!r} and {inst.kind!r} instances"
            )
        if len(inst.points) != len(names) or len(inst.scores) != len(names):
            raise ValueError(
                f"{inst.label!r}: {len(inst.points)} points and {len(inst.scores)} scores "
                f"for {len(names)} keypoint names"
            )
    keypoints = [[(p.x, p.y) for p in inst.points] for inst in msg.instances]
    return Poses(
        np.asarray(keypoints, np.float32).reshape(len(msg.instances), len(names), 2),
        np.asarray([list(inst.scores) for inst in msg.instances], np.float32),
        np.asarray([inst.score for inst in msg.instances], np.float32),
        first.kind,
        [inst.label for inst in msg.instances],
        names,
    )


def classified_detections_msg(
    source: Detection2DArray, indices: Sequence[int], classifications: Classifications
) -> Detection2DArray:
    """Secondary classification of ``source.detections[indices[i]]`` by row ``i``.

    The result has ``source``'s header and, per classified detection, its header, bbox and id;
    ``results`` are the classifier's kept top-K hypotheses (class ids in the classifier's label
    space, named by the classifier's LabelInfo), best first, with identity poses. The detector's
    own hypotheses are not repeated: they live in another label space.
    """
    if len(indices) != len(classifications):
        raise ValueError(f"{len(indices)} detections for {len(classifications)} classifications")
    out = Detection2DArray(header=source.header)
    items = []
    for row, index in enumerate(indices):
        det = source.detections[index]
        results = []
        for class_id, score, _ in classifications.row(row):
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id = str(class_id)
            hyp.hypothesis.score = score
            results.append(hyp)
        items.append(Detection2D(header=det.header, results=results, bbox=det.bbox, id=det.id))
    out.detections = items
    return out


def action_window_msg(
    clip: Clip,
    class_ids: Sequence[int],
    scores: Sequence[float],
    frame_id: str,
    box: np.ndarray | None = None,
) -> ActionWindow:
    """edge_vision/msg/ActionWindow for a classified clip (``box``: xyxy, per-track mode)."""
    from edge_vision.msg import ActionWindow

    msg = ActionWindow()
    msg.header.stamp = ns_to_stamp(clip.last_stamp_ns)
    msg.header.frame_id = frame_id
    msg.begin = ns_to_stamp(clip.first_stamp_ns)
    msg.end = ns_to_stamp(clip.last_stamp_ns)
    msg.frames = int(clip.frames.shape[0])
    msg.window_index = int(clip.index)
    msg.track_id = "" if clip.key is None else str(clip.key)
    if box is not None:
        x1, y1, x2, y2 = (float(v) for v in box)
        msg.bbox.center.position.x = (x1 + x2) / 2.0
        msg.bbox.center.position.y = (y1 + y2) / 2.0
        msg.bbox.size_x = x2 - x1
        msg.bbox.size_y = y2 - y1
    msg.results = [
        ObjectHypothesis(class_id=str(int(c)), score=float(s))
        for c, s in zip(class_ids, scores, strict=True)
    ]
    return msg


def event_to_msg(event: Event, frame_id: str = "") -> EventMsg:
    """edge_vision/msg/Event for a core :class:`Event` (header stamp = the event's end)."""
    from diagnostic_msgs.msg import KeyValue

    from edge_vision.msg import Event as EventMsg

    msg = EventMsg()
    msg.header.stamp = ns_to_stamp(event.end_ns)
    msg.header.frame_id = frame_id
    msg.id = event.id
    msg.stream = event.stream
    msg.model = event.model
    msg.label = event.label
    msg.class_id = event.class_id
    msg.score = float(event.score)
    msg.max_score = float(event.max_score)
    msg.begin = ns_to_stamp(event.begin_ns)
    msg.end = ns_to_stamp(event.end_ns)
    msg.frames = int(event.frames)
    msg.track_id = event.track_id
    x1, y1, x2, y2 = (float(v) for v in event.bbox)
    msg.bbox.center.position.x = (x1 + x2) / 2
    msg.bbox.center.position.y = (y1 + y2) / 2
    msg.bbox.size_x = x2 - x1
    msg.bbox.size_y = y2 - y1
    msg.state = int(event.state)
    msg.attributes = [KeyValue(key=k, value=v) for k, v in event.attributes.items()]
    return msg


def msg_to_event(msg: EventMsg) -> Event:
    """Inverse of :func:`event_to_msg` (float32 scores come back rounded to float32)."""
    cx, cy = msg.bbox.center.position.x, msg.bbox.center.position.y
    hw, hh = msg.bbox.size_x / 2, msg.bbox.size_y / 2
    return Event(
        id=msg.id,
        stream=msg.stream,
        model=msg.model,
        label=msg.label,
        class_id=msg.class_id,
        score=float(msg.score),
        max_score=float(msg.max_score),
        begin_ns=stamp_to_ns(msg.begin),
        end_ns=stamp_to_ns(msg.end),
        frames=int(msg.frames),
        track_id=msg.track_id,
        bbox=(cx - hw, cy - hh, cx + hw, cy + hh),
        state=EventState(int(msg.state)),
        attributes={kv.key: kv.value for kv in msg.attributes},
    )

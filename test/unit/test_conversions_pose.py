"""Poses <-> edge_vision/msg/PoseKeypointsArray, through real serialization."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from edge_vision.core.poses import BODY_KEYPOINT_NAMES, BODY_SKELETON, HAND_SKELETON, Poses
from edge_vision.msg import PoseKeypointsArray
from edge_vision.ros.conversions import msg_to_poses, poses_to_msg

HEADER = Header(stamp=Time(sec=1_700_000_000, nanosec=123_456_789), frame_id="cam0")


def _wire(msg: PoseKeypointsArray) -> PoseKeypointsArray:
    # Through the CDR bytes a subscriber would get, so field types are checked for real.
    return deserialize_message(serialize_message(msg), PoseKeypointsArray)


def _hands() -> Poses:
    rng = np.random.default_rng(0)
    keypoints = rng.uniform(0, 640, (2, 21, 2)).astype(np.float32)
    scores = np.repeat(np.array([[0.9], [0.75]], np.float32), 21, axis=1)
    return Poses(keypoints, scores, [0.9, 0.75], "hand", ["left_hand", "right_hand"])


def test_body_round_trip_keeps_everything() -> None:
    rng = np.random.default_rng(1)
    keypoints = rng.uniform(-20, 500, (1, 33, 2)).astype(np.float32)  # some outside the image
    scores = rng.uniform(0, 1, (1, 33)).astype(np.float32)
    poses = Poses(keypoints, scores, [0.8], "body", ["person"])

    msg = _wire(poses_to_msg(poses, HEADER))
    assert msg.header == HEADER
    (inst,) = msg.instances
    assert inst.kind == "body" and inst.label == "person"
    assert list(inst.names) == list(BODY_KEYPOINT_NAMES)

    back = msg_to_poses(msg)
    assert back.kind == "body" and back.labels == ["person"]
    assert back.keypoint_names == BODY_KEYPOINT_NAMES and back.skeleton == BODY_SKELETON
    np.testing.assert_allclose(back.keypoints, poses.keypoints, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(back.scores, poses.scores)
    np.testing.assert_array_equal(back.instance_scores, poses.instance_scores)


def test_hands_round_trip_and_bbox_follows_min_score_and_image_size() -> None:
    poses = _hands()
    msg = _wire(poses_to_msg(poses, HEADER, min_score=0.8, image_size=(600, 400)))
    back = msg_to_poses(msg)
    assert back.kind == "hand" and back.labels == ["left_hand", "right_hand"]
    assert back.skeleton == HAND_SKELETON
    np.testing.assert_allclose(back.keypoints, poses.keypoints, rtol=0, atol=1e-4)

    expected = poses.boxes(0.8, (600, 400))
    for inst, (x1, y1, x2, y2) in zip(msg.instances, expected, strict=True):
        box = inst.bbox
        assert box.center.position.x == pytest.approx((x1 + x2) / 2, abs=1e-3)
        assert box.center.position.y == pytest.approx((y1 + y2) / 2, abs=1e-3)
        assert box.size_x == pytest.approx(x2 - x1, abs=1e-3)
        assert box.size_y == pytest.approx(y2 - y1, abs=1e-3)
        assert box.center.theta == 0.0
    assert x2 <= 600 and y2 <= 400  # clipped to the image


def test_empty_message_and_mixed_layouts() -> None:
    msg = _wire(poses_to_msg(Poses.empty("hand"), HEADER))
    assert msg.header == HEADER and not msg.instances
    empty = msg_to_poses(msg, kind="hand")
    assert len(empty) == 0 and empty.kind == "hand" and empty.keypoints.shape == (0, 21, 2)

    mixed = poses_to_msg(_hands(), HEADER)
    body = poses_to_msg(Poses(np.zeros((1, 33, 2)), np.ones((1, 33)), [1.0], "body", ["p"]), HEADER)
    mixed.instances = [*mixed.instances, *body.instances]
    with pytest.raises(ValueError, match="mixed pose layouts"):
        msg_to_poses(mixed)

"""video_source -> pose over real DDS, with MediaPipe's own models on real images.

Images and the regions checked are those of the pose unit test (test/unit/test_pose.py, loaded
from its file so the annotation lives in one place): messi5.jpg for the body, the first frame
of cup.mp4 for a hand.
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
import time
from pathlib import Path
from types import ModuleType

import cv2
import pytest
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from edge_vision.msg import PoseKeypointsArray
from edge_vision.ros.conversions import msg_to_poses
from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns
from edge_vision.srv import LoadModel
from edge_vision.testing.media import require


def _pose_annotations() -> ModuleType:
    path = Path(__file__).parents[1] / "unit" / "test_pose.py"
    spec = importlib.util.spec_from_file_location("_pose_unit_annotations", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UNIT = _pose_annotations()

pytestmark = [pytest.mark.ros, pytest.mark.slow]
if not UNIT.HAS_MEDIAPIPE:
    raise RuntimeError("mediapipe is not installed: `make setup` installs it")


@pytest.fixture(scope="module")
def messi_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("messi")
    for i in range(3):
        shutil.copy(require(UNIT.MESSI), folder / f"messi{i}.jpg")
    return folder


@pytest.fixture(scope="module")
def cup_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frame 0 of cup.mp4, twice, as lossless PNGs."""
    folder = tmp_path_factory.mktemp("cup")
    video = folder / "cup.mp4"
    with gzip.open(require(UNIT.CUP_VIDEO_GZ), "rb") as src, open(video, "wb") as dst:
        shutil.copyfileobj(src, dst)
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    video.unlink()  # not an image: the folder source would skip it anyway, but keep it clean
    assert ok and frame.shape == (480, 640, 3)
    for i in range(2):
        cv2.imwrite(str(folder / f"cup{i}.png"), frame)
    return folder


def _pipeline(start_node, ns: str, folder: Path, **pose_params):
    source = start_node("video_source", namespace=ns, parameters={"uri": str(folder), "fps": 10.0})
    pose = start_node(
        "pose", namespace=ns, parameters=pose_params, remappings={"image": "image_raw"}
    )
    return source, pose


def _wait(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _hand_messages(msgs: list[PoseKeypointsArray]) -> None:
    for msg in msgs:
        hands = msg_to_poses(msg, kind="hand")
        assert len(hands) == 1 and hands.kind == "hand", msg
        assert hands.keypoints.shape == (1, 21, 2)
        assert UNIT.inside(hands.keypoints[0], UNIT.CUP_HAND).all(), hands.keypoints[0]


def test_body_pose_with_copied_stamps_and_overlay(ros, start_node, messi_folder):
    _, pose = _pipeline(start_node, "p1", messi_folder)
    # Reliable, deep queue: the test must see every frame to match stamps.
    images = ros.subscribe(Image, "/p1/image_raw", qos=QoSProfile(depth=100))
    images.wait_for(1, timeout=30)
    overlay = ros.subscribe(Image, "/p1/overlay")
    collector = ros.subscribe(PoseKeypointsArray, "/p1/poses")
    msgs = collector.wait_for(5, timeout=60)[:5]

    image_stamps = {stamp_to_ns(m.header.stamp) for m in images.messages}
    for msg in msgs:
        if stamp_to_ns(msg.header.stamp) >= min(image_stamps):
            assert stamp_to_ns(msg.header.stamp) in image_stamps  # header copied from the image
        assert msg.header.frame_id == "camera"
        poses = msg_to_poses(msg)
        assert len(poses) == 1 and poses.kind == "body" and poses.labels == ["person"]
        assert poses.keypoints.shape == (1, 33, 2)
        assert UNIT.inside(poses.keypoints[0], UNIT.MESSI_PERSON).all(), poses.keypoints[0]
        box = msg.instances[0].bbox
        assert box.size_x > 250 and box.size_y > 180  # covers the player, like the unit test

    (drawn,) = overlay.wait_for(1, timeout=30)[:1]
    assert (drawn.width, drawn.height, drawn.encoding) == (548, 342, "bgr8")
    plain = cv2.imread(str(UNIT.MESSI), cv2.IMREAD_COLOR)
    changed = (image_to_numpy(drawn) != plain).any(axis=2).mean()
    assert 0.005 < changed < 0.2, changed  # a skeleton is drawn; the picture is still there
    assert pose.alive() and "Traceback" not in pose.output()


def test_model_swap_settings_rebuild_and_unknown_model(ros, start_node, cup_folder):
    _, pose = _pipeline(start_node, "p2", cup_folder, max_hands=1)
    collector = ros.subscribe(PoseKeypointsArray, "/p2/poses")
    collector.wait_for(3, timeout=60)

    reply = ros.call(
        LoadModel, "/p2/pose/load_model", LoadModel.Request(model="mediapipe-hands"), timeout=30
    )
    assert reply.success, reply.message
    assert reply.model == "mediapipe-hands"
    assert ros.get_parameters(pose.fqn, ["model"]) == {"model": "mediapipe-hands"}
    collector.clear()
    # The first message may come from a frame the body model had already started on.
    _hand_messages(collector.wait_for(4, timeout=30)[1:4])

    # Estimator settings rebuild it through the same load-then-swap path.
    ok = ros.set_parameters(pose.fqn, {"tracking": False, "min_detection_confidence": 0.6})
    assert all(r.successful for r in ok), [r.reason for r in ok]
    # One rebuild per parameter: the set_parameters service applies them one by one.
    assert _wait(lambda: pose.output().count("serving mediapipe-hands") == 3), pose.output()
    assert not ros.set_parameters(pose.fqn, {"max_hands": 5})[0].successful

    reply = ros.call(
        LoadModel, "/p2/pose/load_model", LoadModel.Request(model="openpose"), timeout=30
    )
    assert not reply.success and "openpose" in reply.message
    assert reply.model == "mediapipe-hands"
    assert ros.get_parameters(pose.fqn, ["model"]) == {"model": "mediapipe-hands"}
    collector.clear()
    _hand_messages(collector.wait_for(3, timeout=30)[:3])  # still serving
    assert pose.alive() and "Traceback" not in pose.output()

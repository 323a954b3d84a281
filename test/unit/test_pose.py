"""Hand and body pose on real images with MediaPipe's own models, the Poses type, and overlays.

Models: the TFLite files inside the mediapipe==0.10.14 wheel (no download). Images: Debian
opencv-doc's messi5.jpg (a footballer mid-kick, facing the camera) and the first frame of
cup.mp4.gz (a hand holding a cup). The regions below are our own annotation, read off the
images at 2x zoom with a pixel grid.
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_vision.core.detections import Detections
from edge_vision.core.drawing import class_color, draw_detections, draw_poses
from edge_vision.core.poses import (
    BODY_KEYPOINT_NAMES,
    BODY_SKELETON,
    HAND_KEYPOINT_NAMES,
    HAND_SKELETON,
    Poses,
)
from edge_vision.testing.media import OPENCV_DATA, require

MESSI = OPENCV_DATA / "messi5.jpg"  # 548x342
CUP_VIDEO_GZ = Path("/usr/share/doc/opencv-doc/opencv4/html/cup.mp4.gz")  # 640x480, 217 frames

# messi5.jpg, (x1, y1, x2, y2):
# the whole player: outstretched right-hand fingertips (left), hair top, right boot tip
# (right), left boot sole (bottom, the image edge)
MESSI_PERSON = (60, 55, 470, 342)
MESSI_HEAD = (205, 60, 275, 135)  # hair top to chin
MESSI_RIGHT_HAND = (60, 75, 140, 125)  # his right arm is stretched to the image's left
MESSI_LEFT_HAND = (300, 135, 385, 190)  # his left hand, fingers spread, at chest height

# cup.mp4 frame 0: the hand gripping the cup from the right, from the thumb tip on the
# cup's front (left) over the knuckles (top) to the wrist (right); the forearm goes on to the
# image's right edge.
CUP_HAND = (340, 160, 600, 310)

HAS_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None


@pytest.fixture
def mediapipe_installed() -> None:
    # It can run here, so its absence is a failed setup, not a reason to skip.
    if not HAS_MEDIAPIPE:
        pytest.fail(
            "mediapipe is not installed: `make setup` installs it with --no-deps "
            "(the #no-deps line in requirements/models.txt)"
        )


needs_mediapipe = pytest.mark.usefixtures("mediapipe_installed")


def inside(points: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = region
    pts = np.asarray(points).reshape(-1, 2)
    return (pts[:, 0] >= x1) & (pts[:, 0] <= x2) & (pts[:, 1] >= y1) & (pts[:, 1] <= y2)


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def messi() -> np.ndarray:
    image = cv2.imread(str(require(MESSI)), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (342, 548, 3)
    return image


@pytest.fixture(scope="module")
def cup_frames(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    """The first 30 frames of cup.mp4 (gunzipped to a temp dir)."""
    video = tmp_path_factory.mktemp("cup") / "cup.mp4"
    with gzip.open(require(CUP_VIDEO_GZ), "rb") as src, open(video, "wb") as dst:
        shutil.copyfileobj(src, dst)
    cap = cv2.VideoCapture(str(video))
    frames = []
    try:
        while len(frames) < 30:
            ok, frame = cap.read()
            assert ok, f"cannot decode frame {len(frames)} of {video}"
            frames.append(frame)
    finally:
        cap.release()
    assert frames[0].shape == (480, 640, 3)
    return frames


@pytest.fixture(scope="module")
def body_estimator() -> Iterator[object]:
    from edge_vision.models.pose import PoseEstimator

    with PoseEstimator("body", static_image_mode=True) as est:
        yield est


@pytest.fixture(scope="module")
def hands_estimator() -> Iterator[object]:
    from edge_vision.models.pose import PoseEstimator

    with PoseEstimator("hands", max_hands=2, static_image_mode=True) as est:
        yield est


@pytest.fixture(scope="module")
def messi_pose(body_estimator, messi: np.ndarray) -> Poses:
    return body_estimator.estimate(messi)


@pytest.fixture(scope="module")
def cup_hands(hands_estimator, cup_frames: list[np.ndarray]) -> Poses:
    return hands_estimator.estimate(cup_frames[0])


# --------------------------------------------------------------------------------------------
# body pose on messi5.jpg
# --------------------------------------------------------------------------------------------


@needs_mediapipe
def test_body_pose_finds_the_player(messi_pose: Poses) -> None:
    poses = messi_pose
    assert len(poses) == 1
    assert poses.kind == "body" and poses.labels == ["person"]
    assert poses.keypoints.shape == (1, 33, 2) and poses.keypoints.dtype == np.float32
    assert poses.scores.shape == (1, 33) and poses.instance_scores.shape == (1,)
    assert poses.keypoint_names == BODY_KEYPOINT_NAMES and poses.skeleton == BODY_SKELETON
    assert 0.5 < poses.instance_scores[0] <= 1.0
    assert ((poses.scores >= 0) & (poses.scores <= 1)).all()
    # The whole player is in view: every keypoint is visible enough and lies on him.
    assert (poses.scores[0] > 0.5).all(), poses.scores
    assert inside(poses.keypoints[0], MESSI_PERSON).all()
    box = poses.boxes(min_score=0.5)[0]
    assert inside(box.reshape(2, 2), MESSI_PERSON).all()
    # ... and covers most of him (he spans ~400x280 px)
    assert box[2] - box[0] > 250 and box[3] - box[1] > 180


@needs_mediapipe
def test_body_pose_is_anatomically_sane(messi_pose: Poses) -> None:
    kp = {name: messi_pose.keypoint(name)[0] for name in BODY_KEYPOINT_NAMES}
    y = {name: float(p[1]) for name, p in kp.items()}
    for part in ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "mouth_left"):
        assert inside(kp[part], MESSI_HEAD).all(), (part, kp[part])
    # Image y grows downwards: head above shoulders above hips above knees/ankles.
    for side in ("left", "right"):
        assert y["nose"] < y[f"{side}_shoulder"] < y[f"{side}_hip"]
        assert y[f"{side}_hip"] < y[f"{side}_ankle"]
        assert y[f"{side}_eye"] < y["mouth_left"]
    # He faces the camera, so his own right side is on the image's left.
    assert kp["right_shoulder"][0] < kp["left_shoulder"][0]
    assert kp["right_wrist"][0] < kp["nose"][0] < kp["left_wrist"][0]
    assert inside(kp["right_wrist"], MESSI_RIGHT_HAND).all(), kp["right_wrist"]
    assert inside(kp["left_wrist"], MESSI_LEFT_HAND).all(), kp["left_wrist"]
    # Arms: elbow between shoulder and wrist along x (both arms are stretched sideways).
    assert kp["right_wrist"][0] < kp["right_elbow"][0] < kp["right_shoulder"][0]
    assert kp["left_shoulder"][0] < kp["left_elbow"][0] < kp["left_wrist"][0]


@needs_mediapipe
def test_body_pose_nothing_in_a_blank_image(body_estimator) -> None:
    poses = body_estimator.estimate(np.full((240, 320, 3), 127, np.uint8))
    assert len(poses) == 0 and poses.kind == "body"
    assert poses.keypoints.shape == (0, 33, 2) and poses.boxes().shape == (0, 4)


# --------------------------------------------------------------------------------------------
# hands on cup.mp4
# --------------------------------------------------------------------------------------------


@needs_mediapipe
def test_hand_found_on_the_cup(cup_hands: Poses) -> None:
    hands = cup_hands
    assert len(hands) == 1, hands  # one hand in view
    assert hands.kind == "hand"
    assert hands.keypoints.shape == (1, 21, 2) and hands.keypoint_names == HAND_KEYPOINT_NAMES
    assert hands.skeleton == HAND_SKELETON
    assert hands.labels[0] in ("left_hand", "right_hand")
    assert inside(hands.keypoints[0], CUP_HAND).all(), hands.boxes()
    # No per-keypoint score from MediaPipe: every keypoint carries the hand's score.
    assert 0.5 <= hands.instance_scores[0] <= 1.0
    np.testing.assert_array_equal(hands.scores[0], np.full(21, hands.instance_scores[0]))
    # The arm enters from the right and the fingers point left: the wrist is the rightmost
    # keypoint and every fingertip is left of its finger's base.
    wrist = hands.keypoint("wrist")[0]
    assert wrist[0] == hands.keypoints[0, :, 0].max()
    for finger in ("index_finger", "middle_finger", "ring_finger", "pinky"):
        assert hands.keypoint(f"{finger}_tip")[0, 0] < hands.keypoint(f"{finger}_mcp")[0, 0]
    box = hands.boxes()[0]
    assert box[2] - box[0] > 120  # the hand is ~200 px long


@needs_mediapipe
def test_handedness_follows_the_mirrored_flag(cup_hands: Poses, cup_frames) -> None:
    from edge_vision.models.pose import PoseEstimator

    # MediaPipe answers "Left" (0.97) for this hand under its selfie-view convention, which
    # for an ordinary, unmirrored camera is the person's right hand.
    assert cup_hands.labels == ["right_hand"]
    with PoseEstimator("hands", static_image_mode=True, mirrored=True) as est:
        mirrored = est.estimate(cup_frames[0])
    assert mirrored.labels == ["left_hand"]
    np.testing.assert_allclose(mirrored.keypoints, cup_hands.keypoints, atol=1e-3)


@needs_mediapipe
def test_hands_video_mode_tracks_across_frames(cup_frames: list[np.ndarray]) -> None:
    from edge_vision.models.pose import PoseEstimator

    with PoseEstimator("hands", max_hands=1, static_image_mode=False) as est:
        found = [len(est.estimate(f)) for f in cup_frames[:15]]
        assert found == [1] * 15
        last = est.estimate(cup_frames[15])
        est.reset()  # forgets the track; the next call detects afresh
        again = est.estimate(cup_frames[15])
    assert inside(last.keypoints[0], CUP_HAND).mean() > 0.9
    assert len(again) == 1


@needs_mediapipe
def test_hands_lite_model(cup_frames: list[np.ndarray]) -> None:
    from edge_vision.models.pose import PoseEstimator

    with PoseEstimator("hands", static_image_mode=True, model_complexity=0) as est:
        assert set(est.model_files) == {"palm_detection_lite", "hand_landmark_lite"}
        hands = est.estimate(cup_frames[0])
    assert len(hands) == 1 and inside(hands.keypoints[0], CUP_HAND).all()


# --------------------------------------------------------------------------------------------
# estimator arguments, model files, layouts
# --------------------------------------------------------------------------------------------


@needs_mediapipe
def test_estimator_refuses_what_mediapipe_cannot_do(messi: np.ndarray) -> None:
    from edge_vision.models.pose import PoseEstimator

    with pytest.raises(ValueError, match="single person"):
        PoseEstimator("body", max_people=2)
    with pytest.raises(ValueError, match="max_hands"):
        PoseEstimator("hands", max_people=3)
    with pytest.raises(ValueError, match="kind"):
        PoseEstimator("face")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ships"):
        PoseEstimator("body", model_complexity=2)  # heavy model is downloaded, not shipped
    with pytest.raises(ValueError, match="min_detection_confidence"):
        PoseEstimator("hands", min_detection_confidence=1.5)
    est = PoseEstimator("body", static_image_mode=True)
    with pytest.raises(ValueError, match="BGR uint8"):
        est.estimate(cv2.cvtColor(messi, cv2.COLOR_BGR2GRAY))
    est.close()
    with pytest.raises(RuntimeError, match="closed"):
        est.estimate(messi)


@needs_mediapipe
def test_model_files_are_the_wheels_tflite() -> None:
    from edge_vision.models.pose import (
        MEDIAPIPE_MODEL_SHA256,
        PoseEstimator,
        mediapipe_model_files,
        sha256_file,
    )

    files = mediapipe_model_files(verify=True)
    assert set(files) == set(MEDIAPIPE_MODEL_SHA256)
    for name, path in files.items():
        assert path.suffix == ".tflite" and path.stat().st_size > 100_000
        assert sha256_file(path) == MEDIAPIPE_MODEL_SHA256[name]
    with PoseEstimator("body", static_image_mode=True) as est:
        assert est.model_files == {
            "pose_detection": files["pose_detection"],
            "pose_landmark_full": files["pose_landmark_full"],
        }


@needs_mediapipe
def test_layouts_match_mediapipe() -> None:
    from edge_vision.models.pose import _solution_classes

    _solution_classes()  # imports mediapipe with the protobuf fixes
    from mediapipe.python.solutions import hands_connections, pose, pose_connections
    from mediapipe.python.solutions.hands import HandLandmark

    assert tuple(m.name.lower() for m in pose.PoseLandmark) == BODY_KEYPOINT_NAMES
    assert tuple(m.name.lower() for m in HandLandmark) == HAND_KEYPOINT_NAMES

    def undirected(pairs) -> set[frozenset[int]]:
        return {frozenset(p) for p in pairs}

    assert undirected(BODY_SKELETON) == undirected(pose_connections.POSE_CONNECTIONS)
    assert undirected(HAND_SKELETON) == undirected(hands_connections.HAND_CONNECTIONS)
    assert len(BODY_SKELETON) == len(set(BODY_SKELETON)) == 35
    assert len(HAND_SKELETON) == 21


def test_layouts_without_mediapipe() -> None:
    assert len(BODY_KEYPOINT_NAMES) == 33 and len(set(BODY_KEYPOINT_NAMES)) == 33
    assert len(HAND_KEYPOINT_NAMES) == 21 and len(set(HAND_KEYPOINT_NAMES)) == 21
    assert HAND_KEYPOINT_NAMES[0] == "wrist" and HAND_KEYPOINT_NAMES[20] == "pinky_tip"
    assert all(0 <= a < 33 and 0 <= b < 33 for a, b in BODY_SKELETON)


# --------------------------------------------------------------------------------------------
# Poses type
# --------------------------------------------------------------------------------------------


def _two_hands() -> Poses:
    kp = np.zeros((2, 21, 2))
    kp[0] = np.stack([np.linspace(10, 50, 21), np.linspace(20, 40, 21)], axis=1)
    kp[1] = kp[0] + 100
    kp[1, 5] = (-30, 900)  # an extrapolated keypoint off the image, low score
    scores = np.ones((2, 21))
    scores[1, 5] = 0.1
    return Poses(kp, scores, [0.9, 0.6], "hand", ["left_hand", "right_hand"])


def test_poses_normalises_types_and_defaults() -> None:
    poses = _two_hands()
    assert poses.keypoints.dtype == np.float32 and poses.keypoints.shape == (2, 21, 2)
    assert poses.scores.dtype == np.float32 and poses.instance_scores.dtype == np.float32
    assert poses.keypoint_names == HAND_KEYPOINT_NAMES and poses.skeleton == HAND_SKELETON
    assert len(poses) == 2
    assert "right_hand:0.60" in repr(poses)
    empty = Poses.empty("body")
    assert len(empty) == 0 and empty.keypoints.shape == (0, 33, 2)
    assert empty.scores.shape == (0, 33) and empty.labels == []


def test_poses_validates() -> None:
    with pytest.raises(ValueError, match="labels"):
        Poses(np.zeros((2, 21, 2)), np.zeros((2, 21)), [1, 1], "hand", ["left_hand"])
    with pytest.raises(ValueError, match="kind"):
        Poses(np.zeros((0, 21, 2)), np.zeros((0, 21)), [], "face", [])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Poses(np.zeros((1, 21, 2)), np.zeros((1, 20)), [1], "hand", ["x"])
    with pytest.raises(ValueError, match="skeleton"):
        Poses(np.zeros((1, 2, 2)), np.ones((1, 2)), [1], "body", ["p"], ("a", "b"), ((0, 2),))
    # A custom layout gets no default skeleton.
    custom = Poses(np.zeros((1, 2, 2)), np.ones((1, 2)), [1], "body", ["p"], ("a", "b"))
    assert custom.skeleton == () and custom.index("b") == 1
    with pytest.raises(KeyError, match="nose"):
        custom.index("nose")


def test_poses_indexing() -> None:
    poses = _two_hands()
    second = poses[1]
    assert len(second) == 1 and second.labels == ["right_hand"]
    assert second.keypoints.shape == (1, 21, 2)
    np.testing.assert_array_equal(second.keypoints[0], poses.keypoints[1])
    assert poses[np.array([False, True])].labels == ["right_hand"]
    assert poses[poses.instance_scores > 0.7].labels == ["left_hand"]
    assert poses[::-1].labels == ["right_hand", "left_hand"]
    assert len(poses[[]]) == 0
    with pytest.raises(IndexError):
        poses[np.array([True])]
    assert poses.keypoint("thumb_tip").shape == (2, 2)
    np.testing.assert_array_equal(poses.keypoint("wrist")[0], poses.keypoints[0, 0])


def test_poses_boxes_and_detections() -> None:
    poses = _two_hands()
    np.testing.assert_allclose(poses.boxes()[0], [10, 20, 50, 40])
    # The stray keypoint stretches the plain box; min_score drops it; clipping bounds it.
    np.testing.assert_allclose(poses.boxes()[1], [-30, 120, 150, 900])
    np.testing.assert_allclose(poses.boxes(min_score=0.5)[1], [110, 120, 150, 140])
    np.testing.assert_allclose(poses.boxes(image_size=(640, 480))[1], [0, 120, 150, 480])
    # No keypoint passes: fall back to all of them rather than an empty box.
    np.testing.assert_allclose(poses.boxes(min_score=2.0)[0], [10, 20, 50, 40])
    det = poses.to_detections(min_score=0.5)
    assert isinstance(det, Detections) and len(det) == 2
    assert det.labels == ["left_hand", "right_hand"]
    np.testing.assert_allclose(det.scores, [0.9, 0.6])
    assert det.class_ids.tolist() == [0, 0]
    assert poses.to_detections(class_ids=[3, 4]).class_ids.tolist() == [3, 4]


# --------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------


@needs_mediapipe
def test_draw_poses_on_real_results(messi: np.ndarray, messi_pose: Poses, cup_frames, cup_hands):
    for image, poses in ((messi, messi_pose), (cup_frames[0], cup_hands)):
        canvas = image.copy()
        out = draw_poses(canvas, poses)
        assert out is canvas and canvas.shape == image.shape and canvas.dtype == np.uint8
        changed = (canvas != image).any(axis=2)
        assert changed.sum() > 300
        # The changes sit on the skeleton: inside the keypoints' box (plus the dot radius).
        x1, y1, x2, y2 = poses.boxes()[0]
        ys, xs = np.nonzero(changed)
        assert xs.min() >= x1 - 6 and xs.max() <= x2 + 6
        assert ys.min() >= y1 - 6 and ys.max() <= y2 + 6
        # Each keypoint gets a dot.
        for x, y in poses.keypoints[0].round().astype(int):
            if 0 <= x < image.shape[1] and 0 <= y < image.shape[0]:
                assert changed[y, x]


def test_draw_poses_skips_low_scores_and_empty() -> None:
    poses = _two_hands()
    image = np.zeros((480, 640, 3), np.uint8)
    draw_poses(image, poses, min_score=0.95)  # only hand 0 (score 1) and hand 1 minus one
    assert image.any()
    none = np.zeros_like(image)
    draw_poses(none, poses, min_score=1.5)
    draw_poses(none, Poses.empty("body"))
    assert not none.any()
    nan = _two_hands()
    nan.keypoints[0, 3] = np.nan  # must neither crash nor draw at the origin
    img = np.zeros_like(image)
    draw_poses(img, nan)
    assert not img[:5, :5].any()


def test_draw_detections() -> None:
    image = np.full((240, 320, 3), 40, np.uint8)
    det = Detections(
        [[20, 30, 120, 200], [150, 0, 300, 100]], [0.9, 0.45], [0, 16], labels=["person", "dog"]
    )
    boxes_only = image.copy()
    assert draw_detections(boxes_only, det, labels=False) is boxes_only
    assert tuple(boxes_only[100, 20]) == class_color(0)  # left edge of box 0
    assert tuple(boxes_only[50, 300]) == class_color(16)  # right edge of box 1
    assert not (boxes_only[100, 70] != 40).any()  # box interior untouched
    tagged = image.copy()
    draw_detections(tagged, det)
    assert (tagged != image).any(axis=2).sum() > (boxes_only != image).any(axis=2).sum()
    # The tag of box 1 (touching the image top) goes inside the box, not off the image.
    assert (tagged[1:20, 152:200] != boxes_only[1:20, 152:200]).any()
    # Unlabelled and tracked detections draw too.
    plain = Detections([[5, 5, 50, 50]], [0.5], [3], track_ids=[7])
    draw_detections(image, plain)
    assert (image != 40).any()
    draw_detections(image, Detections.empty())


def test_class_colors_are_stable_and_distinct() -> None:
    colors = [class_color(i) for i in range(80)]
    assert colors == [class_color(i) for i in range(80)]
    assert len(set(colors[:20])) == 20
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colors)


def test_drawing_rejects_images_it_cannot_draw_on() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="contiguous"):
        draw_poses(image[:, ::2], _two_hands())
    with pytest.raises(ValueError, match="BGR"):
        draw_detections(np.zeros((100, 100), np.uint8), Detections.empty())
    readonly = image.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        draw_detections(readonly, Detections.empty())

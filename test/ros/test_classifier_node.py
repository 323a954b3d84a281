"""classifier over real DDS: whole frames from video_source, and detector crops end to end."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

from edge_vision.ros.conversions import labels_from_label_info, msg_to_detections
from edge_vision.ros.image_conversion import stamp_to_ns
from edge_vision.ros.qos import latched_qos
from edge_vision.srv import LoadModel
from edge_vision.testing.media import OPENCV_DATA, VTEST, require
from edge_vision.testing.ros_harness import wait_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ORANGE = OPENCV_DATA / "orange.jpg"


@pytest.fixture(scope="module", autouse=True)
def pulled_models():
    """Models in the local cache before any node starts (a first pull takes a while)."""
    from edge_vision.models.zoo import pull

    for name in ("efficientnet-lite0", "nanodet-m"):
        pull(name)


@pytest.fixture
def orange_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "oranges"
    folder.mkdir()
    for i in range(3):
        shutil.copy(require(ORANGE), folder / f"orange{i}.jpg")
    return folder


def _frame_pipeline(start_node, ns: str, folder: Path, **classifier_params):
    start_node(
        "video_source",
        namespace=ns,
        parameters={"uri": str(folder), "loop": True, "realtime": True, "fps": 10.0},
    )
    return start_node(
        "classifier",
        namespace=ns,
        parameters=classifier_params,
        remappings={"image": "image_raw"},
    )


def _top1(msg: Classification, labels: list[str]) -> str:
    best = max(msg.results, key=lambda r: r.score)
    return labels[int(best.class_id)]


def test_frame_mode_names_the_orange_with_the_image_stamp_and_takes_parameters_live(
    ros, start_node, orange_folder
):
    classifier = _frame_pipeline(start_node, "c1", orange_folder)
    images = ros.subscribe(Image, "/c1/image_raw", qos=QoSProfile(depth=100))
    images.wait_for(1, timeout=30)
    results = ros.subscribe(Classification, "/c1/classification")
    first_image = stamp_to_ns(images.messages[0].header.stamp)

    def later() -> list[Classification]:
        return [m for m in list(results.messages) if stamp_to_ns(m.header.stamp) >= first_image]

    wait_until(lambda: len(later()) >= 3, 60, "3 classifications")
    (info,) = ros.collect(LabelInfo, "/c1/labels", 1, timeout=10, qos=latched_qos())
    labels = labels_from_label_info(info)
    assert len(labels) == 1000  # ImageNet

    image_stamps = {stamp_to_ns(m.header.stamp) for m in images.messages}
    for msg in later():
        assert stamp_to_ns(msg.header.stamp) in image_stamps  # header copied from the image
        assert msg.header.frame_id == "camera"
        assert len(msg.results) == 5  # top_k default, threshold 0
        scores = [r.score for r in msg.results]
        assert scores == sorted(scores, reverse=True)
        assert _top1(msg, labels) == "orange"

    ok = ros.set_parameters(classifier.fqn, {"smoothing": 0.3, "top_k": 2})
    assert all(r.successful for r in ok), [r.reason for r in ok]
    bad = ros.set_parameters(classifier.fqn, {"top_k": 0})
    assert not bad[0].successful
    assert ros.get_parameters(classifier.fqn, ["top_k", "smoothing"]) == {
        "top_k": 2,
        "smoothing": 0.3,
    }
    results.clear()
    # Messages already in flight may still carry 5 results; the new top_k shows up right after.
    wait_until(lambda: any(len(m.results) == 2 for m in results.messages), 30, "top_k 2")
    newest = next(m for m in results.messages if len(m.results) == 2)
    assert _top1(newest, labels) == "orange"  # the smoothed average of one image is the image
    assert classifier.alive() and "Traceback" not in classifier.output()


def test_detections_mode_attaches_imagenet_classes_to_every_detected_object(ros, start_node):
    ns = "c2"
    start_node("video_source", namespace=ns, parameters={"uri": str(require(VTEST))})
    start_node("detector", namespace=ns, remappings={"image": "image_raw"})
    classifier = start_node(
        "classifier",
        namespace=ns,
        parameters={"mode": "detections"},
        remappings={
            "image": "image_raw",
            "detections": "detections",
            "detection_labels": "labels",  # the detector's LabelInfo...
            "labels": "classifier_labels",  # ...so the classifier's own goes elsewhere
        },
    )
    # Reliable, deep queue: every detection array is kept to compare with its classification.
    detections = ros.subscribe(Detection2DArray, f"/{ns}/detections", qos=QoSProfile(depth=100))
    classified = ros.subscribe(Detection2DArray, f"/{ns}/classified")

    def by_stamp(after_ns: int = 0) -> list[tuple[Detection2DArray, Detection2DArray]]:
        inputs = {stamp_to_ns(m.header.stamp): m for m in detections.messages}
        return [
            (inputs[stamp], out)
            for out in list(classified.messages)
            if (stamp := stamp_to_ns(out.header.stamp)) in inputs
            and stamp > after_ns
            and (after_ns or out.detections)
        ]

    wait_until(lambda: len(by_stamp()) >= 3, 90, "3 classified frames with objects")
    (info,) = ros.collect(LabelInfo, f"/{ns}/classifier_labels", 1, timeout=10, qos=latched_qos())
    assert len(labels_from_label_info(info)) == 1000

    for source, out in by_stamp():
        assert out.header == source.header
        assert len(out.detections) == len(source.detections)  # one per detected object
        np.testing.assert_array_equal(msg_to_detections(out).xyxy, msg_to_detections(source).xyxy)
        for det_in, det_out in zip(source.detections, out.detections, strict=True):
            assert det_out.id == det_in.id
            assert len(det_out.results) == 5
            for hyp in det_out.results:
                assert 0 <= int(hyp.hypothesis.class_id) < 1000
                assert 0.0 <= hyp.hypothesis.score <= 1.0

    # Only cars: named through the detector's LabelInfo (detection_labels), the rest is left out.
    ok = ros.set_parameters(classifier.fqn, {"classes": ["car"]})
    assert ok[0].successful, ok[0].reason
    applied_ns = time.time_ns()  # frames captured from now on are classified with the new list
    wait_until(lambda: len(by_stamp(applied_ns)) >= 3, 60, "3 frames after the change")
    coco = labels_from_label_info(
        ros.collect(LabelInfo, f"/{ns}/labels", 1, timeout=10, qos=latched_qos())[0]
    )
    for source, out in by_stamp(applied_ns):
        found = msg_to_detections(source, coco)
        cars = found.xyxy[[name == "car" for name in found.labels]]
        np.testing.assert_array_equal(msg_to_detections(out).xyxy, cars)


def test_a_corrupt_model_and_a_bad_frame_are_refused_and_classification_goes_on(
    ros, start_node, orange_folder, tmp_path
):
    classifier = _frame_pipeline(start_node, "c3", orange_folder)
    results = ros.subscribe(Classification, "/c3/classification")
    results.wait_for(2, timeout=60)

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    # A valid sidecar manifest, so that it is the ONNX file itself that fails to load.
    corrupt.with_suffix(".yaml").write_text(
        "task: classification\ninput: {size: [224, 224]}\nlabels: [a, b]\n"
    )
    reply = ros.call(
        LoadModel, "/c3/classifier/load_model", LoadModel.Request(model=str(corrupt)), timeout=60
    )
    assert not reply.success
    assert "corrupt.onnx" in reply.message and "not an ONNX model" in reply.message
    assert reply.model == "efficientnet-lite0"
    assert ros.get_parameters(classifier.fqn, ["model"]) == {"model": "efficientnet-lite0"}

    # A depth image cannot be classified: it is counted and logged once, the node goes on.
    depth = Image(height=4, width=4, encoding="32FC1", step=16, data=bytes(64))
    depth.header.frame_id = "depth"
    publisher = ros.node.create_publisher(Image, "/c3/image_raw", 10)
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=50))

    def errors_reported() -> bool:
        publisher.publish(depth)  # again and again: the newest-frame slot may skip one
        return any(
            s.name == classifier.fqn and int({v.key: v.value for v in s.values}["errors"]) > 0
            for m in list(diagnostics.messages)
            for s in m.status
        )

    try:
        wait_until(errors_reported, 30, "an error in diagnostics")
    finally:
        ros.node.destroy_publisher(publisher)
        diagnostics.destroy()
    n = len(results.messages)
    results.wait_for(n + 2, timeout=30)  # still classifying
    assert classifier.alive()
    assert classifier.output().count("frame failed") == 1, classifier.output()

"""video_source -> detector over real DDS, with real weights on a real video."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from edge_vision.ros.conversions import labels_from_label_info, msg_to_detections
from edge_vision.ros.image_conversion import stamp_to_ns
from edge_vision.ros.qos import latched_qos
from edge_vision.srv import LoadModel
from edge_vision.testing.media import VTEST, require

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def pulled_models():
    """Both detectors in the local cache before any node starts (a first pull takes a while)."""
    from edge_vision.models.zoo import pull

    for name in ("nanodet-m", "centernet-mbv3"):
        pull(name)


def _pipeline(start_node, ns: str, source_params: dict | None = None, **detector_params):
    source = start_node(
        "video_source",
        namespace=ns,
        parameters={"uri": str(require(VTEST)), **(source_params or {})},
    )
    detector = start_node(
        "detector",
        namespace=ns,
        parameters=detector_params,
        remappings={"image": "image_raw"},
    )
    return source, detector


def test_detections_follow_frames_with_copied_stamps_and_find_people(ros, start_node):
    _pipeline(start_node, "d1")
    # Reliable, deep queue: the test must see every frame to match stamps.
    images = ros.subscribe(Image, "/d1/image_raw", qos=QoSProfile(depth=100))
    images.wait_for(1, timeout=30)
    collector = ros.subscribe(Detection2DArray, "/d1/detections")
    dets = collector.wait_for(10, timeout=60)[:10]
    # LabelInfo is transient-local: a subscriber that joins late still gets it.
    (info,) = ros.collect(LabelInfo, "/d1/labels", 1, timeout=10, qos=latched_qos())
    labels = labels_from_label_info(info)
    assert len(labels) == 80 and labels[0] == "person"

    image_stamps = {stamp_to_ns(m.header.stamp) for m in images.messages}
    first_image = min(image_stamps)
    for msg in (d for d in dets if stamp_to_ns(d.header.stamp) >= first_image):
        assert stamp_to_ns(msg.header.stamp) in image_stamps  # header copied from the image
        assert msg.header.frame_id == "camera"
    people = [[d for d in msg_to_detections(m, labels).labels if d == "person"] for m in dets]
    assert np.median([len(p) for p in people]) >= 3  # vtest.avi: several walkers in view


def test_load_model_swaps_while_frames_flow_and_a_corrupt_file_keeps_the_old(
    ros, start_node, tmp_path
):
    _, detector = _pipeline(start_node, "d2")
    collector = ros.subscribe(Detection2DArray, "/d2/detections")
    collector.wait_for(5, timeout=60)

    started = time.time()  # wall clock, like the collector's arrival times
    reply = ros.call(
        LoadModel, "/d2/detector/load_model", LoadModel.Request(model="centernet-mbv3"), timeout=60
    )
    load_s = time.time() - started
    assert reply.success, reply.message
    assert reply.model == "centernet-mbv3"
    assert ros.get_parameters(detector.fqn, ["model"]) == {"model": "centernet-mbv3"}
    n_before = len(collector.messages)
    collector.wait_for(n_before + 5, timeout=30)
    arrivals = np.asarray(collector.arrival_ns) / 1e9
    swap_window = arrivals[(arrivals > started - 1) & (arrivals < started + load_s + 2)]
    largest_gap = float(np.diff(swap_window).max())
    # Inference went on with the old model during the load: no gap longer than the load.
    assert largest_gap <= max(load_s, 0.5) + 0.5, (largest_gap, load_s)

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    # A valid sidecar manifest, so that it is the ONNX file itself that fails to load.
    corrupt.with_suffix(".yaml").write_text(
        "task: detection\ninput: {size: [416, 416]}\ndecoder: {type: gfl}\nlabels: [a, b]\n"
    )
    reply = ros.call(
        LoadModel, "/d2/detector/load_model", LoadModel.Request(model=str(corrupt)), timeout=60
    )
    assert not reply.success
    assert "corrupt.onnx" in reply.message and "not an ONNX model" in reply.message
    assert reply.model == "centernet-mbv3"
    reply = ros.call(
        LoadModel,
        "/d2/detector/load_model",
        LoadModel.Request(model="/no/such/model.onnx"),
        timeout=60,
    )
    assert not reply.success and "/no/such/model.onnx" in reply.message
    n = len(collector.messages)
    collector.wait_for(n + 5, timeout=30)  # still serving
    assert ros.get_parameters(detector.fqn, ["model"]) == {"model": "centernet-mbv3"}
    assert detector.alive() and "Traceback" not in detector.output()


def test_class_filter_and_thresholds_apply_at_run_time(ros, start_node):
    _, detector = _pipeline(start_node, "d3")
    ros.collect(Detection2DArray, "/d3/detections", 2, timeout=60)
    ok = ros.set_parameters(detector.fqn, {"classes": ["car"], "score_threshold": 0.2})
    assert all(r.successful for r in ok), [r.reason for r in ok]
    time.sleep(0.5)
    msgs = ros.collect(Detection2DArray, "/d3/detections", 10, timeout=30)
    class_ids = {r.hypothesis.class_id for m in msgs for d in m.detections for r in d.results}
    assert class_ids <= {"2"}  # COCO class 2 = car (parked cars in vtest.avi)

    bad = ros.set_parameters(detector.fqn, {"class_thresholds": ["person:0.5"]})
    assert not bad[0].successful and "NAME=THRESHOLD" in bad[0].reason
    bad = ros.set_parameters(detector.fqn, {"class_thresholds": ["person=1.5"]})
    assert not bad[0].successful
    # [""] clears a string array (an empty list has no type on the wire).
    good = ros.set_parameters(detector.fqn, {"classes": [""], "class_thresholds": ["person=0.9"]})
    assert all(r.successful for r in good), [r.reason for r in good]
    time.sleep(0.5)
    msgs = ros.collect(Detection2DArray, "/d3/detections", 10, timeout=30)
    scores = {
        r.hypothesis.class_id: r.hypothesis.score
        for m in msgs
        for d in m.detections
        for r in d.results
        if r.hypothesis.class_id == "0"
    }
    assert all(score >= 0.9 for score in scores.values())

    assert ros.set_parameters(detector.fqn, {"class_thresholds": [""]})[0].successful
    time.sleep(0.5)
    msgs = ros.collect(Detection2DArray, "/d3/detections", 10, timeout=30)
    person_scores = [
        r.hypothesis.score
        for m in msgs
        for d in m.detections
        for r in d.results
        if r.hypothesis.class_id == "0"
    ]
    assert person_scores and min(person_scores) < 0.9  # the person threshold is gone again


def test_latency_stays_bounded_when_frames_come_faster_than_inference(ros, start_node):
    # The file is read as fast as possible (capped at 60 fps): more than the CPU can detect.
    _pipeline(start_node, "d4", {"realtime": False, "fps": 60.0})
    collector = ros.subscribe(Detection2DArray, "/d4/detections")
    collector.wait_for(40, timeout=60)
    msgs = collector.messages[10:40]
    arrivals = collector.arrival_ns[10:40]
    latencies_ms = [
        (a - stamp_to_ns(m.header.stamp)) / 1e6 for m, a in zip(msgs, arrivals, strict=True)
    ]
    # A backlog would make latency climb frame after frame; the newest-frame policy keeps it
    # near one inference time.
    assert max(latencies_ms) < 1000, latencies_ms
    assert np.mean(latencies_ms[-10:]) < 2 * np.mean(latencies_ms[:10]) + 100

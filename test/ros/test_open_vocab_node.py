"""open_vocab_detector over real DDS, with a tiny RANDOMLY INITIALISED OWL-ViT.

No OWL weights ship in any registry reachable here, so the node loads a small random OWL-ViT
written by ``edge_vision.testing.tiny_owl`` from a local folder (the same path a user's
downloaded model takes). Its detections are meaningless: these tests assert the plumbing -
labels equal the prompt objects, thresholds applied, counts, stamps, LabelInfo, the prompt
service and its refusals, the CLI, and one text-encoder pass per prompt - never what it finds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from edge_vision.ros.conversions import labels_from_label_info
from edge_vision.ros.image_conversion import stamp_to_ns
from edge_vision.ros.qos import latched_qos
from edge_vision.srv import LoadModel, SetPrompt
from edge_vision.testing.ros_harness import Collector, NodeProcess, RosClient, wait_until
from edge_vision.testing.tiny_owl import write_tiny_owl

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PATCHES = 16  # the tiny model's candidate boxes per frame (64 px input, 16 px patches)
PATTERN = "test://pattern?width=160&height=120&fps=10"


@pytest.fixture(scope="module")
def tiny_owl(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_tiny_owl(tmp_path_factory.mktemp("tiny_owl")))


def _start(start_node: Any, ns: str, model: str, **params: Any) -> NodeProcess:
    start_node("video_source", namespace=ns, parameters={"uri": PATTERN})
    return start_node(
        "open_vocab_detector",
        namespace=ns,
        # one PyTorch thread: two spin against each other on the shared 2-core test machines
        parameters={"model": model, "nms_iou": 1.0, "threads": 1, **params},
        remappings={"image": "image_raw"},
    )


def _labels(msg: Detection2DArray) -> set[str]:
    return {r.hypothesis.class_id for d in msg.detections for r in d.results}


def _set_prompt(ros: RosClient, ns: str, objects: list[str], thresholds: list[float]) -> Any:
    request = SetPrompt.Request(objects=objects, thresholds=thresholds)
    return ros.call(SetPrompt, f"/{ns}/open_vocab_detector/set_prompt", request, timeout=30)


def _diag_value(diagnostics: Collector, fqn: str, key: str) -> str | None:
    for msg in reversed(list(diagnostics.messages)):
        for status in msg.status:
            if status.name == fqn:
                return {v.key: v.value for v in status.values}.get(key)
    return None


def test_random_tiny_owl_prompt_service_relabels_from_the_next_frame(
    ros: RosClient, start_node: Any, tiny_owl: str
) -> None:
    node = _start(start_node, "ov1", tiny_owl, objects=["a person", "a hat"], thresholds=[0.0])
    images = ros.subscribe(Image, "/ov1/image_raw", qos=QoSProfile(depth=100))
    detections = ros.subscribe(Detection2DArray, "/ov1/detections", qos=QoSProfile(depth=100))
    labels = ros.subscribe(LabelInfo, "/ov1/labels", qos=latched_qos(depth=10))
    first = detections.wait_for(5, timeout=90)[:5]
    wait_until(lambda: len(labels.messages) >= 1, 30, "LabelInfo")
    assert labels_from_label_info(labels.messages[-1]) == ["a person", "a hat"]

    image_stamps = {stamp_to_ns(m.header.stamp) for m in images.messages}
    for msg in first:
        assert len(msg.detections) == PATCHES  # threshold 0 and NMS off: every candidate box
        assert _labels(msg) <= {"a person", "a hat"}
        if stamp_to_ns(msg.header.stamp) >= min(image_stamps):
            assert stamp_to_ns(msg.header.stamp) in image_stamps  # header copied from the image
        assert msg.header.frame_id == "camera"

    reply = _set_prompt(ros, "ov1", ["a dog", "a cat", "a bird"], [0.0])
    assert reply.success, reply.message
    assert list(reply.objects) == ["a dog", "a cat", "a bird"]
    assert list(reply.thresholds) == [0.0, 0.0, 0.0]
    n_at_reply = len(detections.messages)
    # LabelInfo is republished with the new objects
    wait_until(
        lambda: labels_from_label_info(labels.messages[-1]) == ["a dog", "a cat", "a bird"],
        30,
        "new LabelInfo",
    )
    detections.wait_for(n_at_reply + 8, timeout=60)
    after = detections.messages[n_at_reply:]
    old, new = {"a person", "a hat"}, {"a dog", "a cat", "a bird"}
    # Only frames already in flight at the reply (being detected, or published and not yet
    # delivered) may still have the old prompt; from the first frame with the new one on,
    # never the old again, and no frame mixes the two.
    switched = next(i for i, m in enumerate(after) if _labels(m) & new)
    assert switched <= 3, [sorted(_labels(m)) for m in after]
    for msg in after:
        assert _labels(msg) <= old or _labels(msg) <= new
    for msg in after[switched:]:
        assert _labels(msg) <= new and len(msg.detections) == PATCHES
    assert ros.get_parameters(node.fqn, ["objects", "thresholds"]) == {
        "objects": ["a dog", "a cat", "a bird"],
        "thresholds": [0.0],
    }
    for c in (images, detections, labels):
        c.destroy()
    assert node.alive() and "Traceback" not in node.output()


def test_random_tiny_owl_invalid_prompts_are_refused_and_nothing_changes(
    ros: RosClient, start_node: Any, tiny_owl: str
) -> None:
    node = _start(
        start_node,
        "ov2",
        tiny_owl,
        objects=["a person", "a hat"],
        thresholds=[0.0, 0.0],
        max_objects=3,
    )
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=50))
    labels = ros.subscribe(LabelInfo, "/ov2/labels", qos=latched_qos(depth=10))
    ros.collect(Detection2DArray, "/ov2/detections", 2, timeout=90)
    wait_until(lambda: len(labels.messages) >= 1, 30, "LabelInfo")
    wait_until(
        lambda: _diag_value(diagnostics, node.fqn, "text_encoder_runs") is not None,
        30,
        "diagnostics",
    )
    runs_before = _diag_value(diagnostics, node.fqn, "text_encoder_runs")

    cases = [
        (["a dog", "a cat"], [0.1, 0.2, 0.3], "3 thresholds for 2 objects"),
        (["a dog"], [1.5], "outside [0, 1]"),
        (["a dog", "a cat"], [0.2, -0.1], "outside [0, 1]"),
        (["a dog", ""], [0.1], "object 2 of 2 is empty"),
        ([], [], "no objects"),
        (["a", "b", "c", "d"], [0.1], "4 objects, but at most 3"),
        (["a dog", "a dog"], [0.1], "listed twice"),
        (["a " + "very " * 8 + "long object"], [0.1], "tokens long"),
    ]
    for objects, thresholds, reason in cases:
        reply = _set_prompt(ros, "ov2", objects, thresholds)
        assert not reply.success, (objects, thresholds)
        assert reason in reply.message, (reason, reply.message)
        assert list(reply.objects) == ["a person", "a hat"]
        assert list(reply.thresholds) == [0.0, 0.0]

    # Parameters go through the same validation.
    bad = ros.set_parameters(node.fqn, {"thresholds": [0.1, 0.2, 0.3]})
    assert not bad[0].successful and "3 thresholds for 2 objects" in bad[0].reason
    bad = ros.set_parameters(node.fqn, {"objects": ["a", "b", "c"]})  # 2 thresholds for 3
    assert not bad[0].successful and "2 thresholds for 3 objects" in bad[0].reason
    bad = ros.set_parameters(node.fqn, {"max_objects": 1})
    assert not bad[0].successful and "at most 1" in bad[0].reason
    assert ros.get_parameters(node.fqn, ["objects", "thresholds", "max_objects"]) == {
        "objects": ["a person", "a hat"],
        "thresholds": [0.0, 0.0],
        "max_objects": 3,
    }

    msgs = ros.collect(Detection2DArray, "/ov2/detections", 5, timeout=60)
    assert all(_labels(m) <= {"a person", "a hat"} and len(m.detections) == PATCHES for m in msgs)
    assert len(labels.messages) == 1  # no LabelInfo for a refused prompt
    # A refused prompt never reaches the text encoder (the too-long one is refused by its
    # token count first).
    wait_until(lambda: len(diagnostics.messages) > 2, 30, "more diagnostics")
    assert _diag_value(diagnostics, node.fqn, "text_encoder_runs") == runs_before

    # A valid one by parameter: one threshold for all.
    bad = ros.set_parameters(node.fqn, {"objects": ["a cup", "a car", "a tree"]})
    assert not bad[0].successful  # still 2 thresholds for 3 objects
    ok = ros.set_parameters(node.fqn, {"thresholds": [0.0]})
    assert ok[0].successful, ok[0].reason
    ok = ros.set_parameters(node.fqn, {"objects": ["a cup", "a car", "a tree"]})
    assert ok[0].successful, ok[0].reason
    wait_until(
        lambda: labels_from_label_info(labels.messages[-1]) == ["a cup", "a car", "a tree"],
        30,
        "new LabelInfo",
    )
    diagnostics.destroy()
    labels.destroy()
    assert node.alive() and "Traceback" not in node.output()


def test_random_tiny_owl_thresholds_apply_per_object_and_text_encodes_once_per_prompt(
    ros: RosClient, start_node: Any, tiny_owl: str
) -> None:
    node = _start(start_node, "ov3", tiny_owl, objects=["a person", "a hat"], thresholds=[0.0])
    diagnostics = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=100))
    ros.collect(Detection2DArray, "/ov3/detections", 2, timeout=90)

    def runs() -> int:
        value = _diag_value(diagnostics, node.fqn, "text_encoder_runs")
        return -1 if value is None else int(value)

    def frames() -> int:
        value = _diag_value(diagnostics, node.fqn, "frames_done")
        return -1 if value is None else int(value)

    wait_until(lambda: runs() >= 0, 30, "diagnostics")
    start_runs, start_frames = runs(), frames()

    prompts = [
        (["a person", "a hat"], [0.0, 0.6]),  # same objects, new thresholds: no text pass
        (["a ball", "a shoe"], [0.55, 0.0]),  # new objects: one text pass
    ]
    for objects, thresholds in prompts:
        reply = _set_prompt(ros, "ov3", objects, thresholds)
        assert reply.success, reply.message
        # Collected after the reply: the prompt is already serving (frames in flight aside).
        msgs = ros.collect(Detection2DArray, "/ov3/detections", 8, timeout=60)[2:]
        limit = dict(zip(objects, thresholds, strict=True))
        seen = [
            (r.hypothesis.class_id, r.hypothesis.score)
            for m in msgs
            for d in m.detections
            for r in d.results
        ]
        assert seen and all(label in limit for label, _ in seen)
        assert all(score >= limit[label] - 1e-6 for label, score in seen), seen
        # the object with threshold 0 keeps all its boxes: each frame has at least those
        assert all(len(m.detections) >= 1 for m in msgs)

    # Many frames, two prompt changes, one new object list: exactly one more text pass.
    wait_until(lambda: frames() >= start_frames + 20, 60, "20 more frames")
    assert runs() == start_runs + 1, (start_runs, runs(), frames())
    diagnostics.destroy()
    assert node.alive()


def test_random_tiny_owl_cli_and_load_model(
    ros: RosClient, start_node: Any, tiny_owl: str, tmp_path: Path
) -> None:
    node = _start(start_node, "ov4", tiny_owl, objects=["a person"], thresholds=[0.0])
    ros.collect(Detection2DArray, "/ov4/detections", 2, timeout=90)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge_vision.cli.main", "prompt", *args, "--node", node.fqn],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )

    done = cli("a person, a hat", "--thresholds", "0.1,0.2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "serving: a person (0.1), a hat (0.2)"
    shown = cli()
    assert shown.returncode == 0 and shown.stdout.strip() == done.stdout.strip()
    refused = cli("a person, " + "x" * 40)
    assert refused.returncode == 1
    assert "tokens long" in refused.stderr and "still serving: a person (0.1), a hat (0.2)" in (
        refused.stderr
    )
    invalid = cli("a person, a hat", "--thresholds", "0.1,0.2,0.3")
    assert invalid.returncode == 2 and "3 thresholds for 2 objects" in invalid.stderr

    # ~/load_model: a folder that is not a model is refused and the old one keeps serving.
    reply = ros.call(
        LoadModel,
        "/ov4/open_vocab_detector/load_model",
        LoadModel.Request(model=str(tmp_path / "nothing")),
        timeout=60,
    )
    assert not reply.success and "no such model folder" in reply.message
    assert reply.model == tiny_owl
    other = write_tiny_owl(tmp_path / "other", seed=1)
    reply = ros.call(
        LoadModel,
        "/ov4/open_vocab_detector/load_model",
        LoadModel.Request(model=str(other)),
        timeout=60,
    )
    assert reply.success, reply.message
    msgs = ros.collect(Detection2DArray, "/ov4/detections", 3, timeout=60)
    assert all(_labels(m) <= {"a person", "a hat"} for m in msgs)
    assert node.alive() and "Traceback" not in node.output()


def test_invalid_prompt_at_start_up_exits_with_code_2(start_node: Any, tiny_owl: str) -> None:
    node = start_node(
        "open_vocab_detector",
        namespace="ov5",
        parameters={"model": tiny_owl, "objects": ["a", "b"], "thresholds": [0.1, 0.2, 0.3]},
    )
    assert node.wait(timeout=120) == 2
    assert "invalid prompt: 3 thresholds for 2 objects" in node.output()
    assert "Traceback" not in node.output()

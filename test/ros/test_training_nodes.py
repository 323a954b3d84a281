"""dataset and trainer nodes over real DDS: record real frames, train in the background while
the classifier keeps serving, hot-load the best model, stop and resume, survive a corrupt image."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rclpy.qos import QoSProfile
from std_srvs.srv import Trigger
from vision_msgs.msg import Classification, LabelInfo

from edge_vision.msg import DatasetStats, TrainingProgress
from edge_vision.ros.conversions import labels_from_label_info
from edge_vision.ros.qos import latched_qos
from edge_vision.srv import AddImage, GetDatasetStats, RecordDataset, SetTags
from edge_vision.testing.ros_harness import wait_until
from edge_vision.training.footage import build_box_cup_dataset, read_frames, sample_video

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def pulled_model():
    from edge_vision.models.zoo import pull

    pull("efficientnet-lite0")  # the classifier's start-up model


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()


def test_dataset_node_records_tags_and_uploads_inside_its_root(ros, start_node, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in read_frames(sample_video("box"), 0.0, 0.2, step=10):
        cv2.imwrite(str(frames / f"box{i:04d}.jpg"), frame)
    root = tmp_path / "dataset"
    ns = "d1"
    start_node(
        "video_source",
        namespace=ns,
        parameters={"uri": str(frames), "loop": True, "realtime": True, "fps": 10.0},
    )
    node = start_node(
        "dataset",
        namespace=ns,
        parameters={"root": str(root), "val_fraction": 0.25},
        remappings={"image": "image_raw"},
    )
    stats = ros.subscribe(DatasetStats, f"{node.fqn}/stats", qos=latched_qos(depth=1))
    stats.wait_for(1, timeout=30)
    assert stats.messages[-1].images == 0 and not stats.messages[-1].recording

    # Refused requests answer why and change nothing.
    bad = ros.call(SetTags, f"{node.fqn}/set_tags", SetTags.Request(tags=["../.."]))
    assert not bad.success and "empty after sanitising" in bad.message and bad.tags == []
    no_tags = ros.call(RecordDataset, f"{node.fqn}/record", RecordDataset.Request(frames=3))
    assert not no_tags.success and "set_tags" in no_tags.message

    ok = ros.call(SetTags, f"{node.fqn}/set_tags", SetTags.Request(tags=[" Red Box/../x "]))
    assert ok.success and ok.tags == ["red_box_x"]
    nothing = ros.call(RecordDataset, f"{node.fqn}/record", RecordDataset.Request())
    assert not nothing.success
    rec = ros.call(RecordDataset, f"{node.fqn}/record", RecordDataset.Request(frames=8))
    assert rec.success, rec.message
    again = ros.call(RecordDataset, f"{node.fqn}/record", RecordDataset.Request(frames=1))
    assert not again.success and "already recording" in again.message
    wait_until(
        lambda: any(m.recorded == 8 and not m.recording for m in stats.messages),
        60,
        "8 frames recorded",
    )
    last = stats.messages[-1]
    assert last.tags == ["red_box_x"] and last.active_tags == ["red_box_x"]
    assert (last.train[0], last.val[0]) == (6, 2)  # val_fraction 0.25 of 8, deterministic
    assert len(list((root / "train" / "red_box_x").glob("*.jpg"))) == 6
    assert len(list((root / "val" / "red_box_x").glob("*.jpg"))) == 2

    # Uploads: an unreadable one is refused and writes nothing; a name cannot escape the root.
    garbage = ros.call(
        AddImage,
        f"{node.fqn}/add_image",
        AddImage.Request(filename="x.jpg", data=list(b"not an image"), tags=["cup"]),
    )
    assert not garbage.success and "not a readable" in garbage.message
    assert not (root / "train" / "cup").exists() and not (root / "val" / "cup").exists()
    image = cv2.imread(str(next(frames.iterdir())))
    up = ros.call(
        AddImage,
        f"{node.fqn}/add_image",
        AddImage.Request(
            filename="../../../etc/evil.png", data=list(_png(image)), tags=["Cup"], split="val"
        ),
    )
    assert up.success, up.message
    stored = Path(up.path)
    assert stored == root.resolve() / "val" / "cup" / "evil.jpg"  # stored in image_format
    assert cv2.imread(str(stored)).shape == image.shape
    twice = ros.call(
        AddImage,
        f"{node.fqn}/add_image",
        AddImage.Request(filename="evil.png", data=list(_png(image)), tags=["cup"], split="val"),
    )
    assert twice.success and Path(twice.path).name == "evil-1.jpg"  # unique, nothing overwritten
    wait_until(lambda: stats.messages[-1].images == 10, 10, "stats after the uploads")

    # A corrupt file copied in by hand is counted as skipped by get_stats.
    (root / "train" / "cup").mkdir(parents=True)
    (root / "train" / "cup" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    counted = ros.call(GetDatasetStats, f"{node.fqn}/get_stats").stats
    assert counted.tags == ["cup", "red_box_x"]
    assert list(counted.train) == [0, 6] and list(counted.val) == [2, 2]
    assert counted.images == 10 and counted.skipped == 1
    assert node.alive() and "Traceback" not in node.output()


def test_trainer_refuses_what_cannot_run(ros, start_node, tmp_path):
    (tmp_path / "empty").mkdir()
    node = start_node(
        "trainer",
        parameters={"dataset": str(tmp_path / "empty"), "output_dir": str(tmp_path / "out")},
    )
    start = ros.call(Trigger, f"{node.fqn}/start", timeout=30)
    assert not start.success and "no images in train/" in start.message
    stop = ros.call(Trigger, f"{node.fqn}/stop")
    assert not stop.success and "no training job" in stop.message
    resume = ros.call(Trigger, f"{node.fqn}/resume")
    assert not resume.success
    assert not (tmp_path / "out").exists()
    assert node.alive() and "Traceback" not in node.output()


def test_background_training_hot_loads_the_classifier_and_survives_stop_resume_corruption(
    ros, start_node, tmp_path
):
    root, held_out = tmp_path / "dataset", tmp_path / "held_out"
    build_box_cup_dataset(root, step=6, held_out_dir=held_out)
    (root / "train" / "box" / "zz-corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "training"
    ns = "t1"
    # Held-out cup frames (a later part of the video than any training frame) to the classifier.
    start_node(
        "video_source",
        namespace=ns,
        parameters={"uri": str(held_out / "cup"), "loop": True, "realtime": True, "fps": 5.0},
    )
    classifier = start_node("classifier", namespace=ns, remappings={"image": "image_raw"})
    trainer = start_node(
        "trainer",
        namespace=ns,
        parameters={
            "dataset": str(root),
            "output_dir": str(out),
            "width": 128,
            "height": 128,
            "batch_size": 16,
            "epochs": 3,
            "threads": 1,
            "classifier_node": "classifier",
        },
    )
    results = ros.subscribe(Classification, f"/{ns}/classification")
    results.wait_for(1, timeout=60)  # serving ImageNet before training
    progress = ros.subscribe(TrainingProgress, f"{trainer.fqn}/progress", qos=QoSProfile(depth=500))

    start = ros.call(Trigger, f"{trainer.fqn}/start", timeout=30)
    assert start.success, start.message
    twice = ros.call(Trigger, f"{trainer.fqn}/start")
    assert not twice.success and "already running" in twice.message

    # Stop once the first epoch is done (a checkpoint exists), then resume.
    wait_until(lambda: any(m.val_accuracy > 0 for m in progress.messages), 400, "epoch 1 done")
    during = len(results.messages)
    assert ros.call(Trigger, f"{trainer.fqn}/stop").success
    wait_until(lambda: progress.messages[-1].state == "stopped", 120, "stopped")
    stopped_at = progress.messages[-1]
    assert stopped_at.best_model and Path(stopped_at.best_model).is_file()
    assert (out / "checkpoint.pt").is_file()
    mark = len(progress.messages)
    resumed = ros.call(Trigger, f"{trainer.fqn}/resume", timeout=30)
    assert resumed.success and "resuming at epoch 2" in resumed.message, resumed.message
    wait_until(lambda: progress.messages[-1].state in ("finished", "failed"), 600, "finished")
    final = progress.messages[-1]
    assert final.state == "finished", final.message
    after_resume = [m for m in progress.messages[mark:] if m.step > 0]
    assert after_resume and min(m.epoch for m in after_resume) == 2  # epoch 1 not repeated
    assert final.epoch == 3 and final.best_val_accuracy >= 0.9
    assert final.skipped_images == 1  # the corrupt image was skipped, training went on
    assert "skipping unreadable image" in trainer.output() and "zz-corrupt" in trainer.output()

    # Inference kept publishing while the training process ran.
    assert len(results.messages) > during > 1

    # The classifier serves the best model: box/cup labels, held-out cup frames say "cup".
    wait_until(lambda: "classifier serves" in trainer.output(), 60, "hot load")
    labels: list[str] = []

    def trained_labels() -> bool:
        (info,) = ros.collect(LabelInfo, f"/{ns}/labels", 1, timeout=10, qos=latched_qos())
        labels[:] = labels_from_label_info(info)
        return labels == ["box", "cup"]

    wait_until(trained_labels, 60, "LabelInfo of the trained model")
    results.clear()
    results.wait_for(1, timeout=30)  # a frame classified during the swap may still arrive
    results.clear()
    wait_until(lambda: len(results.messages) >= 10, 60, "10 classifications")
    top1 = [labels[int(max(m.results, key=lambda r: r.score).class_id)] for m in results.messages]
    assert top1.count("cup") >= 9, top1
    assert classifier.alive() and "Traceback" not in classifier.output()
    assert "Traceback" not in trainer.output()

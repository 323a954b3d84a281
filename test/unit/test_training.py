"""edge_vision.training: dataset folder rules, training plan checks, and a real multi-label run."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge_vision.training.dataset import (
    DatasetError,
    DatasetFolder,
    list_samples,
    sanitize_filename,
    sanitize_tag,
    sanitize_tags,
    tags_of_folder,
)
from edge_vision.training.footage import HELD_OUT_RANGE, TRAIN_RANGE, read_frames, sample_video
from edge_vision.training.trainer import (
    TrainConfig,
    TrainingError,
    TrainingProcess,
    _collate,
    augment,
    plan_training,
)


def _image(seed: int = 0, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("Cup", "cup"),
        (" Red Cup ", "red_cup"),
        ("../../etc", "etc"),
        ("a/b\\c", "a_b_c"),
        ("box+cup", "box_cup"),  # '+' separates tags in folder names
        ("tasse à café", "tasse_caf"),
        ("x" * 100, "x" * 64),
    ],
)
def test_tags_are_sanitised(raw: str, clean: str) -> None:
    assert sanitize_tag(raw) == clean


@pytest.mark.parametrize("raw", ["", "  ", "..", "/", "+++", "é"])
def test_tags_empty_after_sanitising_are_refused(raw: str) -> None:
    with pytest.raises(DatasetError, match="empty after sanitising"):
        sanitize_tag(raw)


def test_tag_lists_are_deduplicated_and_sorted() -> None:
    assert sanitize_tags(["Cup", "box", "cup ", ""]) == ["box", "cup"]


@pytest.mark.parametrize(
    ("hint", "stem"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\Photo 1.PNG", "photo_1"),
        (".bashrc", "bashrc"),
        ("", "image"),
        ("..", "image"),
        ("a.tar.gz", "a_tar"),
    ],
)
def test_file_names_are_sanitised(hint: str, stem: str) -> None:
    assert sanitize_filename(hint) == stem


def test_only_sanitised_folder_names_are_tag_folders() -> None:
    assert tags_of_folder("box") == ("box",)
    assert tags_of_folder("box+cup") == ("box", "cup")
    for name in (".incoming", "Box", "red cup", "box+", "a..b"):
        assert tags_of_folder(name) is None


def test_split_follows_val_fraction_per_tag_set(tmp_path: Path) -> None:
    ds = DatasetFolder(tmp_path, val_fraction=0.2)
    for i in range(10):
        ds.add_image(_image(i), ["box"])
    for i in range(5):
        ds.add_image(_image(i), ["cup"])
    stats = ds.stats(rescan=False)
    assert stats.tags == ["box", "cup"]
    assert (stats.train, stats.val) == ([8, 4], [2, 1])
    assert ds.stats(rescan=True).train == stats.train  # the incremental counts match the files
    ds.add_image(_image(), ["cup"], split="val")
    assert ds.stats().val == [2, 2]


def test_stored_images_get_unique_names_and_never_overwrite(tmp_path: Path) -> None:
    ds = DatasetFolder(tmp_path, image_format="png")
    a, b = _image(1), _image(2)
    pa = ds.add_image(a, ["box"], "train", "../shot.jpg")
    pb = ds.add_image(b, ["box"], "train", "shot")
    assert (pa.name, pb.name) == ("shot.png", "shot-1.png")
    assert pa.parent == pb.parent == tmp_path.resolve() / "train" / "box"
    assert np.array_equal(cv2.imread(str(pa)), a) and np.array_equal(cv2.imread(str(pb)), b)
    assert list((tmp_path / ".incoming").iterdir()) == []  # no temporary file left behind


def test_refused_requests_write_nothing(tmp_path: Path) -> None:
    ds = DatasetFolder(tmp_path)
    with pytest.raises(DatasetError, match="no tags"):
        ds.add_image(_image(), [])
    with pytest.raises(DatasetError, match="split"):
        ds.add_image(_image(), ["box"], split="test")
    with pytest.raises(DatasetError, match="not a readable"):
        ds.add_encoded(b"GIF89a nothing", ["box"], filename="x.gif")
    with pytest.raises(DatasetError, match="not a readable"):
        ds.add_encoded(b"", ["box"])
    assert not (tmp_path / "train").exists() and not (tmp_path / "val").exists()
    with pytest.raises(DatasetError):
        DatasetFolder(tmp_path, image_format="gif")


def test_uploads_are_decoded_and_re_encoded(tmp_path: Path) -> None:
    ds = DatasetFolder(tmp_path, image_format="png")
    image = _image(3)
    ok, data = cv2.imencode(".bmp", image)
    assert ok
    path = ds.add_encoded(data.tobytes(), ["Cup", "box"], "train", "up.bmp")
    assert path == tmp_path.resolve() / "train" / "box+cup" / "up.png"  # multi-label folder
    assert np.array_equal(cv2.imread(str(path)), image)
    (sample,) = list_samples(tmp_path)
    assert sample.tags == ("box", "cup") and sample.split == "train"


def test_stats_count_unreadable_files_as_skipped_and_ignore_foreign_folders(
    tmp_path: Path,
) -> None:
    ds = DatasetFolder(tmp_path)
    ds.add_image(_image(), ["box"], "train")
    (tmp_path / "train" / "box" / "bad.jpg").write_bytes(b"\xff\xd8\xff truncated")
    (tmp_path / "train" / "box" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "Not A Tag").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "Not A Tag" / "x.jpg"), _image())
    stats = ds.stats()
    assert (stats.images, stats.skipped) == (1, 1)
    assert stats.skipped_files == [str(tmp_path.resolve() / "train" / "box" / "bad.jpg")]
    assert len(list_samples(tmp_path)) == 2  # the trainer finds the bad one when reading it


def _config(root: Path, out: Path, **kw) -> TrainConfig:
    return TrainConfig(dataset=str(root), output_dir=str(out), **kw)


def test_plan_refuses_datasets_and_configs_that_cannot_train(tmp_path: Path) -> None:
    root, out = tmp_path / "ds", tmp_path / "out"
    with pytest.raises(TrainingError, match="no such folder"):
        plan_training(_config(root, out))
    ds = DatasetFolder(root)
    ds.add_image(_image(1), ["box"], "train")
    with pytest.raises(TrainingError, match="no images in val"):
        plan_training(_config(root, out))
    ds.add_image(_image(2), ["box"], "val")
    with pytest.raises(TrainingError, match="at least 2 tags"):
        plan_training(_config(root, out))
    ds.add_image(_image(3), ["cup"], "train")
    plan = plan_training(_config(root, out))
    assert plan.labels == ["box", "cup"] and not plan.multi_label
    assert (len(plan.train), len(plan.val), plan.start_epoch) == (2, 1, 1)
    with pytest.raises(TrainingError, match="nothing to resume"):
        plan_training(_config(root, out), resume=True)
    for bad, match in (
        ({"optimizer": "rmsprop"}, "adam or sgd"),
        ({"net": "resnet18"}, "net"),
        ({"width": 8}, "width"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"multi_label_threshold": 1.0}, "multi_label_threshold"),
    ):
        with pytest.raises(TrainingError, match=match):
            plan_training(_config(root, out, **bad))


def test_augmentation_keeps_a_valid_image_and_varies() -> None:
    image = _image(5, (120, 160))
    outs = [augment(image, np.random.default_rng(s)) for s in range(5)]
    for out in outs:
        assert out.dtype == np.uint8 and out.ndim == 3
        assert 0.5 * 120 <= out.shape[0] <= 120 and 0.5 * 160 <= out.shape[1] <= 160
    assert np.array_equal(
        augment(image, np.random.default_rng(7)), augment(image, np.random.default_rng(7))
    )
    assert len({o.tobytes() for o in outs}) == 5


def test_collate_drops_unreadable_items_and_names_them() -> None:
    torch = pytest.importorskip("torch")
    x = torch.zeros(3, 8, 8)
    xs, ys, bad = _collate([(x, 0, "a.jpg"), (None, 1, "b.jpg"), (x, 1, "c.jpg")])
    assert xs.shape == (2, 3, 8, 8) and ys.tolist() == [0, 1] and bad == ["b.jpg"]
    assert _collate([(None, 0, "b.jpg")]) == (None, None, ["b.jpg"])


def _side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    h = 240
    return np.hstack([cv2.resize(left, (320, h)), cv2.resize(right, (320, h))])


@pytest.mark.slow
def test_multi_label_dataset_trains_sigmoid_outputs_and_exports_a_loadable_model(
    tmp_path: Path,
) -> None:
    """Real frames: box alone, cup alone, box and cup side by side (tags box+cup)."""
    from edge_vision.models.zoo import load_classifier

    root, out = tmp_path / "ds", tmp_path / "out"
    ds = DatasetFolder(root)
    box = [f for _, f in read_frames(sample_video("box"), *TRAIN_RANGE, step=12)]
    cup = [f for _, f in read_frames(sample_video("cup"), *TRAIN_RANGE, step=6)]
    box_val = [f for _, f in read_frames(sample_video("box"), *HELD_OUT_RANGE, step=15)]
    cup_val = [f for _, f in read_frames(sample_video("cup"), *HELD_OUT_RANGE, step=8)]
    for i, (b, c) in enumerate(zip(box, cup, strict=False)):
        ds.add_image(b, ["box"], "train")
        ds.add_image(c, ["cup"], "train")
        ds.add_image(_side_by_side(b, c) if i % 2 else _side_by_side(c, b), ["box", "cup"], "train")
    for i, (b, c) in enumerate(zip(box_val, cup_val, strict=False)):
        ds.add_image(b, ["box"], "val")
        ds.add_image(c, ["cup"], "val")
        ds.add_image(_side_by_side(c, b) if i % 2 else _side_by_side(b, c), ["box", "cup"], "val")
    # A frozen backbone keeps ImageNet's batch-norm statistics: with 66 images that generalises
    # to the held-out composites far better than fine-tuning everything (0.4-0.7 in 5 epochs).
    config = _config(
        root,
        out,
        width=96,
        height=96,
        batch_size=12,
        epochs=4,
        threads=2,
        workers=1,  # images decoded in a DataLoader worker process
        learning_rate=0.01,
        freeze_backbone=True,
    )
    (root / "val" / "cup" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    assert plan_training(config).multi_label

    job = TrainingProcess()
    job.start(config)
    reports: list[dict] = []
    deadline = time.monotonic() + 600
    while not any(r["type"] == "end" for r in reports) and time.monotonic() < deadline:
        reports += job.poll()
        time.sleep(0.2)
    job.close()
    end = reports[-1]
    assert end["state"] == "finished", end
    epochs = [r for r in reports if r["type"] == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2, 3, 4]
    assert all(r["skipped_images"] == 1 for r in epochs)
    warnings = [r["message"] for r in reports if r["type"] == "warning"]
    assert len(warnings) == 1 and "broken.png" in warnings[0]  # once, not once per epoch
    best = epochs[-1]["best_val_accuracy"]
    assert best == max(r["val_accuracy"] for r in epochs) and best >= 0.8
    # Exported exactly when val accuracy beat every earlier epoch.
    for i, r in enumerate(epochs):
        better = r["val_accuracy"] > max([-1.0] + [e["val_accuracy"] for e in epochs[:i]])
        assert bool(r["exported"]) == better, (i, r)

    model_path = Path(epochs[-1]["best_model"])
    manifest = yaml.safe_load((model_path.parent / "model.yaml").read_text())
    assert manifest["decoder"]["type"] == "sigmoid"
    assert (model_path.parent / "labels.txt").read_text() == "box\ncup\n"
    assert (out / "best").resolve() == model_path.parent.resolve()
    assert not [p for p in (out / "models").iterdir() if p.name.startswith(".")]  # no temp dirs

    classifier = load_classifier(str(model_path))
    assert classifier.spec.multi_label and classifier.spec.labels == ("box", "cup")
    both = classifier.predict([_side_by_side(box_val[0], cup_val[0])])[0]
    assert (both >= 0.5).all(), both  # independent sigmoids: both tags present at once


_ORPHAN_SCRIPT = """
import sys, time
from edge_vision.training.trainer import TrainConfig, TrainingProcess
def main():
    job = TrainingProcess()
    job.start(TrainConfig(dataset=sys.argv[1], output_dir=sys.argv[2], width=32, height=32,
                          epochs=10000, freeze_backbone=True))
    print(job._proc.pid, flush=True)
    time.sleep(600)
if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
def test_training_process_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    """A node killed with SIGKILL cannot stop its job; the job notices and ends by itself."""
    import os
    import signal
    import subprocess
    import sys

    root = tmp_path / "ds"
    ds = DatasetFolder(root)
    for i, tag in enumerate(("box", "cup", "box", "cup")):
        ds.add_image(_image(i), [tag], "train" if i < 2 else "val")
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_SCRIPT)
    parent = subprocess.Popen(
        [sys.executable, str(script), str(root), str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # running
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)

        def gone() -> bool:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return True
            # A zombie until init reaps it counts as gone.
            return Path(f"/proc/{child}/status").read_text().find("State:\tZ") >= 0

        deadline = time.monotonic() + 120
        while not gone() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gone(), "the training process outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()

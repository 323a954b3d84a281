"""Real footage for training tests and benchmarks: OpenCV's box.mp4 and cup.mp4.

Debian ``opencv-doc`` ships them gzipped in its HTML documentation folder (hands turning a box,
and a cup, in front of a desk; 640x480, 456 and 217 frames). :func:`sample_video` unpacks one
into the cache once; :func:`read_frames` takes frames from a time range of it, so that training
and held-out frames can come from different parts of each video.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge_vision.models.human_models import cache_dir

OPENCV_HTML = Path("/usr/share/doc/opencv-doc/opencv4/html")
SAMPLE_VIDEOS = ("box", "cup")


def sample_video(name: str, cache: Path | None = None) -> Path:
    """The unpacked ``<name>.mp4`` (FileNotFoundError naming the package when missing)."""
    if name not in SAMPLE_VIDEOS:
        raise ValueError(f"{name!r} is not one of {SAMPLE_VIDEOS}")
    packed = OPENCV_HTML / f"{name}.mp4.gz"
    dest = (cache or cache_dir().parent / "media") / f"{name}.mp4"
    if dest.is_file():
        return dest
    if not packed.is_file():
        raise FileNotFoundError(f"{packed} missing: install Debian opencv-doc (make setup)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}")
    with gzip.open(packed, "rb") as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
    tmp.replace(dest)
    return dest


def frame_count(path: Path) -> int:
    """Frames that actually decode (the container's count can be off by a few)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def read_frames(
    path: Path, start: float = 0.0, stop: float = 1.0, step: int = 1
) -> Iterator[tuple[int, np.ndarray]]:
    """(index, BGR frame) for every ``step``-th frame in the [start, stop) fraction of the video."""
    total = frame_count(path)
    first, last = int(start * total), int(stop * total)
    cap = cv2.VideoCapture(str(path))
    try:
        for i in range(last):
            ok, frame = cap.read()
            if not ok:
                return
            if i >= first and (i - first) % step == 0:
                yield i, frame
    finally:
        cap.release()


TRAIN_RANGE = (0.0, 0.6)
"""Training frames: the first 60 % of each video."""
HELD_OUT_RANGE = (0.75, 1.0)
"""Validation / held-out frames: the last 25 %, after a 15 % gap (other poses and hand positions,
not near-duplicates of training frames)."""


def build_box_cup_dataset(
    root: Path, step: int = 4, image_format: str = "jpg", held_out_dir: Path | None = None
) -> dict[str, int]:
    """The two-class dataset (tags ``box`` and ``cup``): every ``step``-th frame of
    :data:`TRAIN_RANGE` into train/, of :data:`HELD_OUT_RANGE` into val/; with ``held_out_dir``
    also every held-out frame (all of them, not only every ``step``-th) into
    ``held_out_dir/<tag>/`` for playing to a classifier. Returns images per split."""
    from edge_vision.training.dataset import DatasetFolder

    folder = DatasetFolder(root, image_format=image_format)
    counts = {"train": 0, "val": 0, "held_out": 0}
    for tag in SAMPLE_VIDEOS:
        video = sample_video(tag)
        first_held_out = int(HELD_OUT_RANGE[0] * frame_count(video))
        for i, frame in read_frames(video, *TRAIN_RANGE, step=step):
            folder.add_image(frame, [tag], "train", f"{tag}-{i:04d}")
            counts["train"] += 1
        for i, frame in read_frames(video, *HELD_OUT_RANGE, step=1):
            if (i - first_held_out) % step == 0:
                folder.add_image(frame, [tag], "val", f"{tag}-{i:04d}")
                counts["val"] += 1
            if held_out_dir is not None:
                out = held_out_dir / tag
                out.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out / f"{tag}-{i:04d}.jpg"), frame)
                counts["held_out"] += 1
    return counts

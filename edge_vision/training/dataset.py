"""The dataset folder: layout, sanitised names, train/val split, label counts, adding images.

Layout (one folder per tag set, like jetson-inference's and torchvision's ImageFolder)::

    <root>/train/<tag>/<name>.jpg        an image with one tag
    <root>/train/<tag1>+<tag2>/<name>.jpg an image with several tags (multi-label), sorted, '+'
    <root>/val/<tag>/...

No manifest: the file system is the index, so images can be added, copied or deleted by hand and
a half-written manifest can never disagree with the files. Files are written to
``<root>/.incoming/`` first and hard-linked into place under a unique name, so a reader (the
trainer, a stats scan) never sees a partial image and two writers never overwrite each other.

Tags and file names are sanitised: lower case ``[a-z0-9_-]`` (other runs of characters become
one ``_``), no leading dots, at most 64 characters; a tag that is empty after that is refused.
Nothing a client sends can name a path outside ``<root>``.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "IMAGE_FORMATS",
    "IMAGE_SUFFIXES",
    "SPLITS",
    "DatasetError",
    "DatasetFolder",
    "DatasetStats",
    "Sample",
    "is_readable_image",
    "list_samples",
    "sanitize_filename",
    "sanitize_tag",
    "sanitize_tags",
    "tag_folder",
    "tags_of_folder",
]

SPLITS = ("train", "val")
IMAGE_FORMATS = ("jpg", "png")
"""Formats the dataset writes (``image_format``)."""
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
"""Files counted as images when scanning (hand-copied ones included)."""
TAG_SEPARATOR = "+"
MAX_NAME = 64
_UNSAFE = re.compile(r"[^a-z0-9_-]+")
_INCOMING = ".incoming"


class DatasetError(ValueError):
    """A request the dataset refuses (bad tag, bad split, unreadable image); nothing changed."""


def sanitize_tag(tag: str) -> str:
    """``"Red Cup"`` -> ``"red_cup"``; ``"../etc"`` -> ``"etc"``; DatasetError when empty."""
    clean = _UNSAFE.sub("_", str(tag).strip().lower()).strip("_-")[:MAX_NAME].strip("_-")
    if not clean:
        raise DatasetError(f"tag {tag!r} is empty after sanitising (allowed: a-z 0-9 _ -)")
    return clean


def sanitize_tags(tags: Iterable[str]) -> list[str]:
    """Sanitised, de-duplicated, sorted tags (blank entries dropped)."""
    return sorted({sanitize_tag(t) for t in tags if str(t).strip()})


def sanitize_filename(hint: str) -> str:
    """A safe file stem from a client's name hint: its last path component, sanitised,
    extension dropped (the stored format decides it); ``"image"`` when nothing is left."""
    base = re.split(r"[\\/]", str(hint))[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    clean = _UNSAFE.sub("_", stem.strip().lower()).strip("_-.")[:MAX_NAME]
    return clean or "image"


def tag_folder(tags: Sequence[str]) -> str:
    """The folder name of a tag set (tags already sanitised)."""
    if not tags:
        raise DatasetError("no tags: set the active tags first (set_tags) or give tags")
    return TAG_SEPARATOR.join(sorted(set(tags)))


def tags_of_folder(name: str) -> tuple[str, ...] | None:
    """The tag set a folder name stands for; None for a name that is not a tag folder."""
    if name.startswith("."):
        return None
    parts = name.split(TAG_SEPARATOR)
    try:
        clean = tuple(sanitize_tag(p) for p in parts)
    except DatasetError:
        return None
    return clean if clean == tuple(parts) else None


def is_readable_image(path: Path) -> bool:
    """True when OpenCV decodes the file into a non-empty image."""
    try:
        data = np.fromfile(path, np.uint8)
    except OSError:
        return False
    if data.size == 0:
        return False
    # Reduced decoding: a JPEG decodes at 1/8 size, which is enough to prove it is intact.
    image = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8)
    return image is not None and image.size > 0


@dataclass(frozen=True, slots=True)
class Sample:
    path: Path
    tags: tuple[str, ...]
    split: str


def list_samples(root: str | Path, split: str | None = None) -> list[Sample]:
    """Every image file under ``root`` (optionally of one split), sorted by path.

    Files are not opened here: unreadable ones are found by whoever reads them (the trainer
    skips and counts them; :meth:`DatasetFolder.stats` counts them as ``skipped``).
    """
    root = Path(root)
    out: list[Sample] = []
    for name in (split,) if split else SPLITS:
        base = root / name
        if not base.is_dir():
            continue
        for folder in sorted(base.iterdir()):
            tags = tags_of_folder(folder.name)
            if tags is None or not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                    out.append(Sample(path, tags, name))
    return out


@dataclass
class DatasetStats:
    root: str
    tags: list[str]
    train: list[int]
    val: list[int]
    images: int
    skipped: int
    skipped_files: list[str] = field(default_factory=list)

    def count(self, tag: str, split: str) -> int:
        if tag not in self.tags:
            return 0
        return (self.train if split == "train" else self.val)[self.tags.index(tag)]


class DatasetFolder:
    """Writes images into the layout above and keeps label counts; thread-safe.

    ``val_fraction`` decides the split of images added without an explicit one: for every tag
    set, an image goes to ``val`` while that tag set's val share is below the fraction, so a
    recording of 10 frames at 0.2 puts exactly 2 in val (deterministic, no random draw).
    """

    def __init__(
        self, root: str | Path, image_format: str = "jpg", val_fraction: float = 0.2
    ) -> None:
        if image_format not in IMAGE_FORMATS:
            raise DatasetError(f"image_format {image_format!r} is not one of {IMAGE_FORMATS}")
        if not 0.0 <= val_fraction < 1.0:
            raise DatasetError(f"val_fraction {val_fraction} must be in [0, 1)")
        self.root = Path(root).expanduser().resolve()
        self.image_format = image_format
        self.val_fraction = val_fraction
        self._lock = threading.Lock()
        # (path, size, mtime_ns) -> readable: a rescan decodes only new or changed files.
        self._readable: dict[tuple[str, int, int], bool] = {}
        self._split_counts: Counter[tuple[str, str]] = Counter()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / _INCOMING).mkdir(exist_ok=True)
        self._last = self._scan()

    # -- adding -------------------------------------------------------------------------------
    def choose_split(self, tags: Sequence[str], split: str = "") -> str:
        if split:
            if split not in SPLITS:
                raise DatasetError(f"split {split!r} is not 'train' or 'val' (or empty)")
            return split
        folder = tag_folder(tags)
        with self._lock:
            n_val = self._split_counts[(folder, "val")]
            total = n_val + self._split_counts[(folder, "train")]
        return "val" if n_val < self.val_fraction * (total + 1) else "train"

    def add_image(
        self, bgr: np.ndarray, tags: Sequence[str], split: str = "", name_hint: str = "frame"
    ) -> Path:
        """Encode ``bgr`` (uint8 HxWx3 or HxW) in ``image_format`` and store it; its path."""
        clean = sanitize_tags(tags)
        folder = tag_folder(clean)
        split = self.choose_split(clean, split)
        if bgr is None or bgr.size == 0 or bgr.dtype != np.uint8:
            raise DatasetError("not a uint8 image")
        ok, encoded = cv2.imencode(f".{self.image_format}", bgr)
        if not ok:
            raise DatasetError(f"cannot encode the image as {self.image_format}")
        return self._store(encoded.tobytes(), folder, split, sanitize_filename(name_hint))

    def add_encoded(
        self, data: bytes, tags: Sequence[str], split: str = "", filename: str = "upload"
    ) -> Path:
        """Decode an uploaded JPEG/PNG/BMP/WebP first (refused when unreadable: nothing is
        written), then store it re-encoded in ``image_format`` (no foreign payload kept)."""
        clean = sanitize_tags(tags)
        tag_folder(clean)  # refuse a missing tag before decoding anything
        self.choose_split(clean, split)  # and a bad split
        buf = np.frombuffer(bytes(data), np.uint8)
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if image is None or image.size == 0:
            raise DatasetError(
                f"{sanitize_filename(filename)!r}: {len(data)} bytes are not a readable "
                "JPEG/PNG/BMP/WebP image; nothing stored"
            )
        return self.add_image(image, clean, split, name_hint=filename)

    def _store(self, data: bytes, folder: str, split: str, stem: str) -> Path:
        dest_dir = self.root / split / folder
        dest_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.root / _INCOMING / f"{uuid.uuid4().hex}.{self.image_format}"
        tmp.write_bytes(data)
        try:
            with self._lock:
                n = 0
                while True:
                    name = (
                        f"{stem}.{self.image_format}"
                        if n == 0
                        else f"{stem}-{n}.{self.image_format}"
                    )
                    dest = dest_dir / name
                    try:
                        os.link(tmp, dest)  # fails if the name exists: never overwrites
                        break
                    except FileExistsError:
                        n += 1
                self._split_counts[(folder, split)] += 1
                st = dest.stat()
                self._readable[(str(dest), st.st_size, st.st_mtime_ns)] = True
                self._last = self._add_to_stats(self._last, folder, split)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    # -- counting -----------------------------------------------------------------------------
    def stats(self, rescan: bool = True) -> DatasetStats:
        """Label counts; ``rescan`` re-reads the folder (catches files changed by hand), else
        the counts kept up to date by this object's own writes."""
        if rescan:
            fresh = self._scan()
            with self._lock:
                self._last = fresh
        with self._lock:
            last = self._last
            return DatasetStats(
                last.root,
                list(last.tags),
                list(last.train),
                list(last.val),
                last.images,
                last.skipped,
                list(last.skipped_files),
            )

    def _scan(self) -> DatasetStats:
        counts: Counter[tuple[str, str]] = Counter()
        per_tag: dict[str, list[int]] = {}
        images = 0
        skipped: list[str] = []
        seen: dict[tuple[str, int, int], bool] = {}
        for sample in list_samples(self.root):
            try:
                st = sample.path.stat()
            except OSError:
                continue  # deleted meanwhile
            key = (str(sample.path), st.st_size, st.st_mtime_ns)
            readable = self._readable.get(key)
            if readable is None:
                readable = is_readable_image(sample.path)
            seen[key] = readable
            if not readable:
                skipped.append(str(sample.path))
                continue
            images += 1
            counts[(tag_folder(sample.tags), sample.split)] += 1
            for tag in sample.tags:
                per_tag.setdefault(tag, [0, 0])[SPLITS.index(sample.split)] += 1
        with self._lock:
            self._readable = seen
            self._split_counts = counts
        tags = sorted(per_tag)
        return DatasetStats(
            str(self.root),
            tags,
            [per_tag[t][0] for t in tags],
            [per_tag[t][1] for t in tags],
            images,
            len(skipped),
            skipped,
        )

    @staticmethod
    def _add_to_stats(stats: DatasetStats, folder: str, split: str) -> DatasetStats:
        tags = list(stats.tags)
        train, val = list(stats.train), list(stats.val)
        for tag in folder.split(TAG_SEPARATOR):
            if tag not in tags:
                i = next((k for k, t in enumerate(tags) if t > tag), len(tags))
                tags.insert(i, tag)
                train.insert(i, 0)
                val.insert(i, 0)
            (train if split == "train" else val)[tags.index(tag)] += 1
        return DatasetStats(
            stats.root, tags, train, val, stats.images + 1, stats.skipped, stats.skipped_files
        )

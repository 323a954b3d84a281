"""Where clips live: atomic publication, leftovers of crashes, quota and retention.

A clip is ``<name>.mp4`` with its sidecar ``<name>.json`` and optionally a rosbag2 folder
``<name>.rosbag2/``. While it is written, all of them live in a hidden folder ``.<name>.part/`` in
the same directory (so the same file system), and :meth:`ClipStorage.commit` renames them into
place: the bag, then the sidecar, then the video last. A rename is atomic, so a crash (kill -9,
power loss after the fsyncs) never leaves a partial file under a final name; the video's
appearance means the clip is complete. :meth:`ClipStorage.cleanup_leftovers` (run at start-up)
deletes ``.*.part`` folders and sidecars whose video never appeared.

Quota counts every complete clip's files (video, sidecar, bag) under the root, recursively;
retention deletes by age (file modification time of the video) and count. Oldest go first.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BAG_SUFFIX",
    "SIDECAR_FORMAT",
    "ClipPaths",
    "ClipStorage",
    "DiskFull",
    "QuotaExceeded",
    "StorageError",
    "StoredClip",
    "render_name",
]

SIDECAR_FORMAT = "edge_vision.clip/1"
# Not ".bag": rosbags' AnyReader takes a path ending in .bag for a ROS 1 bag.
BAG_SUFFIX = ".rosbag2"
_PART = ".part"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class StorageError(Exception):
    """A clip cannot be stored; the message says why (quota, full disk, permissions)."""


class QuotaExceeded(StorageError):
    pass


class DiskFull(StorageError):
    pass


def _safe(text: str, limit: int = 64) -> str:
    return _UNSAFE.sub("_", text).strip("._")[:limit]


def render_name(pattern: str, **fields: object) -> str:
    """A clip's relative path (without ``.mp4``) from ``pattern`` (``str.format`` fields such
    as ``{stream}``, ``{time:%Y%m%d-%H%M%S}``, ``{reason}``, ``{event_id}``). Text fields are
    reduced to letters, digits, ``.``, ``_`` and ``-``; ``/`` in the pattern makes folders."""
    safe = {k: _safe(v) if isinstance(v, str) else v for k, v in fields.items()}
    try:
        rendered = pattern.format(**safe)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(
            f"bad file name pattern {pattern!r}: {type(exc).__name__}: {exc}"
        ) from None
    parts = [_safe(p, 128) for p in rendered.split("/")]
    parts = [p for p in parts if p]
    if not parts:
        raise ValueError(f"file name pattern {pattern!r} gives an empty name")
    return "/".join(parts)


def check_pattern(pattern: str) -> str | None:
    """An error message for a pattern that cannot render, else None."""
    from datetime import datetime, timezone

    try:
        render_name(
            pattern,
            stream="s",
            time=datetime.now(timezone.utc),
            reason="r",
            event_id="e",
            seq=1,
        )
    except ValueError as exc:
        return str(exc)
    return None


@dataclass
class StoredClip:
    video: Path
    sidecar: Path
    bag: Path
    mtime: float
    bytes: int


@dataclass
class ClipPaths:
    """Where one clip is written (``temp_*``) and where it ends up."""

    temp_dir: Path
    video: Path
    sidecar: Path
    bag: Path

    @property
    def temp_video(self) -> Path:
        return self.temp_dir / self.video.name

    @property
    def temp_sidecar(self) -> Path:
        return self.temp_dir / self.sidecar.name

    @property
    def temp_bag(self) -> Path:
        return self.temp_dir / self.bag.name


def _tree_bytes(path: Path) -> int:
    if path.is_dir():
        total = 0
        for dirpath, _dirs, files in os.walk(path):
            for name in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ClipStorage:
    """Clips under ``root``. ``quota_bytes``/``max_age_s``/``max_files`` 0 = no limit;
    ``min_free_bytes``: refuse to start, and stop, a clip when the file system has less free.
    ``log(level, text)`` receives what was deleted and why. Not thread-safe: the recorder's
    writer thread is its only user while clips are written."""

    def __init__(
        self,
        root: str | Path,
        quota_bytes: int = 0,
        max_age_s: float = 0.0,
        max_files: int = 0,
        min_free_bytes: int = 0,
        log: Callable[[str, str], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self.max_age_s = max_age_s
        self.max_files = max_files
        self.min_free_bytes = min_free_bytes
        self._log = log or (lambda level, text: None)
        self.deleted = 0

    # -- scanning -------------------------------------------------------------------------------
    def ensure_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create output_dir {self.root}: {exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"output_dir {self.root} is not writable")

    def _walk(self):
        if not self.root.is_dir():
            return
        for dirpath, dirs, files in os.walk(self.root):
            # Hidden folders are ours in progress (.name.part) or somebody else's: skip them.
            dirs[:] = [d for d in dirs if not d.startswith(".") and not d.endswith(BAG_SUFFIX)]
            yield Path(dirpath), dirs, files

    def clips(self) -> list[StoredClip]:
        """Complete clips, oldest first."""
        found = []
        for folder, _dirs, files in self._walk():
            for name in files:
                if not name.endswith(".mp4") or name.startswith("."):
                    continue
                video = folder / name
                stem = name[: -len(".mp4")]
                sidecar, bag = folder / f"{stem}.json", folder / f"{stem}{BAG_SUFFIX}"
                try:
                    mtime = video.stat().st_mtime
                except OSError:
                    continue
                size = _tree_bytes(video) + _tree_bytes(sidecar) + _tree_bytes(bag)
                found.append(StoredClip(video, sidecar, bag, mtime, size))
        found.sort(key=lambda c: (c.mtime, str(c.video)))
        return found

    def used_bytes(self) -> int:
        return sum(c.bytes for c in self.clips())

    def free_bytes(self) -> int:
        try:
            return shutil.disk_usage(self.root).free
        except OSError:
            return 0

    # -- start-up -------------------------------------------------------------------------------
    def cleanup_leftovers(self) -> list[Path]:
        """Delete what a crash left: ``.*.part`` folders and sidecars without their video."""
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for dirpath, dirs, files in os.walk(self.root):
            folder = Path(dirpath)
            for name in list(dirs):
                if name.startswith(".") and name.endswith(_PART):
                    _remove(folder / name)
                    removed.append(folder / name)
            dirs[:] = [d for d in dirs if not d.startswith(".") and not d.endswith(BAG_SUFFIX)]
            for name in files:
                path = folder / name
                if name.startswith(".") and name.endswith(_PART):
                    _remove(path)
                    removed.append(path)
                elif (
                    name.endswith(".json")
                    and not (folder / f"{name[:-5]}.mp4").exists()
                    and self._is_sidecar(path)
                ):
                    _remove(folder / f"{name[:-5]}{BAG_SUFFIX}")
                    _remove(path)
                    removed.append(path)
        for path in removed:
            self._log("warning", f"removed leftover of an interrupted recording: {path}")
        return removed

    @staticmethod
    def _is_sidecar(path: Path) -> bool:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f).get("format") == SIDECAR_FORMAT
        except (OSError, ValueError, AttributeError):
            return False

    # -- quota and retention --------------------------------------------------------------------
    def delete(self, clip: StoredClip, why: str) -> None:
        # The video first: a crash half-way leaves an orphan sidecar, which start-up removes.
        for path in (clip.video, clip.sidecar, clip.bag):
            _remove(path)
        self.deleted += 1
        self._log("info", f"deleted {clip.video} ({clip.bytes / 1e6:.1f} MB): {why}")

    def enforce(
        self, reserve_bytes: int = 0, disk_reserve_bytes: int = 0, now: float | None = None
    ) -> list[StoredClip]:
        """Apply retention, make room for ``reserve_bytes`` more under the quota, then delete
        the oldest clips while the file system has less than ``min_free_bytes`` +
        ``disk_reserve_bytes`` free (only clips: what else fills the disk is not ours).

        Raises :class:`QuotaExceeded` when ``reserve_bytes`` alone is over the quota."""
        now = time.time() if now is None else now
        clips = self.clips()
        deleted: list[StoredClip] = []
        if self.max_age_s > 0:
            for clip in [c for c in clips if now - c.mtime > self.max_age_s]:
                self.delete(clip, f"older than retention ({self.max_age_s / 86400:g} days)")
                deleted.append(clip)
                clips.remove(clip)
        if self.max_files > 0:
            while len(clips) > self.max_files:
                clip = clips.pop(0)
                self.delete(clip, f"more than retention_max_files ({self.max_files}) clips")
                deleted.append(clip)
        if self.quota_bytes > 0:
            if reserve_bytes > self.quota_bytes:
                raise QuotaExceeded(
                    f"clip needs {reserve_bytes / 1e6:.1f} MB, more than the whole quota "
                    f"({self.quota_bytes / 1e6:.1f} MB)"
                )
            used = sum(c.bytes for c in clips)
            while clips and used + reserve_bytes > self.quota_bytes:
                clip = clips.pop(0)
                self.delete(clip, f"quota ({self.quota_bytes / 1e6:.1f} MB)")
                used -= clip.bytes
                deleted.append(clip)
        if self.min_free_bytes > 0 or disk_reserve_bytes > 0:
            while clips and self.free_bytes() - disk_reserve_bytes < self.min_free_bytes:
                clip = clips.pop(0)
                self.delete(clip, f"disk space (min_free_mb {self.min_free_bytes / 1e6:.0f})")
                deleted.append(clip)
        return deleted

    def check_free(self, reserve_bytes: int = 0, reclaimable_bytes: int = 0) -> None:
        """Raise :class:`DiskFull` when fewer than ``min_free_bytes`` would be left after
        writing ``reserve_bytes``, counting ``reclaimable_bytes`` (old clips that
        :meth:`enforce` may delete) as free."""
        if self.min_free_bytes <= 0 and reserve_bytes <= 0:
            return
        free = self.free_bytes()
        if free + reclaimable_bytes - reserve_bytes < self.min_free_bytes:
            need = f"; the clip needs about {reserve_bytes / 1e6:.1f} MB" if reserve_bytes else ""
            old = f" (+{reclaimable_bytes / 1e6:.1f} MB of old clips)" if reclaimable_bytes else ""
            raise DiskFull(
                f"disk full: {free / 1e6:.1f} MB free in {self.root}{old}{need}, and "
                f"{self.min_free_bytes / 1e6:.1f} MB must stay free (min_free_mb)"
            )

    # -- one clip -------------------------------------------------------------------------------
    def new_paths(self, relative: str) -> ClipPaths:
        """Final and temporary paths for a clip named ``relative`` (made unique with _2, _3...
        when taken). Creates the temporary folder."""
        target = self.root / relative
        if self.root.resolve() not in target.resolve().parents:
            raise StorageError(f"clip name {relative!r} leaves output_dir")
        folder, base = target.parent, target.name
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {folder}: {exc}") from exc
        for n in range(1, 10_000):
            name = base if n == 1 else f"{base}_{n}"
            paths = ClipPaths(
                temp_dir=folder / f".{name}{_PART}",
                video=folder / f"{name}.mp4",
                sidecar=folder / f"{name}.json",
                bag=folder / f"{name}{BAG_SUFFIX}",
            )
            if any(p.exists() for p in (paths.temp_dir, paths.video, paths.sidecar, paths.bag)):
                continue
            try:
                paths.temp_dir.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise StorageError(f"cannot create {paths.temp_dir}: {exc}") from exc
            return paths
        raise StorageError(f"no free name for {target}")

    def commit(self, paths: ClipPaths, fsync: bool = True) -> None:
        """Publish a finished clip: bag, sidecar, then the video (its appearance = complete)."""
        if fsync and paths.temp_bag.is_dir():
            for dirpath, _dirs, files in os.walk(paths.temp_bag):
                for name in files:
                    _fsync_file(Path(dirpath) / name)
        if paths.temp_bag.exists():
            os.rename(paths.temp_bag, paths.bag)
        if paths.temp_sidecar.exists():
            os.rename(paths.temp_sidecar, paths.sidecar)
        os.rename(paths.temp_video, paths.video)
        if fsync:
            _fsync_dir(paths.video.parent)
        _remove(paths.temp_dir)

    @staticmethod
    def discard(paths: ClipPaths) -> None:
        _remove(paths.temp_dir)

    @staticmethod
    def write_json(path: Path, data: dict, fsync: bool = True) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
            f.flush()
            if fsync:
                os.fsync(f.fileno())

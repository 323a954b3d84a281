"""Streams the dashboard starts: a ``video_source`` + ``detector`` pipeline per stream, run by
the project's launcher (``edge-vision launch``) as a process of its own.

The pipeline file and the launcher's pid are written to ``streams_dir``, so that any web
worker (or a restarted dashboard) can list and stop what was started; the running nodes
themselves are found in the ROS graph. Stopping sends SIGINT to the launcher, which stops its
nodes cleanly.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_vision.core.pipeline import PipelineError, parse_pipeline

__all__ = [
    "LaunchedStream",
    "StreamError",
    "launched_streams",
    "start_stream",
    "stop_stream",
    "stream_pipeline",
]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


class StreamError(ValueError):
    """A stream cannot be added or stopped; the message says why."""


@dataclass(frozen=True)
class LaunchedStream:
    name: str
    pid: int
    pipeline: Path
    alive: bool
    uri: str


def stream_pipeline(
    name: str, uri: str, model: str = "nanodet-m", fps: float = 0.0, score_threshold: float = 0.35
) -> dict[str, Any]:
    """The pipeline mapping for one stream in namespace ``name`` (checked by the launcher's
    own parser, so a bad value is refused here with the launcher's message)."""
    if not _NAME.match(name):
        raise StreamError(
            f"stream name {name!r}: letters, digits and _, starting with a letter (it becomes "
            "the ROS namespace)"
        )
    if not uri.strip():
        raise StreamError("uri is empty: a video file, rtsp://..., /dev/videoN, webrtc://...")
    if not model.strip():
        raise StreamError("model is empty: a zoo name (e.g. nanodet-m) or an imported model")
    if fps < 0:
        raise StreamError(f"fps {fps} < 0")
    doc = {
        "namespace": name,
        "nodes": [
            {
                "name": "video_source",
                "executable": "video_source",
                "parameters": {"uri": uri.strip(), "loop": True, "fps": float(fps)},
            },
            {
                "name": "detector",
                "executable": "detector",
                "remappings": {"image": "image_raw"},
                "parameters": {
                    "model": model.strip(),
                    "score_threshold": float(score_threshold),
                },
            },
        ],
    }
    try:
        parse_pipeline(doc)
    except PipelineError as exc:
        raise StreamError(str(exc)) from exc
    return doc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own exited child not yet reaped) is not running.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def launched_streams(streams_dir: str | Path) -> list[LaunchedStream]:
    """Streams started into ``streams_dir`` (alive or not), by name."""
    out = []
    for pid_file in sorted(Path(streams_dir).glob("*.pid")):
        pipeline = pid_file.with_suffix(".yaml")
        try:
            pid = int(pid_file.read_text().strip())
            doc = yaml.safe_load(pipeline.read_text())
            uri = str(doc["nodes"][0]["parameters"]["uri"])
        except (OSError, ValueError, KeyError, IndexError, TypeError, yaml.YAMLError):
            continue
        out.append(LaunchedStream(pid_file.stem, pid, pipeline, _alive(pid), uri))
    return out


def start_stream(
    streams_dir: str | Path,
    name: str,
    uri: str,
    model: str = "nanodet-m",
    fps: float = 0.0,
    score_threshold: float = 0.35,
) -> LaunchedStream:
    """Write the pipeline and start ``edge-vision launch`` on it (detached, own session)."""
    doc = stream_pipeline(name, uri, model, fps, score_threshold)
    directory = Path(streams_dir)
    directory.mkdir(parents=True, exist_ok=True)
    running = {s.name for s in launched_streams(directory) if s.alive}
    if name in running:
        raise StreamError(f"stream {name!r} is already running; stop it first")
    pipeline = directory / f"{name}.yaml"
    pipeline.write_text(yaml.safe_dump(doc, sort_keys=False))
    log = open(directory / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge_vision.cli.main", "launch", str(pipeline)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives a web worker's restart; stopped by pid
        )
    finally:
        log.close()
    (directory / f"{name}.pid").write_text(str(process.pid))
    return LaunchedStream(name, process.pid, pipeline, True, uri)


def stop_stream(streams_dir: str | Path, name: str, timeout: float = 10.0) -> bool:
    """SIGINT the stream's launcher (it stops its nodes), SIGKILL its group after ``timeout``.
    Returns False when no such stream was started here."""
    found = {s.name: s for s in launched_streams(streams_dir)}
    stream = found.get(name)
    if stream is None:
        return False
    if stream.alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stream.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout
        while _alive(stream.pid) and time.monotonic() < deadline:
            _reap(stream.pid)
            time.sleep(0.1)
        if _alive(stream.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(stream.pid, signal.SIGKILL)
        _reap(stream.pid)
    for suffix in (".pid", ".yaml"):
        Path(streams_dir, name + suffix).unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    # Not our child when another worker started it: nothing to reap then.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)

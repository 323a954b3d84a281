"""A real RTSP server for tests: GStreamer's gst-rtsp-server fed with numpy test frames.

``RtspTestServer`` runs the server as a child process (``python -m
edge_vision.testing.rtsp_server``), so ``stop()`` really drops every connection the way a
crashed camera or server does, and ``start()`` again on the same port simulates it coming
back. The child listens on 127.0.0.1 only.

Frames are ``edge_vision.sources.test_pattern.render_pattern`` images pushed in real time
into ``appsrc ! videoconvert ! x264enc tune=zerolatency ! rtph264pay``; each carries its
frame index and the wall-clock milliseconds it was produced at (``read_pattern_code``), so
receivers can check continuity and measure latency.

Needs Debian ``gir1.2-gst-rtsp-server-1.0``, ``gstreamer1.0-plugins-{base,good,bad,ugly}``
and PyGObject (in a pyenv venv: ``pip install "pygobject<3.51"``, see PLATFORM.md).
Use ``rtsp_server_unavailable_reason()`` to skip tests cleanly where they are missing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType
from typing import IO, Any

__all__ = ["RtspTestServer", "find_free_port", "main", "rtsp_server_unavailable_reason"]

_READY = "RTSP-SERVER-READY"


def find_free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rtsp_server_unavailable_reason() -> str | None:
    """None if the GStreamer RTSP server can run here, else why not (for ``pytest.skip``)."""
    result = subprocess.run(
        [sys.executable, "-m", "edge_vision.testing.rtsp_server", "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_env(),
        check=False,
    )
    if result.returncode == 0:
        return None
    return (result.stderr.strip() or result.stdout.strip() or "check failed").splitlines()[-1]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child must import this package from the same tree as the parent.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class RtspTestServer:
    """Serve a moving test pattern at ``rtsp://127.0.0.1:<port>/<mount>``.

    ``port=None`` picks a free port on the first ``start()`` and keeps it, so ``stop()`` +
    ``start()`` reuses it. Usable as a context manager (start on enter, stop on exit).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        width: int = 320,
        height: int = 240,
        fps: int = 15,
        mount: str = "/test",
        bitrate_kbps: int = 800,
        startup_timeout_s: float = 15.0,
    ) -> None:
        self._port = port
        self._width = width
        self._height = height
        self._fps = fps
        self._mount = mount if mount.startswith("/") else f"/{mount}"
        self._bitrate = bitrate_kbps
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = find_free_port()
        return self._port

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self._mount}"

    @property
    def size(self) -> tuple[int, int]:
        return (self._width, self._height)

    @property
    def fps(self) -> int:
        return self._fps

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def pause(self) -> None:
        """Freeze the server process (SIGSTOP): connections stay open but go silent, like a
        hung camera. ``resume()`` continues it."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def start(self) -> None:
        """Start the server and return once it accepts connections."""
        if self.running:
            return
        # Lives as long as the child; closed in stop().
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        command = [
            sys.executable,
            "-m",
            "edge_vision.testing.rtsp_server",
            f"--port={self.port}",
            f"--width={self._width}",
            f"--height={self._height}",
            f"--fps={self._fps}",
            f"--mount={self._mount}",
            f"--bitrate={self._bitrate}",
        ]
        # The child's log goes to a file: a pipe nobody reads could fill and stall it.
        self._proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=_child_env(),
        )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                raise RuntimeError(
                    f"RTSP test server did not start within {self._startup_timeout_s} s"
                )
            ready, _, _ = select.select([self._proc.stdout], [], [], remaining)
            if not ready:
                continue
            line = self._proc.stdout.readline()
            if line.startswith(_READY):
                return
            if not line:  # the child exited
                log = self._read_log()
                self.stop()
                raise RuntimeError(f"RTSP test server failed to start: {log or 'no output'}")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the server; all clients see their connection close."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused child cannot handle SIGTERM
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _read_log(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().strip()[-2000:]

    def __enter__(self) -> RtspTestServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# -- the child process ------------------------------------------------------------------------


def _import_gst() -> tuple[Any, Any, Any, Any]:
    import gi  # only in the child: test processes need not load GObject

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    gi.require_version("GstVideo", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer, GstVideo

    Gst.init(None)
    return GLib, Gst, GstRtspServer, GstVideo


def _check() -> int:
    try:
        _, gst, _, _ = _import_gst()
    except (ImportError, ValueError) as exc:
        print(f"GStreamer RTSP server bindings not available: {exc}", file=sys.stderr)
        return 1
    missing = [
        name
        for name in ("appsrc", "videoconvert", "x264enc", "rtph264pay")
        if gst.ElementFactory.find(name) is None
    ]
    if missing:
        print(f"GStreamer elements missing: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    import numpy as np

    from edge_vision.sources.test_pattern import render_pattern

    glib, gst, rtsp, gst_video = _import_gst()
    width, height, fps = args.width, args.height, args.fps
    # x264 at ultrafast/zerolatency with one thread: the build machines have 2 shared cores.
    # key-int-max = fps gives a keyframe every second, so a reconnecting client starts fast.
    launch = (
        f"( appsrc name=src is-live=true do-timestamp=true format=time "
        f"caps=video/x-raw,format=BGR,width={width},height={height},framerate={fps}/1 "
        f"! videoconvert ! video/x-raw,format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast threads=1 "
        f"bitrate={args.bitrate} key-int-max={fps} "
        f"! rtph264pay name=pay0 pt=96 config-interval=-1 )"
    )
    server = rtsp.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = rtsp.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)  # one encoder however many clients
    state: dict[str, Any] = {"appsrc": None, "index": 0, "want_key": False}

    def on_media_configure(_factory: Any, media: Any) -> None:
        state["appsrc"] = media.get_element().get_by_name_recurse_up("src")
        media.connect("unprepared", lambda _m: state.update(appsrc=None))

    def on_client_connected(_server: Any, client: Any) -> None:
        # The encoder's first keyframe is made while the media is prepared, before PLAY,
        # so a joining client would wait up to a keyframe interval; give it one now.
        client.connect("play-request", lambda _c, _ctx: state.update(want_key=True))

    factory.connect("media-configure", on_media_configure)
    server.connect("client-connected", on_client_connected)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 2

    def push_frame() -> bool:
        # Frames are produced on a timer, like a camera, whether or not anyone watches; the
        # index keeps counting so receivers can see what they missed.
        index = state["index"]
        state["index"] = index + 1
        appsrc = state["appsrc"]
        if appsrc is not None:
            if state["want_key"]:
                state["want_key"] = False
                appsrc.send_event(
                    gst_video.video_event_new_downstream_force_key_unit(
                        gst.CLOCK_TIME_NONE, gst.CLOCK_TIME_NONE, gst.CLOCK_TIME_NONE, True, 0
                    )
                )
            image = render_pattern(index, width, height, stamp_ms=time.time_ns() // 1_000_000)
            buffer = gst.Buffer.new_wrapped(np.ascontiguousarray(image).tobytes())
            appsrc.emit("push-buffer", buffer)
        return True

    loop = glib.MainLoop()
    glib.timeout_add(max(1, round(1000 / fps)), push_frame)
    for signum in (signal.SIGTERM, signal.SIGINT):
        glib.unix_signal_add(glib.PRIORITY_HIGH, signum, lambda: loop.quit() or False)
    print(f"{_READY} {args.port}", flush=True)
    loop.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RTSP test-pattern server on 127.0.0.1")
    parser.add_argument("--port", type=int, default=8554)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--mount", default="/test")
    parser.add_argument("--bitrate", type=int, default=800, help="kbit/s")
    parser.add_argument("--check", action="store_true", help="only check the dependencies")
    args = parser.parse_args(argv)
    if args.check:
        return _check()
    with contextlib.suppress(KeyboardInterrupt):
        return _serve(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

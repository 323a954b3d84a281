"""Process supervisor behind ``edge-vision launch`` (no rclpy, no ``launch`` package).

Each process runs in its own session/process group so that a terminal Ctrl-C reaches only
the supervisor, which then stops the children in order: SIGINT to every group, wait up to
``stop_timeout``, then SIGTERM, wait, then SIGKILL. A further Ctrl-C during shutdown skips
to the next step. Output (stdout and stderr merged) is copied line by line, prefixed
``[name]``.

A process that exits with code 0 has finished its work and is left alone. One that exits
non-zero or is killed by a signal we did not send has crashed: with ``respawn`` it is
restarted after ``respawn_delay`` seconds, doubling on each further crash up to
``max_respawn_delay``; the delay goes back to ``respawn_delay`` once a run has stayed up
for ``stable_after`` seconds. Without ``respawn`` the crash is reported, the other processes
keep running and :meth:`Supervisor.run` returns 1 once everything has stopped. Exit code 2
(:data:`CONFIG_ERROR_EXIT_CODE`: argparse usage errors, and what the nodes' ``run_node``
returns for a configuration error) is never respawned, since a restart with the same command
line cannot help; it counts as a failure like any other unrespawned crash.

Children get DDS discovery limited to this host unless the user chose otherwise, see
:func:`apply_discovery_defaults`. If the supervisor itself is SIGKILLed its children
survive (they are in their own sessions); run it under systemd (KillMode=control-group)
or similar where that matters.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, TextIO

from edge_vision.core.dds import (
    DISCOVERY_RANGE_VAR,
    LOCALHOST_ONLY_VAR,
    apply_discovery_defaults,
)
from edge_vision.core.pipeline import NodeSpec

__all__ = [
    "CONFIG_ERROR_EXIT_CODE",
    "DISCOVERY_RANGE_VAR",
    "LOCALHOST_ONLY_VAR",
    "ProcessSpec",
    "ProcessStatus",
    "Supervisor",
    "apply_discovery_defaults",
]

CONFIG_ERROR_EXIT_CODE = 2
MIN_RESPAWN_DELAY = 0.1
"""Floor for doubled delays, so a respawn_delay of 0 cannot turn into a busy restart loop."""


@dataclass(frozen=True)
class ProcessSpec:
    """What to run: an explicit command line plus respawn policy and extra environment."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    respawn: bool = True
    respawn_delay: float = 1.0
    cwd: str | None = None

    @classmethod
    def for_module(
        cls, name: str, module: str, args: Sequence[str] = (), **kwargs: object
    ) -> ProcessSpec:
        """Run ``python -m module *args`` with this interpreter."""
        return cls(name, (sys.executable, "-m", module, *args), **kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_node(
        cls, spec: NodeSpec, params_dir: str | os.PathLike[str], label: str | None = None
    ) -> ProcessSpec:
        """A pipeline node; its params file is written into ``params_dir`` now."""
        params_file = spec.write_params_file(params_dir)
        return cls(
            name=label or spec.name,
            command=tuple(spec.command(params_file)),
            env=dict(spec.env),
            respawn=spec.respawn,
            respawn_delay=spec.respawn_delay,
        )


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int | None
    """PID of the current run, None while waiting to respawn or after it ended."""
    restarts: int
    next_respawn_delay: float


@dataclass
class _Child:
    spec: ProcessSpec
    next_delay: float
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    respawn_at: float | None = None
    restarts: int = 0


class Supervisor:
    """Runs processes, copies their output, respawns crashes, stops them all on request."""

    def __init__(
        self,
        processes: Iterable[ProcessSpec],
        *,
        max_respawn_delay: float = 30.0,
        stable_after: float = 10.0,
        stop_timeout: float = 5.0,
        poll_interval: float = 0.05,
        output: TextIO | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        specs = list(processes)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"process names must be unique: {names}")
        self._children = [_Child(spec=s, next_delay=s.respawn_delay) for s in specs]
        self.max_respawn_delay = max_respawn_delay
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self._output: TextIO = output if output is not None else sys.stdout
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._write_lock = threading.Lock()
        self._readers: list[threading.Thread] = []
        # Plain attributes, not Events: signal handlers only assign/increment them, which
        # cannot deadlock against the main loop the way taking a lock inside a handler can.
        self._stop_requested = False
        self._signals = 0
        self._failed = False
        self._started = False

    # ------------------------------------------------------------------ public API

    def run(self, install_signal_handlers: bool = True) -> int:
        """Supervise until stopped or until no process is left; 0 = ok, 1 = a node failed.

        ``install_signal_handlers`` makes SIGINT/SIGTERM request a clean stop; it must be
        False when called from a thread other than the main one (use request_stop()).
        """
        if self._started:
            raise RuntimeError("a Supervisor can only run once")
        self._started = True
        previous: dict[int, object] = {}
        if install_signal_handlers:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            for child in self._children:
                self._start(child)
            while not self._stop_requested:
                now = time.monotonic()
                active = False
                for child in self._children:
                    if child.proc is not None and (code := child.proc.poll()) is not None:
                        self._on_exit(child, code, now)
                    if child.respawn_at is not None and now >= child.respawn_at:
                        child.restarts += 1
                        self._start(child)
                    active = active or child.proc is not None or child.respawn_at is not None
                if not active:
                    break
                time.sleep(self.poll_interval)
            self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)  # type: ignore[arg-type]
        return 1 if self._failed else 0

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop all processes and return (safe from any thread)."""
        self._stop_requested = True

    def status(self) -> list[ProcessStatus]:
        out = []
        for child in self._children:
            proc = child.proc
            out.append(
                ProcessStatus(
                    name=child.spec.name,
                    pid=proc.pid if proc is not None and proc.returncode is None else None,
                    restarts=child.restarts,
                    next_respawn_delay=child.next_delay,
                )
            )
        return out

    # ------------------------------------------------------------------ internals

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        self._stop_requested = True

    def _log(self, message: str) -> None:
        self._write(f"[edge-vision] {message}")

    def _write(self, line: str) -> None:
        with self._write_lock:
            try:
                self._output.write(line + "\n")
                self._output.flush()
            except (OSError, ValueError):
                pass  # closed or broken output (e.g. piped into `head`) must not kill nodes

    def _child_env(self, spec: ProcessSpec) -> dict[str, str]:
        env = {**self._base_env, **spec.env}
        apply_discovery_defaults(env)
        env.setdefault("PYTHONUNBUFFERED", "1")  # pipes would otherwise delay python output
        isatty = getattr(self._output, "isatty", None)
        if isatty is not None and isatty():
            env.setdefault("RCUTILS_COLORIZED_OUTPUT", "1")  # rcutils sees a pipe, not our tty
        return env

    def _start(self, child: _Child) -> None:
        if self._stop_requested:
            return
        child.respawn_at = None
        now = time.monotonic()
        child.started_at = now
        try:
            proc = subprocess.Popen(
                list(child.spec.command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._child_env(child.spec),
                cwd=child.spec.cwd,
                start_new_session=True,  # own process group: terminal Ctrl-C stays with us
            )
        except OSError as exc:
            self._crashed(child, now, 0.0, f"could not start ({exc})")
            return
        child.proc = proc
        self._log(f"started {child.spec.name} (pid {proc.pid})")
        assert proc.stdout is not None
        reader = threading.Thread(
            target=self._pump,
            args=(child.spec.name, proc.stdout),
            name=f"output-{child.spec.name}",
            daemon=True,
        )
        reader.start()
        self._readers.append(reader)

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        prefix = f"[{name}] "
        with stream:
            for raw in iter(stream.readline, b""):
                self._write(prefix + raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _on_exit(self, child: _Child, code: int, now: float) -> None:
        assert child.proc is not None
        name, pid, uptime = child.spec.name, child.proc.pid, now - child.started_at
        child.proc = None
        _killpg(pid, signal.SIGKILL)  # leftovers the node started in its group
        if code == 0:
            self._log(f"{name} (pid {pid}) exited cleanly; not restarting it")
            return
        if code == CONFIG_ERROR_EXIT_CODE:
            self._failed = True
            self._log(
                f"{name} (pid {pid}) exited with code {code} (bad configuration); not respawning"
            )
            return
        self._crashed(child, now, uptime, f"{name} (pid {pid}) {_describe_exit(code)}")

    def _crashed(self, child: _Child, now: float, uptime: float, reason: str) -> None:
        spec = child.spec
        if not spec.respawn:
            self._failed = True
            self._log(f"{reason}; respawn is off")
            return
        if uptime >= self.stable_after:
            child.next_delay = spec.respawn_delay
        delay = child.next_delay
        child.respawn_at = now + delay
        ceiling = max(self.max_respawn_delay, spec.respawn_delay)
        child.next_delay = min(max(delay * 2.0, MIN_RESPAWN_DELAY), ceiling)
        self._log(f"{reason} after {uptime:.1f} s; respawning in {delay:.2f} s")

    def _stop_all(self) -> None:
        for child in self._children:
            child.respawn_at = None
        running = [c for c in self._children if c.proc is not None]
        # Only groups alive now: an old group's id may since have been reused by the OS.
        groups = [c.proc.pid for c in running if c.proc is not None]
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            running = [c for c in running if c.proc is not None and c.proc.poll() is None]
            if not running:
                break
            names = ", ".join(c.spec.name for c in running)
            self._log(f"stopping {names} ({signal.Signals(sig).name})")
            for c in running:
                assert c.proc is not None
                _killpg(c.proc.pid, sig)
            mark = self._signals
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline:
                if all(c.proc is None or c.proc.poll() is not None for c in running):
                    break
                if self._signals > mark:
                    break  # another Ctrl-C: the user does not want to wait, escalate now
                time.sleep(self.poll_interval)
        for pgid in groups:
            _killpg(pgid, signal.SIGKILL)  # grandchildren that outlived their node
        for child in self._children:
            child.proc = None
        for reader in self._readers:
            reader.join(timeout=1.0)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, sig)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"

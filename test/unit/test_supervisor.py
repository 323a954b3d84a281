"""The process supervisor with real child processes (small Python stand-ins, no ROS)."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_vision.core.pipeline import parse_pipeline
from edge_vision.core.supervisor import (
    DISCOVERY_RANGE_VAR,
    LOCALHOST_ONLY_VAR,
    ProcessSpec,
    Supervisor,
    apply_discovery_defaults,
)

REPO = Path(__file__).resolve().parents[2]
ENV_KEYS = [DISCOVERY_RANGE_VAR, LOCALHOST_ONLY_VAR, "ROS_DOMAIN_ID", "PYTHONUNBUFFERED", "EXTRA"]

# One stand-in node; argv: MODE LOGFILE. Each run appends a JSON line (after its signal
# handlers are in place), then behaves as MODE says.
STANDIN = textwrap.dedent(
    """\
    import json, os, signal, subprocess, sys, time

    mode, log = sys.argv[1], sys.argv[2]
    run = 1 + (sum(1 for _ in open(log)) if os.path.exists(log) else 0)
    if mode in ("graceful", "grandchild"):
        signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    if mode in ("ignore_int", "stubborn"):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    entry = {"pid": os.getpid(), "t": time.time(), "argv": sys.argv[1:],
             "env": {k: os.environ.get(k) for k in KEYS}}
    if mode == "grandchild":
        code = ("import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)")
        entry["grandchild"] = subprocess.Popen([sys.executable, "-c", code]).pid
    with open(log, "a") as f:
        f.write(json.dumps(entry) + "\\n")
    print(f"ready run {run}", flush=True)
    if mode == "crash" or (mode == "stable_third" and run != 3):
        sys.exit(1)
    if mode == "stable_third":
        time.sleep(0.5)
        sys.exit(1)
    if mode.startswith("exit"):
        sys.exit(int(mode[4:]))
    while True:
        time.sleep(0.05)
    """
).replace("KEYS", repr(ENV_KEYS))


@pytest.fixture
def standin(tmp_path: Path) -> Callable[..., ProcessSpec]:
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)

    def make(name: str, mode: str, **kwargs: Any) -> ProcessSpec:
        command = (sys.executable, str(script), mode, str(tmp_path / f"{name}.log"))
        return ProcessSpec(name, command, **kwargs)

    return make


def runs(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    path = tmp_path / f"{name}.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie nobody reaped yet is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class Background:
    """A Supervisor running in a thread, with its output captured."""

    def __init__(self, specs: list[ProcessSpec], **kwargs: Any) -> None:
        self.output = io.StringIO()
        self.supervisor = Supervisor(specs, output=self.output, **kwargs)
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.code = self.supervisor.run(install_signal_handlers=False)

    def stop(self, timeout: float = 10.0) -> int | None:
        self.supervisor.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "supervisor did not stop"
        return self.code

    def delays(self) -> list[float]:
        return [float(d) for d in re.findall(r"respawning in ([0-9.]+) s", self.output.getvalue())]


@pytest.fixture
def background() -> Iterator[Callable[..., Background]]:
    started: list[Background] = []

    def start(specs: list[ProcessSpec], **kwargs: Any) -> Background:
        started.append(Background(specs, **kwargs))
        return started[-1]

    yield start
    for bg in started:  # never leave processes behind, even when a test failed
        if bg.thread.is_alive():
            bg.stop()


def test_respawns_after_kill_9(tmp_path: Path, standin: Any, background: Any) -> None:
    bg = background([standin("worker", "forever", respawn_delay=0.5)], stop_timeout=1.0)
    first = wait_for(lambda: runs(tmp_path, "worker"), 5, "first start")[0]["pid"]
    killed_at = time.time()
    os.kill(first, signal.SIGKILL)
    second = wait_for(lambda: runs(tmp_path, "worker")[1:], 3, "respawn")[0]
    assert second["pid"] != first
    assert not alive(first) and alive(second["pid"])
    assert 0.5 <= second["t"] - killed_at < 0.5 + 1.5  # waited the delay, then restarted
    assert bg.supervisor.status()[0].pid == second["pid"]
    assert bg.supervisor.status()[0].restarts == 1
    # The child's output is relayed by a reader thread: give it a moment on a loaded machine.
    wait_for(lambda: "[worker] ready run 2" in bg.output.getvalue(), 5, "relayed output")
    out = bg.output.getvalue()
    assert f"worker (pid {first}) was killed by SIGKILL" in out
    assert "[worker] ready run 1" in out
    assert bg.delays() == [0.5]
    assert bg.stop() == 0
    assert not alive(second["pid"])
    assert len(runs(tmp_path, "worker")) == 2


def test_backoff_doubles_on_repeated_crashes(tmp_path: Path, standin: Any, background: Any) -> None:
    bg = background(
        [standin("crasher", "crash", respawn_delay=0.2)], max_respawn_delay=10, stable_after=5
    )
    wait_for(lambda: len(runs(tmp_path, "crasher")) >= 4, 6, "4 runs")
    bg.stop()
    assert bg.delays()[:3] == [0.2, 0.4, 0.8]
    starts = runs(tmp_path, "crasher")[:4]
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(starts)]
    for gap, delay in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        assert delay <= gap < delay + 0.4, gaps  # the restart really waited, and not much more
    assert "crasher (pid" in bg.output.getvalue() and "exited with code 1" in bg.output.getvalue()


def test_backoff_is_capped_and_resets_after_a_stable_run(
    tmp_path: Path, standin: Any, background: Any
) -> None:
    # Runs 1, 2, 4, 5 crash at once; run 3 stays up 0.5 s (> stable_after) before crashing.
    bg = background(
        [standin("flaky", "stable_third", respawn_delay=0.1)],
        max_respawn_delay=0.15,
        stable_after=0.4,
    )
    wait_for(lambda: len(runs(tmp_path, "flaky")) >= 5, 6, "5 runs")
    bg.stop()
    assert bg.delays()[:4] == [0.1, 0.15, 0.1, 0.15]


def test_failure_of_a_non_respawning_node_gives_nonzero_exit(tmp_path: Path, standin: Any) -> None:
    specs = [
        standin("fails", "crash", respawn=False),
        standin("done", "exit0"),  # a clean exit is finished work: never respawned
        standin("misconfigured", "exit2"),  # exit code 2 = bad configuration: not respawned
    ]
    out = io.StringIO()
    code = Supervisor(specs, output=out).run(install_signal_handlers=False)
    assert code == 1
    for name in ("fails", "done", "misconfigured"):
        assert len(runs(tmp_path, name)) == 1, name
    assert "respawn is off" in out.getvalue() and "bad configuration" in out.getvalue()
    out = io.StringIO()
    assert Supervisor([standin("ok", "exit0")], output=out).run(False) == 0


def test_child_environment(tmp_path: Path, standin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DISCOVERY_RANGE_VAR, raising=False)
    monkeypatch.delenv(LOCALHOST_ONLY_VAR, raising=False)
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    base = {"PATH": os.environ.get("PATH", ""), "ROS_DOMAIN_ID": "7"}
    specs = [
        standin("default", "exit0", env={"EXTRA": "x"}),  # inherits os.environ
    ]
    assert Supervisor(specs, output=io.StringIO()).run(False) == 0
    env = runs(tmp_path, "default")[0]["env"]
    assert env[DISCOVERY_RANGE_VAR] == "LOCALHOST"
    assert env[LOCALHOST_ONLY_VAR] == "1"
    assert env["ROS_DOMAIN_ID"] == "42"
    assert env["EXTRA"] == "x" and env["PYTHONUNBUFFERED"] == "1"

    # An explicit choice, from the user's environment or the pipeline's env, is respected.
    specs = [
        standin("subnet", "exit0", env={DISCOVERY_RANGE_VAR: "SUBNET"}),
        standin("humble", "exit0", env={LOCALHOST_ONLY_VAR: "0"}),
    ]
    assert Supervisor(specs, output=io.StringIO(), base_env=base).run(False) == 0
    subnet, humble = runs(tmp_path, "subnet")[0]["env"], runs(tmp_path, "humble")[0]["env"]
    assert subnet[DISCOVERY_RANGE_VAR] == "SUBNET" and subnet[LOCALHOST_ONLY_VAR] is None
    assert humble[DISCOVERY_RANGE_VAR] is None and humble[LOCALHOST_ONLY_VAR] == "0"
    assert subnet["ROS_DOMAIN_ID"] == "7"

    env2: dict[str, str] = {DISCOVERY_RANGE_VAR: ""}  # empty counts as unset, as in rcl
    assert apply_discovery_defaults(env2) and env2[DISCOVERY_RANGE_VAR] == "LOCALHOST"


def test_module_and_node_specs(tmp_path: Path) -> None:
    (tmp_path / "standin_mod.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    spec = ProcessSpec.for_module(
        "mod", "standin_mod", ["a", "b"], env={"PYTHONPATH": str(tmp_path)}, respawn=False
    )
    out = io.StringIO()
    assert Supervisor([spec], output=out).run(False) == 0
    assert '[mod] ["a", "b"]' in out.getvalue()

    node = {"name": "n", "executable": "video_source", "parameters": {"fps": 2.0}}
    pipeline = parse_pipeline({"nodes": [{**node, "respawn_delay": 3}]})
    from_node = ProcessSpec.from_node(pipeline.nodes[0], tmp_path)
    assert from_node.command[:3] == (sys.executable, "-m", "edge_vision.nodes.video_source")
    params_file = Path(from_node.command[from_node.command.index("--params-file") + 1])
    assert params_file.read_text().startswith("/n:\n  ros__parameters:\n    fps: 2.0")
    assert from_node.respawn and from_node.respawn_delay == 3.0 and from_node.name == "n"


def test_ctrl_c_stops_every_child_and_exits_0(tmp_path: Path) -> None:
    (tmp_path / "standin.py").write_text(STANDIN)
    driver = tmp_path / "driver.py"
    driver.write_text(
        textwrap.dedent(
            f"""\
            import sys
            from edge_vision.core.supervisor import ProcessSpec, Supervisor
            def spec(name, mode):
                return ProcessSpec(name, (sys.executable, {str(tmp_path / "standin.py")!r},
                                          mode, {str(tmp_path)!r} + f"/{{name}}.log"))
            names = ["graceful", "ignore_int", "stubborn", "grandchild"]
            sys.exit(Supervisor([spec(n, n) for n in names], stop_timeout=0.5).run())
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(driver)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        names = ["graceful", "ignore_int", "stubborn", "grandchild"]
        wait_for(lambda: all(runs(tmp_path, n) for n in names), 10, "all children up")
        pids = [runs(tmp_path, n)[0]["pid"] for n in names]
        pids.append(runs(tmp_path, "grandchild")[0]["grandchild"])
        assert all(alive(pid) for pid in pids)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output
    assert [pid for pid in pids if alive(pid)] == []
    assert "(SIGINT)" in output and "(SIGTERM)" in output and "(SIGKILL)" in output
    assert "stopping stubborn (SIGKILL)" in output  # only the one that ignored SIGTERM too
    assert elapsed < 5, output  # two 0.5 s stop steps, not the default timeouts
    assert all(len(runs(tmp_path, n)) == 1 for n in names)  # nothing was respawned

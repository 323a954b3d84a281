"""Run nodes as real processes and talk to them over real DDS, for tests and benchmarks.

Nothing here mocks rclpy: :class:`NodeProcess` starts a node executable in its own process and
:class:`RosClient` is a real rclpy node (own context, executor thread) that subscribes, calls
services and gets/sets parameters the way a user's tools would.

Discovery is kept on loopback with a per-run domain id: call :func:`isolate_ros_environment`
before any rclpy context is created (the pytest plugin does it at start-up).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from edge_vision.core.dds import default_dds_environment, venv_ament_prefix
from edge_vision.nodes import NODE_EXECUTABLES
from edge_vision.ros.services import ServiceClients, call_with_resend, default_resend_after


def isolate_ros_environment(domain_id: int | None = None) -> dict[str, str]:
    """Keep DDS discovery on loopback and on a domain of our own, with the shipped Fast DDS
    profile; returns what it set.

    The domain id is derived from the pid so that parallel test runs do not see each other.
    """
    if domain_id is None:
        domain_id = int(os.environ.get("EDGE_VISION_TEST_DOMAIN_ID", 0)) or (1 + os.getpid() % 100)
    env = {
        **default_dds_environment(force=True),
        **venv_ament_prefix(),
        "ROS_DOMAIN_ID": str(domain_id),
        "RCUTILS_COLORIZED_OUTPUT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update(env)
    return env


class NodeProcess:
    """One node executable running in its own process (``python -m <module> --ros-args ...``)."""

    def __init__(
        self,
        executable: str,
        name: str | None = None,
        namespace: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        remappings: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        if executable not in NODE_EXECUTABLES:
            raise ValueError(
                f"unknown node executable {executable!r}; known: {sorted(NODE_EXECUTABLES)}"
            )
        self.executable = executable
        self.name = name or executable
        self.namespace = namespace
        self._dir = Path(log_dir or tempfile.mkdtemp(prefix=f"ev-{self.name}-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self._dir / f"{self.name}.log"
        args = ["--ros-args", "-r", f"__node:={self.name}"]
        if namespace:
            args += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
        for src, dst in (remappings or {}).items():
            args += ["-r", f"{src}:={dst}"]
        if parameters:
            # A params file keeps YAML types exact (a string "1" stays a string).
            params_file = self._dir / f"{self.name}.params.yaml"
            params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": dict(parameters)}}))
            args += ["--params-file", str(params_file)]
        self.command = [sys.executable, "-m", NODE_EXECUTABLES[executable], *args, *extra_args]
        self._env = {**os.environ, **(env or {})}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()/wait()
        self.process = subprocess.Popen(
            self.command, stdout=self._log, stderr=subprocess.STDOUT, env=self._env
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def fqn(self) -> str:
        ns = (self.namespace or "").strip("/")
        return f"/{ns}/{self.name}" if ns else f"/{self.name}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if not self.alive():
                return text in self.output()
            time.sleep(0.05)
        return False

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self._log.close()
        return code

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10.0) -> int:
        """Send ``sig`` and wait; escalates to SIGKILL after ``timeout`` (then returns -9)."""
        if self.alive():
            self.process.send_signal(sig)
            try:
                return self.wait(timeout)
            except subprocess.TimeoutExpired:
                # Its DDS endpoints stay in the graph until their lease ends: say so, since a
                # later node of the same name may then miss a first request.
                print(
                    f"{self.name} did not exit {timeout:g} s after signal {sig}: killed",
                    file=sys.stderr,
                )
                self.process.kill()
        return self.wait(timeout)


class RosClient:
    """A real rclpy node in the test process, spinning in a background thread."""

    def __init__(self, name: str = "edge_vision_test_client") -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import MultiThreadedExecutor

        self._rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self._services = ServiceClients(self.node)
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy._rclpy_pybind11 import InvalidHandle
        from rclpy.executors import ExternalShutdownException

        # Subscriptions and clients are destroyed from the test thread while this one waits on
        # them; rclpy then raises InvalidHandle here once. Spin on: the next wait set is built
        # without the destroyed entity (a dead spin thread would fail every later test).
        while self.context.ok() and not self._stopping.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except InvalidHandle:
                continue
            except ExternalShutdownException:
                return

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)

    # -- topics ---------------------------------------------------------------------------------
    def wait_for_publisher(self, topic: str, timeout: float = 15.0) -> bool:
        return _poll(lambda: self.node.count_publishers(topic) > 0, timeout)

    def subscribe(self, msg_type: type, topic: str, qos: Any = None) -> Collector:
        from edge_vision.ros.qos import sensor_subscriber_qos

        collector = Collector()
        sub = self.node.create_subscription(
            msg_type, topic, collector.add, qos if qos is not None else sensor_subscriber_qos(10)
        )
        collector.subscription = sub
        collector.destroy = lambda: self.node.destroy_subscription(sub)
        return collector

    def collect(
        self, msg_type: type, topic: str, count: int, timeout: float = 15.0, qos: Any = None
    ) -> list[Any]:
        collector = self.subscribe(msg_type, topic, qos)
        try:
            collector.wait_for(count, timeout)
            return collector.messages[:count]
        finally:
            collector.destroy()

    # -- services and parameters ------------------------------------------------------------------
    def wait_for_service(
        self, srv_type: type, name: str, timeout: float = 10.0, settle: bool = True
    ) -> Any:
        """This client's (kept) rclpy client for ``name``, once the server is up; with
        ``settle``, a new client then waits for the server to match it, so that a one-off
        request's reply is not lost (see :mod:`edge_vision.ros.services`). Call it before
        timing a request."""
        client = self._services.ready(srv_type, name, timeout, settle=settle)
        if client is None:
            raise TimeoutError(f"service {name} not available after {timeout} s")
        return client

    def call(
        self,
        srv_type: type,
        name: str,
        request: Any = None,
        timeout: float = 10.0,
        resend_after: float | Literal["default"] | None = "default",
    ) -> Any:
        """Call service ``name``. Repeatable requests (see :mod:`edge_vision.ros.services`) are
        sent again after ``resend_after`` seconds without a reply; others are sent once."""
        if resend_after == "default":
            resend_after = default_resend_after(srv_type)
        client = self.wait_for_service(srv_type, name, timeout, settle=resend_after is None)
        response = call_with_resend(
            client,
            request if request is not None else srv_type.Request(),
            timeout,
            resend_after=resend_after,
        )
        if response is None:
            raise TimeoutError(f"service {name} did not answer in {timeout} s")
        return response

    def get_parameters(
        self, node: str, names: Sequence[str], timeout: float = 10.0
    ) -> dict[str, Any]:
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        response = self.call(
            GetParameters,
            f"{node}/get_parameters",
            GetParameters.Request(names=list(names)),
            timeout,
        )
        return {
            n: parameter_value_to_python(v) for n, v in zip(names, response.values, strict=True)
        }

    def set_parameters(
        self, node: str, values: Mapping[str, Any], timeout: float = 10.0
    ) -> list[Any]:
        """Returns one rcl_interfaces/SetParametersResult per value (``successful``, ``reason``)."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        )
        return list(self.call(SetParameters, f"{node}/set_parameters", request, timeout).results)


class Collector:
    """Messages received on one subscription, with their arrival times (ns, wall clock)."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.arrival_ns: list[int] = []
        self._cond = threading.Condition()
        self.subscription: Any = None
        self.destroy: Callable[[], None] = lambda: None

    def add(self, msg: Any) -> None:
        with self._cond:
            self.messages.append(msg)
            self.arrival_ns.append(time.time_ns())
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Any]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.messages) >= count, timeout):
                raise TimeoutError(
                    f"received {len(self.messages)} of {count} messages in {timeout} s"
                )
            return list(self.messages)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()
            self.arrival_ns.clear()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; TimeoutError naming ``what`` after ``timeout`` s."""
    if not _poll(condition, timeout, interval=0.05):
        raise TimeoutError(f"{what} not reached in {timeout} s")


def _poll(condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()

"""Action plugins: typed properties, filters, the built-ins (webhook against a real HTTP
server), the per-instance runner and plugin discovery."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edge_vision.actions import (
    Action,
    ActionError,
    ActionResult,
    ActionRunner,
    LoggingContext,
    discover_action_types,
    prop,
)
from edge_vision.actions.builtin import (
    BUILTIN_ACTIONS,
    AlertAction,
    LogAction,
    RecordAction,
    WebhookAction,
)
from edge_vision.events.model import Event, EventState
from edge_vision.testing.rtsp_server import find_free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PLUGIN = REPO / "examples" / "plugins" / "count_action.py"


def ev(
    id: str = "e1",
    label: str = "person",
    max_score: float = 0.9,
    frames: int = 5,
    stream: str = "cam0",
    state: EventState = EventState.NEW,
) -> Event:
    return Event(id, stream, "yolo", label, "0", max_score, max_score, 1_000_000_000,
                 3_500_000_000, frames, "7", (1, 2, 3, 4), state, {"zone": "door"})  # fmt: skip


class ListLogger:
    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def _log(self, level: str, msg: str) -> None:
        self.records.append((level, msg))

    def debug(self, msg: str) -> None:
        self._log("debug", msg)

    def info(self, msg: str) -> None:
        self._log("info", msg)

    def warning(self, msg: str) -> None:
        self._log("warning", msg)

    def error(self, msg: str) -> None:
        self._log("error", msg)

    def messages(self, level: str) -> list[str]:
        return [m for lv, m in self.records if lv == level]


class RecordingContext:
    """An ActionContext that remembers what actions asked of it."""

    def __init__(self, recorder_error: str | None = None) -> None:
        self.logger = ListLogger()
        self.alerts: list[tuple[str, str, str]] = []
        self.recordings: list[tuple[str, float, float, float]] = []
        self.recorder_error = recorder_error

    def publish_alert(self, action: str, text: str, event: Event) -> None:
        self.alerts.append((action, text, event.id))

    def request_recording(
        self, event: Event, duration_s: float, max_duration_s: float, pre_s: float
    ) -> str:
        if self.recorder_error:
            raise ActionError(self.recorder_error)
        self.recordings.append((event.id, duration_s, max_duration_s, pre_s))
        return f"/clips/{event.id}.mp4"


# --- typed properties ------------------------------------------------------------------------


class Demo(Action):
    """A demo action.

    More text that is not the description."""

    type_name = "demo"
    count: int = prop(3, "How many.", min=0, max=10)
    ratio: float = 0.5
    tags: list[str] = prop([], "Tags.")
    verbose: bool = False
    mode: str = prop("a", "Mode.", choices=("a", "b"))
    LIMIT: ClassVar[int] = 7
    _private: int = 1
    plain_attr: str  # annotation only: an instance attribute, not a property

    def on_event(self, event: Event, args: Mapping[str, Any]) -> None:
        pass


def test_properties_are_declared_in_order_with_types_and_defaults() -> None:
    specs = Demo.properties()
    assert list(specs) == [
        "once_per_event", "cooldown_s", "enabled", "count", "ratio", "tags", "verbose", "mode"
    ]  # fmt: skip
    assert specs["count"].type is int and specs["count"].default == 3
    count = specs["count"]
    assert (count.min, count.max, count.description) == (0, 10, "How many.")
    assert specs["ratio"].type is float and specs["ratio"].description == ""
    assert specs["tags"].type_name == "list[str]" and specs["mode"].choices == ("a", "b")
    assert specs["cooldown_s"].max == 86400.0
    assert Demo.description == "A demo action."
    assert Demo.LIMIT == 7 and Demo._private == 1
    described = Demo.describe()
    assert described["type"] == "demo" and described["properties"][3]["name"] == "count"
    json.dumps(described)


def test_property_values_are_per_instance_and_coerced() -> None:
    a, b = Demo("a", LoggingContext()), Demo("b", LoggingContext())
    a.set_property("ratio", 2)  # int for float: accepted and converted
    assert a.ratio == 2.0 and isinstance(a.ratio, float) and b.ratio == 0.5
    a.count = 4  # attribute assignment validates too
    a.set_property("tags", ("x", "y"))
    assert a.count == 4 and a.tags == ["x", "y"] and b.tags == []
    a.tags.append("z")  # reading gives a copy
    assert a.tags == ["x", "y"]
    a.set_property("count", 5.0)  # integral float (YAML 5.0) is an int
    assert a.get_property("count") == 5 and isinstance(a.count, int)
    assert a.property_values()["count"] == 5 and b.property_values()["count"] == 3


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("count", True, "a.count: expected int, got bool"),
        ("count", 11, "a.count: 11 is above the maximum 10"),
        ("count", -1, "a.count: -1 is below the minimum 0"),
        ("count", "3", "a.count: expected int"),
        ("ratio", True, "a.ratio: expected float"),
        ("ratio", "0.5", "a.ratio: expected float"),
        ("enabled", 1, "a.enabled: expected bool"),
        ("mode", "c", "a.mode: 'c' is not one of 'a', 'b'"),
        ("tags", "person", "a.tags: expected a list of strings"),
        ("tags", ["a", 1], "a.tags: expected a list of strings"),
        ("cooldown_s", -0.5, "a.cooldown_s: -0.5 is below the minimum 0.0"),
        ("nope", 1, "a: no property 'nope'"),
    ],
)
def test_invalid_values_are_rejected_with_a_clear_message(
    name: str, value: Any, message: str
) -> None:
    action = Demo("a", LoggingContext())
    with pytest.raises(ValueError) as info:
        action.set_property(name, value)
    assert message in str(info.value)
    assert action.count == 3  # unchanged


def test_set_properties_is_all_or_nothing() -> None:
    action = Demo("a", LoggingContext())
    with pytest.raises(ValueError, match=r"a\.mode"):
        action.set_properties({"count": 9, "mode": "zzz"})
    assert action.count == 3
    action.set_properties({"count": 9, "mode": "b"})
    assert (action.count, action.mode) == (9, "b")


def test_subclass_changes_a_default_and_bad_declarations_fail_at_class_creation() -> None:
    class Quiet(Demo):
        type_name = "quiet"
        cooldown_s = 2  # plain value overriding an inherited property's default

    spec = Quiet.properties()["cooldown_s"]
    assert spec.default == 2.0 and spec.max == 86400.0 and spec.description.startswith("Min")
    assert Quiet("q", LoggingContext()).cooldown_s == 2.0
    assert Demo.properties()["cooldown_s"].default == 0.0

    with pytest.raises(TypeError, match="unsupported property type"):

        class BadType(Action):
            limit: dict = prop({})

    with pytest.raises(ValueError, match="above the maximum"):

        class BadDefault(Action):
            level: int = prop(20, min=0, max=10)


def test_setting_uses_rule_args_over_properties() -> None:
    action = Demo("a", LoggingContext())
    assert action.setting("count", {}) == 3
    assert action.setting("count", {"count": 7}) == 7
    assert action.setting("ratio", {"ratio": 1}) == 1.0
    with pytest.raises(ValueError, match=r"a \(rule argument\)\.count: 70 is above"):
        action.setting("count", {"count": 70})
    assert Demo.check_args({"count": 2, "ratio": 1}) == {"count": 2, "ratio": 1.0}
    with pytest.raises(ValueError, match="no property 'colour'"):
        Demo.check_args({"colour": "red"})


# --- EventFilter -----------------------------------------------------------------------------


def test_event_filter() -> None:
    f = LogAction("f", LoggingContext())
    assert f.accepts(ev())
    f.labels = ["car", "truck"]
    assert not f.accepts(ev(label="person")) and f.accepts(ev(label="car"))
    f.labels = []
    f.min_score = 0.5
    assert not f.accepts(ev(max_score=0.4)) and f.accepts(ev(max_score=0.5))
    f.min_frames = 10
    assert not f.accepts(ev(frames=9)) and f.accepts(ev(frames=10))
    f.streams = ["cam1"]
    assert not f.accepts(ev(frames=10)) and f.accepts(ev(frames=10, stream="cam1"))
    f.set_properties({"streams": [], "min_frames": 0, "states": ["END"]})
    assert not f.accepts(ev(state=EventState.NEW)) and f.accepts(ev(state=EventState.END))
    with pytest.raises(ValueError, match="'DONE' is not one of 'NEW', 'UPDATE', 'END'"):
        f.states = ["DONE"]
    with pytest.raises(ValueError, match=re.escape("above the maximum 1.0")):
        f.min_score = 1.5


# --- built-ins -------------------------------------------------------------------------------


def test_log_action_formats_the_event_at_the_chosen_level() -> None:
    ctx = RecordingContext()
    action = LogAction("log1", ctx)
    action.on_event(ev(), {})
    (message,) = ctx.logger.messages("info")
    assert message.startswith("log1: NEW person (0.90) on cam0, track 7, 5 frames, event e1")
    action.set_properties(
        {"level": "warning", "template": "{label}@{attributes[zone]} {duration_s:.1f}s"}
    )
    action.on_event(ev(), {})
    assert ctx.logger.messages("warning") == ["person@door 2.5s"]
    action.on_event(ev(), {"template": "rule says {id}", "level": "error"})
    assert ctx.logger.messages("error") == ["rule says e1"]
    with pytest.raises(ActionError, match=re.escape("bad template '{nope}'")):
        action.on_event(ev(), {"template": "{nope}"})
    with pytest.raises(ValueError, match="not one of"):
        action.level = "critical"


def test_alert_action_publishes_through_the_context() -> None:
    ctx = RecordingContext()
    action = AlertAction("door_alert", ctx)
    assert action.on_event(ev(), {}) == "person on cam0 (score 0.90)"
    action.template = "{label} at the door"
    action.on_event(ev("e2"), {})
    assert ctx.alerts == [
        ("door_alert", "person on cam0 (score 0.90)", "e1"),
        ("door_alert", "person at the door", "e2"),
    ]


def test_record_action_args_override_and_failure_message() -> None:
    ctx = RecordingContext()
    action = RecordAction("rec", ctx)
    assert action.on_event(ev(), {}) == "/clips/e1.mp4"
    # The EDGEMATRIX-style rule passes its own duration and limit.
    action.on_event(ev("e2"), {"duration_s": 10, "max_duration_s": 120})
    assert ctx.recordings == [("e1", 5.0, 60.0, 5.0), ("e2", 10.0, 120.0, 5.0)]
    with pytest.raises(ActionError, match=re.escape("duration_s 90.0 exceeds max_duration_s 60.0")):
        action.on_event(ev("e3"), {"duration_s": 90})

    failing = RecordAction("rec", RecordingContext("no recorder: service /cam0/recorder/record "
                                                   "not available"))  # fmt: skip
    with pytest.raises(ActionError) as info:
        failing.on_event(ev(), {})
    assert str(info.value) == (
        "record rec: no recorder: service /cam0/recorder/record not available"
    )
    with pytest.raises(ActionError, match="no recorder in this process"):
        RecordAction("rec", LoggingContext()).on_event(ev(), {})


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server: HookServer = self.server  # type: ignore[assignment]
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        server.requests.append((dict(self.headers), json.loads(body)))
        status = server.statuses.pop(0) if server.statuses else 200
        if server.delay_s:
            time.sleep(server.delay_s)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


class HookServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Hook)
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.statuses: list[int] = []
        self.delay_s = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


@pytest.fixture
def hook_server() -> Iterator[HookServer]:
    server = HookServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def webhook(url: str, **props: Any) -> WebhookAction:
    action = WebhookAction("hook", RecordingContext())
    action.set_properties({"url": url, "backoff_s": 0.01, **props})
    return action


def test_webhook_retries_5xx_then_succeeds(hook_server: HookServer) -> None:
    hook_server.statuses = [500, 503]
    action = webhook(hook_server.url, headers=["X-Token: abc", "X-Site:  plant 1 "])
    assert action.on_event(ev(), {}) == "HTTP 200"
    assert len(hook_server.requests) == 3
    headers, body = hook_server.requests[-1]
    assert body == {"action": "hook", "event": ev().to_dict()}
    assert headers["X-Token"] == "abc" and headers["X-Site"] == "plant 1"
    assert headers["Content-Type"] == "application/json"
    action.close()


def test_webhook_does_not_retry_4xx(hook_server: HookServer) -> None:
    hook_server.statuses = [404]
    action = webhook(hook_server.url)
    with pytest.raises(ActionError, match=r"webhook hook: HTTP 404 from .* \(not retried\)"):
        action.on_event(ev(), {})
    assert len(hook_server.requests) == 1


def test_webhook_gives_up_after_retries(hook_server: HookServer) -> None:
    hook_server.statuses = [500] * 10
    action = webhook(hook_server.url, retries=2)
    with pytest.raises(ActionError, match=r"gave up after 3 attempt.*HTTP 500"):
        action.on_event(ev(), {})
    assert len(hook_server.requests) == 3


def test_webhook_timeout_is_retried_then_reported(hook_server: HookServer) -> None:
    hook_server.delay_s = 0.5
    action = webhook(hook_server.url, timeout_s=0.1, retries=1)
    started = time.monotonic()
    with pytest.raises(ActionError, match=r"gave up after 2 attempt.*timed out after 0\.1 s"):
        action.on_event(ev(), {})
    assert time.monotonic() - started < 0.45 * 2
    deadline = time.monotonic() + 2
    while len(hook_server.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(hook_server.requests) == 2


def test_webhook_connection_refused_and_configuration_errors() -> None:
    action = webhook(f"http://127.0.0.1:{find_free_port()}/x", retries=1)
    with pytest.raises(ActionError, match=r"gave up after 2 attempt.*connection failed"):
        action.on_event(ev(), {})
    with pytest.raises(ActionError, match=r"^webhook hook: url is not set$"):
        WebhookAction("hook", LoggingContext()).on_event(ev(), {})
    with pytest.raises(
        ValueError, match=re.escape("hook.headers: header 'NoColon' is not 'Name: value'")
    ):
        action.headers = ["NoColon"]
    with pytest.raises(ValueError, match=re.escape("hook.url: 'ftp://x' is not an http")):
        action.url = "ftp://x"


def test_webhook_url_from_rule_args(hook_server: HookServer) -> None:
    action = WebhookAction("hook", LoggingContext())
    action.on_event(ev(), {"url": hook_server.url})
    assert len(hook_server.requests) == 1


# --- runner ----------------------------------------------------------------------------------


class Gate(Action):
    """Blocks in on_event until released; raises for labels in ``fail_labels``."""

    type_name = "gate"
    once_per_event = False

    def __init__(self, name: str, context: Any) -> None:
        super().__init__(name, context)
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Semaphore(0)
        self.seen: list[str] = []
        self.fail_labels = {"bad"}
        self.closed = False

    def on_event(self, event: Event, args: Mapping[str, Any]) -> str:
        self.started.release()
        self.release.wait(10)
        if event.label in self.fail_labels:
            raise RuntimeError(f"cannot handle {event.label}")
        self.seen.append(event.id)
        return f"did {event.id}"

    def close(self) -> None:
        self.closed = True


def test_runner_once_per_event() -> None:
    ctx = RecordingContext()
    runner = ActionRunner(AlertAction("a", ctx))
    assert runner.submit(ev("e1"), {}, "r1") == "queued"
    assert runner.submit(ev("e1", state=EventState.UPDATE), {}, "r1") == "skipped_once"
    assert runner.submit(ev("e2"), {}, "r1") == "queued"
    # A rule may turn it off for its firings.
    assert runner.submit(ev("e1"), {"once_per_event": False}, "r2") == "queued"
    assert runner.close(5)
    stats = runner.stats()
    assert (stats.fired, stats.skipped_once, stats.queued) == (3, 1, 0)
    assert [a[2] for a in ctx.alerts] == ["e1", "e2", "e1"]


def test_runner_skips_a_disabled_instance_until_enabled_again() -> None:
    ctx = RecordingContext()
    action = AlertAction("a", ctx)
    runner = ActionRunner(action)
    action.set_property("enabled", False)
    assert runner.submit(ev("e1")) == "skipped_disabled"
    action.set_property("enabled", True)
    # A skipped event was not remembered: it fires once the instance is enabled.
    assert runner.submit(ev("e1")) == "queued"
    assert runner.close(5)
    stats = runner.stats()
    assert (stats.fired, stats.skipped_disabled) == (1, 1)
    assert [a[2] for a in ctx.alerts] == ["e1"]


def test_runner_filter_and_cooldown() -> None:
    action = AlertAction("a", RecordingContext())
    action.set_properties({"cooldown_s": 0.3, "labels": ["person"]})
    runner = ActionRunner(action)
    assert runner.submit(ev("e0", label="cat")) == "skipped_filter"
    assert runner.submit(ev("e1")) == "queued"
    assert runner.submit(ev("e2")) == "skipped_cooldown"
    time.sleep(0.35)
    assert runner.submit(ev("e3")) == "queued"
    assert runner.submit(ev("e4"), {"cooldown_s": 0}) == "queued"  # rule override
    runner.close(5)
    stats = runner.stats()
    assert (stats.fired, stats.skipped_filter, stats.skipped_cooldown) == (3, 1, 1)


def test_runner_drops_when_queue_full_without_blocking_submit() -> None:
    gate = Gate("slow", RecordingContext())
    gate.release.clear()
    results: list[ActionResult] = []
    runner = ActionRunner(gate, queue_size=2, on_done=results.append)
    assert runner.submit(ev("e1")) == "queued"
    assert gate.started.acquire(timeout=5)  # the worker is now stuck in e1
    started = time.monotonic()
    outcomes = [runner.submit(ev(f"e{i}")) for i in range(2, 6)]
    assert time.monotonic() - started < 0.1
    assert outcomes == ["queued", "queued", "dropped", "dropped"]
    assert runner.stats().dropped == 2 and runner.stats().queued == 2
    gate.release.set()
    assert runner.close(5)
    stats = runner.stats()
    assert (stats.fired, stats.dropped, stats.failed) == (3, 2, 0)
    assert gate.seen == ["e1", "e2", "e3"] and gate.closed
    assert [r.detail for r in results] == ["did e1", "did e2", "did e3"]
    # Latency runs from submit to completion, so e1 includes the time it was held.
    assert results[0].latency_s > 0 and stats.last_latency_s > 0
    assert runner.submit(ev("e9")) == "closed"


def test_runner_counts_failures_and_keeps_working() -> None:
    ctx = RecordingContext()
    gate = Gate("g", ctx)
    results: list[ActionResult] = []
    runner = ActionRunner(gate, logger=ctx.logger, on_done=results.append)
    runner.submit(ev("e1"), rule="r")
    runner.submit(ev("e2", label="bad"), rule="door")
    runner.submit(ev("e3"), rule="r")
    runner.close(5)
    stats = runner.stats()
    assert (stats.fired, stats.failed) == (2, 1)
    assert stats.last_error == "rule 'door', event e2: RuntimeError: cannot handle bad"
    assert gate.seen == ["e1", "e3"]
    assert [(r.event_id, r.ok) for r in results] == [("e1", True), ("e2", False), ("e3", True)]
    assert results[1].error == "RuntimeError: cannot handle bad"
    assert any("g: rule 'door'" in m for m in ctx.logger.messages("error"))


def test_runner_close_is_bounded_by_its_timeout() -> None:
    gate = Gate("hung", RecordingContext())
    gate.release.clear()
    runner = ActionRunner(gate)
    runner.submit(ev("e1"))
    runner.submit(ev("e2"))
    assert gate.started.acquire(timeout=5)
    started = time.monotonic()
    assert runner.close(0.2) is False
    assert time.monotonic() - started < 1.0
    assert runner.stats().dropped == 1 and gate.closed
    gate.release.set()


def test_runner_hook_errors_do_not_stop_the_worker() -> None:
    def bad_hook(result: ActionResult) -> None:
        raise RuntimeError("hook bug")

    ctx = RecordingContext()
    runner = ActionRunner(AlertAction("a", ctx), logger=ctx.logger, on_done=bad_hook)
    runner.submit(ev("e1"))
    runner.submit(ev("e2"))
    runner.close(5)
    assert runner.stats().fired == 2
    assert sum("on_done hook failed" in m for m in ctx.logger.messages("error")) == 2


# --- registry and the example plugin ---------------------------------------------------------


def test_builtins_are_registered() -> None:
    types, errors = discover_action_types()
    assert errors == []
    for cls in BUILTIN_ACTIONS:
        assert types[cls.type_name] is cls
    assert set(types) >= {"log", "alert", "record", "webhook", "redis"}
    assert types["redis"].properties()["once_per_event"].default is False


def test_builtins_are_entry_points() -> None:
    eps = {ep.name: ep for ep in entry_points(group="edge_vision.actions")}
    if not eps:
        pytest.skip("package not installed (pip install -e .): no entry points")
    for cls in BUILTIN_ACTIONS:
        assert eps[cls.type_name].load() is cls


def test_plugin_directory_loads_good_plugins_and_reports_broken_ones(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_PLUGIN, tmp_path / "count_action.py")
    (tmp_path / "broken.py").write_text("import edge_vision_no_such_module\n")
    (tmp_path / "syntax.py").write_text("def oops(:\n")
    (tmp_path / "empty.py").write_text("X = 1\n")
    (tmp_path / "_helper.py").write_text("raise RuntimeError('never imported')\n")
    (tmp_path / "clash.py").write_text(
        "from edge_vision.actions import Action\n"
        "class MyLog(Action):\n"
        "    type_name = 'log'\n"
        "    def on_event(self, event, args):\n"
        "        pass\n"
    )
    types, errors = discover_action_types([tmp_path, tmp_path / "missing"])
    assert types["count"].__name__ == "CountAction"
    assert types["log"] is LogAction  # a plugin cannot replace a built-in
    text = "\n".join(errors)
    assert len(errors) == 5, text
    assert "broken.py: ModuleNotFoundError: No module named 'edge_vision_no_such_module'" in text
    assert "syntax.py: SyntaxError" in text
    assert "empty.py: defines no Action subclass with a type_name" in text
    assert "action type 'log' of" in text and "MyLog clashes with" in text
    assert "missing: not a directory" in text


def test_example_plugin_changes_behaviour_with_its_properties(tmp_path: Path) -> None:
    types, errors = discover_action_types([EXAMPLE_PLUGIN.parent])
    assert errors == []
    out = tmp_path / "counts.txt"
    action = types["count"]("counter", RecordingContext())
    action.set_properties({"output_path": str(out), "every": 1})
    runner = ActionRunner(action)
    runner.submit(ev("e1"))
    runner.submit(ev("e2", label="car"))
    runner.close(5)
    assert out.read_text().splitlines() == [
        "1 events, the last person on cam0",
        "2 events, the last car on cam0",
    ]
    action.set_properties({"every": 2, "message": "{count}!"})
    for i in range(3, 7):
        action.on_event(ev(f"e{i}"), {})
    assert out.read_text().splitlines()[2:] == ["4!", "6!"]
    with pytest.raises(ValueError, match=re.escape("counter.every: 0 is below the minimum 1")):
        action.every = 0

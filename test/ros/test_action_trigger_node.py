"""action_trigger over real DDS: the EDGEMATRIX sample rules against a real Record service and
a real HTTP server, a user plugin from a folder changed by a parameter set while running, a
raising plugin that does not stop the others, rule reloads that keep the last good rules."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edge_vision.events import Event, EventState
from edge_vision.msg import Alert
from edge_vision.msg import Event as EventMsg
from edge_vision.nodes.event_aggregator import events_qos
from edge_vision.ros.conversions import event_to_msg
from edge_vision.srv import Record
from edge_vision.testing.ros_harness import wait_until

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "rules"
T0 = 1_700_000_000 * 10**9


def _event(
    eid: str, score: float, state: EventState = EventState.NEW, duration_s: float = 0.5
) -> Event:
    return Event(
        id=eid,
        stream="cam0",
        model="nanodet-m",
        label="person",
        class_id="0",
        score=score,
        max_score=score,
        begin_ns=T0,
        end_ns=T0 + round(duration_s * 1e9),
        frames=10,
        track_id="3",
        state=state,
    )


class _Hook:
    """A real HTTP server on 127.0.0.1 answering the given statuses in turn, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        self.codes: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                code = hook.statuses.pop(0) if hook.statuses else 200
                hook.bodies.append(json.loads(body))
                hook.codes.append(code)
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/upload"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[_Hook]:
    server = _Hook([500])  # the first upload fails with 500: the action retries
    yield server
    server.close()


def _publisher(ros, topic: str):
    pub = ros.node.create_publisher(EventMsg, topic, events_qos())
    wait_until(lambda: pub.get_subscription_count() > 0, 20, f"a subscriber on {topic}")
    time.sleep(0.3)  # both sides matched
    return pub


def test_edgematrix_sample_rules_record_and_upload_exactly_when_they_should(
    ros, start_node, tmp_path, hook
):
    # The two sample files, unchanged, merged into the one rules file the node takes.
    rules = [
        r
        for f in ("edgematrix_record.json", "edgematrix_upload.json")
        for r in json.loads((RULES / f).read_text())["rules"]
    ]
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps({"rules": rules}))

    requests: list[Record.Request] = []

    def on_record(request: Record.Request, response: Record.Response) -> Record.Response:
        requests.append(request)
        response.success, response.path = True, f"/clips/{request.event_id}.mp4"
        return response

    service = ros.node.create_service(Record, "/at1/recorder/record", on_record)
    try:
        trigger = start_node(
            "action_trigger",
            namespace="at1",
            parameters={
                "rules_file": str(rules_file),
                "actions": ["record: record", "upload: webhook"],
                "upload.url": hook.url,
                "upload.backoff_s": 0.05,
            },
        )
        pub = _publisher(ros, "/at1/events")
        # Rule 1: probability >= 20 -> record 5 s, max 60 s. 19 % no; 20 % yes.
        pub.publish(event_to_msg(_event("low", 0.19)))
        pub.publish(event_to_msg(_event("ok", 0.20)))
        pub.publish(event_to_msg(_event("ok", 0.35, EventState.UPDATE)))  # once per event
        # Rule 2: tracking ended and duration >= 1.3 s -> upload.
        pub.publish(event_to_msg(_event("short", 0.1, EventState.END, 1.29)))
        pub.publish(event_to_msg(_event("long", 0.1, EventState.END, 1.3)))
        pub.publish(event_to_msg(_event("open", 0.1, EventState.UPDATE, 5.0)))
        wait_until(lambda: len(requests) >= 1 and 200 in hook.codes, 20, "record and upload")
        time.sleep(1.0)  # anything else that would (wrongly) fire has time to arrive
    finally:
        ros.node.destroy_service(service)

    assert [r.event_id for r in requests] == ["ok"]
    assert (requests[0].duration_s, requests[0].max_duration_s) == (5.0, 60.0)
    # One upload, of the long track, retried once after the 500.
    assert hook.codes == [500, 200]
    assert {b["event"]["id"] for b in hook.bodies} == {"long"}
    assert hook.bodies[-1]["action"] == "upload"
    assert hook.bodies[-1]["event"]["state"] == "END"
    assert trigger.alive(), trigger.output()


def test_record_without_a_recorder_fails_with_a_clear_message(ros, start_node, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("- name: all\n  action: rec\n")
    trigger = start_node(
        "action_trigger",
        namespace="at2",
        parameters={"rules_file": str(rules_file), "actions": ["rec: record"]},
    )
    pub = _publisher(ros, "/at2/events")
    pub.publish(event_to_msg(_event("e1", 0.9)))
    assert trigger.wait_for_output(
        "record rec: no recorder: service /at2/recorder/record is not available", timeout=15
    ), trigger.output()
    assert trigger.alive()


PLUGIN_BOOM = '''
from edge_vision.actions.base import Action


class Boom(Action):
    """Always fails."""

    type_name = "boom"

    def on_event(self, event, args):
        raise RuntimeError("boom " + event.id)
'''


def test_a_recorder_that_starts_after_the_event_still_records_it(ros, start_node, tmp_path):
    # One launch file starts the action_trigger and the recorder together; the first event may
    # come before the recorder's service exists.
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("- name: all\n  action: rec\n")
    trigger = start_node(
        "action_trigger",
        namespace="at5",
        parameters={
            "rules_file": str(rules_file),
            "actions": ["rec: record"],
            "recorder_timeout_s": 20.0,
        },
    )
    pub = _publisher(ros, "/at5/events")
    pub.publish(event_to_msg(_event("first", 0.9)))
    time.sleep(1.5)
    requests: list[str] = []

    def on_record(request: Record.Request, response: Record.Response) -> Record.Response:
        requests.append(request.event_id)
        response.success, response.path = True, f"/clips/{request.event_id}.mp4"
        return response

    service = ros.node.create_service(Record, "/at5/recorder/record", on_record)
    try:
        wait_until(lambda: requests, 20, "the late recorder to get the first event")
    finally:
        ros.node.destroy_service(service)
    assert requests == ["first"]
    assert "no recorder" not in trigger.output()


def test_user_plugin_from_a_folder_follows_parameter_sets_and_survives_a_raising_one(
    ros, start_node, tmp_path
):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "boom.py").write_text(PLUGIN_BOOM)
    out = tmp_path / "counts.txt"
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "rules:\n"
        "  - {name: count_people, and: [{key: label, operator: '==', value: person}],"
        " action: counter}\n"
        "  - {name: explode, action: {name: bomb}}\n"
        "  - {name: alarm, and: [{key: max_score, operator: '>=', value: 0.9}], action: siren}\n"
    )
    trigger = start_node(
        "action_trigger",
        namespace="at3",
        parameters={
            "rules_file": str(rules_file),
            "plugin_dirs": [str(ROOT / "examples" / "plugins"), str(plugins)],
            "actions": ["counter: count", "bomb: boom", "siren: alert"],
            "counter.output_path": str(out),
            "counter.message": "A {count} {id}",
            "siren.template": "{label} at {stream} ({max_score:.2f})",
        },
    )
    alerts = ros.subscribe(Alert, "/at3/alerts", qos=10)
    pub = _publisher(ros, "/at3/events")

    def lines() -> list[str]:
        return out.read_text().splitlines() if out.exists() else []

    pub.publish(event_to_msg(_event("p1", 0.5)))
    pub.publish(event_to_msg(_event("p2", 0.95)))
    wait_until(lambda: len(lines()) == 2, 15, "two counts")
    assert lines() == ["A 1 p1", "A 2 p2"]
    alerts.wait_for(1, timeout=10)
    assert alerts.messages[0].text == "person at cam0 (0.95)"
    assert alerts.messages[0].event.id == "p2"

    # Typed properties are parameters with descriptors; a bad value is refused and named.
    (bad,) = ros.set_parameters(trigger.fqn, {"counter.every": 0})
    assert not bad.successful and "counter.every" in bad.reason
    (ok,) = ros.set_parameters(trigger.fqn, {"counter.message": "B {count} {id}"})
    assert ok.successful, ok.reason
    pub.publish(event_to_msg(_event("p3", 0.5)))
    wait_until(lambda: len(lines()) == 3, 15, "a third count")
    assert lines()[-1] == "B 3 p3"  # the new message, while the pipeline runs
    # The raising plugin was logged each time (on its own worker); the others went on.
    wait_until(lambda: trigger.output().count("boom p") == 3, 15, "three boom errors logged")
    assert trigger.alive()

    # A broken rules file on disk is refused on reload; the last good rules keep working.
    rules_file.write_text(
        "- name: broken\n  and: [{key: labl, operator: '==', value: x}]\n  action: counter\n"
    )
    assert trigger.wait_for_output("rule 'broken', field 'and[0].key'", timeout=10)
    pub.publish(event_to_msg(_event("p4", 0.5)))
    wait_until(lambda: len(lines()) == 4, 15, "a count under the last good rules")
    # Setting rules_file to a broken file is refused with the rule and field.
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text(
        "- rule_name: r1\n  and: [{key: score, operator: '=>', value: 1}]\n"
        "  action: {action_name: counter}\n"
    )
    (refused,) = ros.set_parameters(trigger.fqn, {"rules_file": str(bad_file)})
    assert not refused.successful
    assert "rule 'r1', field 'and[0].operator'" in refused.reason


def test_invalid_configuration_stops_at_start_with_the_reason(start_node, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("- name: r\n  action: nowhere\n")
    proc = start_node(
        "action_trigger",
        namespace="at4",
        parameters={"rules_file": str(rules_file), "actions": ["log: log"]},
    )
    assert proc.wait(20) == 2
    assert "rule 'r', field 'action'" in proc.output()
    proc = start_node("action_trigger", namespace="at5", parameters={"actions": ["x: nope"]})
    assert proc.wait(20) == 2
    assert "action 'x': unknown type 'nope'" in proc.output()


@pytest.mark.parametrize(
    ("action", "message"),
    [
        # A value the property refuses is found when the rules load, not when the rule fires.
        ("{name: log, level: loud}", "rule 'r', field 'action': log.level"),
        # Filters belong to the instance: a rule cannot override them.
        ("{name: log, labels: [car]}", "rule 'r', field 'action.labels'"),
    ],
)
def test_rule_arguments_are_checked_at_load(start_node, tmp_path, action, message):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(f"- name: r\n  action: {action}\n")
    proc = start_node(
        "action_trigger",
        namespace="at6",
        parameters={"rules_file": str(rules_file), "actions": ["log: log"]},
    )
    assert proc.wait(20) == 2
    assert message in proc.output(), proc.output()


def _parameter_names(ros, node: str, prefix: str) -> set[str]:
    from rcl_interfaces.srv import ListParameters

    reply = ros.call(ListParameters, f"{node}/list_parameters", ListParameters.Request())
    return {n for n in reply.result.names if n.startswith(prefix)}


def test_instances_are_added_removed_and_disabled_at_run_time(ros, start_node, tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("- {name: alarm, action: siren}\n")
    trigger = start_node(
        "action_trigger",
        namespace="at7",
        parameters={
            "rules_file": str(rules_file),
            "actions": ["siren: alert"],
            "siren.template": "siren {id}",
        },
    )
    alerts = ros.subscribe(Alert, "/at7/alerts", qos=10)
    pub = _publisher(ros, "/at7/events")

    # A new instance: its typed properties appear as parameters, settable like the others.
    (ok,) = ros.set_parameters(trigger.fqn, {"actions": ["siren: alert", "extra: alert"]})
    assert ok.successful, ok.reason
    wait_until(
        lambda: "extra.template" in _parameter_names(ros, trigger.fqn, "extra."),
        15,
        "the new instance's parameters",
    )
    assert {"extra.enabled", "extra.labels", "extra.cooldown_s"} <= _parameter_names(
        ros, trigger.fqn, "extra."
    )
    (ok,) = ros.set_parameters(trigger.fqn, {"extra.template": "extra {id}"})
    assert ok.successful, ok.reason
    both = tmp_path / "both.yaml"
    both.write_text("- {name: alarm, action: siren}\n- {name: also, action: extra}\n")
    (ok,) = ros.set_parameters(trigger.fqn, {"rules_file": str(both)})
    assert ok.successful, ok.reason
    pub.publish(event_to_msg(_event("e1", 0.5)))
    alerts.wait_for(2, timeout=15)
    assert sorted(m.text for m in alerts.messages) == ["extra e1", "siren e1"]

    # Disabled: the instance skips events (counted) until enabled again.
    (ok,) = ros.set_parameters(trigger.fqn, {"siren.enabled": False})
    assert ok.successful, ok.reason
    pub.publish(event_to_msg(_event("e2", 0.5)))
    alerts.wait_for(3, timeout=15)
    time.sleep(1.0)  # a siren alert, were one coming, would be here by now
    assert [m.text for m in alerts.messages[2:]] == ["extra e2"]

    # Refused, nothing changed: an unknown type, and removing an instance a rule fires.
    (bad,) = ros.set_parameters(trigger.fqn, {"actions": ["siren: alert", "x: nope"]})
    assert not bad.successful and "unknown type 'nope'" in bad.reason
    (bad,) = ros.set_parameters(trigger.fqn, {"actions": ["siren: alert"]})
    assert not bad.successful and "rule 'also' fires it" in bad.reason
    assert "extra.template" in _parameter_names(ros, trigger.fqn, "extra.")

    # Once no rule fires it, the instance can go; its parameters go with it.
    (ok,) = ros.set_parameters(trigger.fqn, {"rules_file": str(rules_file)})
    assert ok.successful, ok.reason
    (ok,) = ros.set_parameters(trigger.fqn, {"actions": ["siren: alert"]})
    assert ok.successful, ok.reason
    wait_until(
        lambda: not _parameter_names(ros, trigger.fqn, "extra."), 15, "extra's parameters gone"
    )
    (ok,) = ros.set_parameters(trigger.fqn, {"siren.enabled": True})
    assert ok.successful, ok.reason
    pub.publish(event_to_msg(_event("e3", 0.5)))
    alerts.wait_for(4, timeout=15)
    assert alerts.messages[3].text == "siren e3"
    assert trigger.alive()

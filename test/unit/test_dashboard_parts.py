"""The dashboard's pure parts: bind/credential checks, the stream pipeline, event rows and the
timeline, controls chosen from parameter descriptors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from flask import Flask
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)

from edge_vision.dashboard import auth
from edge_vision.dashboard.pages.common import control_value, parameter_control
from edge_vision.dashboard.pages.events import event_rows, timeline_figure
from edge_vision.dashboard.streams import (
    StreamError,
    launched_streams,
    stop_stream,
    stream_pipeline,
)
from edge_vision.events import Event, EventState


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.5", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("", False), ("::", False), ("192.168.1.10", False),
     ("no-such-host.invalid", False)],
)  # fmt: skip
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert auth.is_loopback(host) is loopback


def test_non_loopback_bind_needs_a_password_or_token() -> None:
    auth.check_bind("127.0.0.1", auth.Credentials())
    with pytest.raises(auth.AuthConfigError, match="set a password or token"):
        auth.check_bind("0.0.0.0", auth.Credentials())
    auth.check_bind("0.0.0.0", auth.Credentials(password="pw"))
    auth.check_bind("0.0.0.0", auth.Credentials(token="t"))


def test_credentials_accept_basic_bearer_query_and_cookie_only_when_right() -> None:
    c = auth.Credentials(password="pw", token="tok")
    basic = "Basic " + base64.b64encode(b"user:pw").decode()
    assert c.accepts(basic, None, None)
    assert not c.accepts("Basic " + base64.b64encode(b"user:nope").decode(), None, None)
    assert not c.accepts("Basic !!notbase64", None, None)
    assert c.accepts("Bearer tok", None, None) and not c.accepts("Bearer tok2", None, None)
    assert c.accepts(None, "tok", None) and not c.accepts(None, "x", None)
    assert c.accepts(None, None, c.cookie_value()) and not c.accepts(None, None, "abc")
    assert c.cookie_value() != auth.Credentials(password="other", token="tok").cookie_value()
    assert auth.Credentials().accepts(None, None, None)  # nothing configured: open


def test_install_guards_every_route_and_sets_a_cookie() -> None:
    server = Flask(__name__)
    server.add_url_rule("/x", "x", lambda: "ok")
    auth.install(server, auth.Credentials(token="tok"))
    client = server.test_client()
    assert client.get("/x").status_code == 401
    response = client.get("/x?token=tok")
    assert response.status_code == 200
    cookie = client.get_cookie(auth.COOKIE)
    assert cookie is not None and cookie.value != "tok"  # a digest, not the token
    assert client.get("/x").status_code == 200  # the cookie now


def test_stream_pipeline_is_a_valid_launcher_pipeline_and_refuses_bad_input() -> None:
    doc = stream_pipeline("cam3", "/videos/a.mp4", "nanodet-m", fps=5)
    assert doc["namespace"] == "cam3"
    assert [n["executable"] for n in doc["nodes"]] == ["video_source", "detector"]
    assert doc["nodes"][0]["parameters"]["fps"] == 5.0  # a float, as the node declares it
    assert doc["nodes"][1]["remappings"] == {"image": "image_raw"}
    for args, message in [
        (("3cam", "x"), "stream name"),
        (("cam/3", "x"), "stream name"),
        (("cam", " "), "uri is empty"),
        (("cam", "x", ""), "model is empty"),
        (("cam", "x", "m", -1.0), "fps"),
    ]:
        with pytest.raises(StreamError, match=message):
            stream_pipeline(*args)


def test_launched_streams_reads_pid_files_and_stop_forgets_dead_ones(tmp_path: Path) -> None:
    (tmp_path / "cam1.yaml").write_text(yaml.safe_dump(stream_pipeline("cam1", "/v.mp4")))
    (tmp_path / "cam1.pid").write_text("999999999")  # no such process
    (tmp_path / "junk.pid").write_text("not a pid")
    streams = launched_streams(tmp_path)
    assert [(s.name, s.alive, s.uri) for s in streams] == [("cam1", False, "/v.mp4")]
    assert stop_stream(tmp_path, "cam1") is True
    assert not (tmp_path / "cam1.pid").exists()
    assert stop_stream(tmp_path, "cam1") is False


def _event(i: int, label: str, score: float, begin_s: float) -> dict:
    return Event(
        id=f"e{i}",
        stream="cam0",
        model="nanodet-m",
        label=label,
        class_id="0",
        score=score,
        max_score=score,
        begin_ns=int(begin_s * 1e9),
        end_ns=int((begin_s + 2.5) * 1e9),
        frames=25,
        track_id=str(i),
        bbox=(0, 0, 1, 1),
        state=EventState.END,
        attributes={},
    ).to_dict()


def test_event_rows_newest_first_with_duration() -> None:
    events = [_event(1, "person", 0.8, 1000.0), _event(2, "car", 0.6, 1010.0)]
    rows = event_rows(events)
    assert [r["id"] for r in rows] == ["e2", "e1"]
    assert rows[0]["duration_s"] == 2.5 and rows[0]["state"] == "END"
    assert rows[1]["begin"] == "1970-01-01 00:16:40.000"


def test_timeline_has_one_trace_per_class() -> None:
    events = [
        _event(1, "person", 0.8, 1.0),
        _event(2, "car", 0.6, 2.0),
        _event(3, "person", 0.9, 3),
    ]
    fig = timeline_figure(events)
    traces = {t.name: list(t.y) for t in fig.data}
    assert traces == {"car": [0.6], "person": [0.8, 0.9]}


def _descriptor(ptype: int, **kwargs) -> ParameterDescriptor:
    return ParameterDescriptor(type=ptype, **kwargs)


def test_controls_fit_the_parameter_descriptors() -> None:
    node = "/cam0/action_trigger"
    check = parameter_control(node, "a.enabled", _descriptor(ParameterType.PARAMETER_BOOL), True)
    assert type(check).__name__ == "Checklist" and check.value == ["on"]
    ranged = _descriptor(
        ParameterType.PARAMETER_DOUBLE,
        floating_point_range=[FloatingPointRange(from_value=0.0, to_value=1.0)],
    )
    slider = parameter_control(node, "a.min_score", ranged, 0.5)
    assert type(slider).__name__ == "Slider" and (slider.min, slider.max) == (0.0, 1.0)
    wide = _descriptor(
        ParameterType.PARAMETER_INTEGER,
        integer_range=[IntegerRange(from_value=0, to_value=1_000_000)],
    )
    box = parameter_control(node, "a.count", wide, 3)
    assert type(box).__name__ == "Input" and box.type == "number" and box.max == 1_000_000
    text = parameter_control(
        node, "a.labels", _descriptor(ParameterType.PARAMETER_STRING_ARRAY), None
    )
    assert text.type == "text" and text.value == ""
    assert slider.id == {"type": "param", "node": node, "param": "a.min_score", "kind": "double"}


def test_control_values_become_the_parameter_types() -> None:
    assert control_value("bool", ["on"]) is True and control_value("bool", []) is False
    assert control_value("integer", 3.0) == 3 and control_value("double", 1) == 1.0
    assert control_value("string_array", "a, b,,c ") == ["a", "b", "c"]
    assert control_value("string_array", "") == [""]  # how ROS sends an empty string list
    with pytest.raises(ValueError):
        control_value("integer", "x")

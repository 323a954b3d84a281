"""The buffered Redis stream writer against a real redis-server (killed and restarted for
outages), the redis action end to end, and the Metropolis minimal-schema message."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import numpy as np
import pytest

from edge_vision.actions import ActionRunner, LoggingContext
from edge_vision.actions.builtin import RedisAction
from edge_vision.core.detections import Detections
from edge_vision.events.model import Event, EventState
from edge_vision.outputs.metropolis import frame_message, iso_timestamp, parse_object
from edge_vision.testing.redis_server import RedisTestServer, redis_server_unavailable_reason
from edge_vision.testing.rtsp_server import find_free_port

redis = pytest.importorskip("redis")

from edge_vision.outputs.redis_stream import BufferedRedisStream  # noqa: E402

needs_redis = pytest.mark.skipif(
    redis_server_unavailable_reason() is not None,
    reason=redis_server_unavailable_reason() or "",
)


class ListLogger:
    def __init__(self) -> None:
        self.records: list[tuple[str, str]] = []

    def debug(self, msg: str) -> None:
        self.records.append(("debug", msg))

    def info(self, msg: str) -> None:
        self.records.append(("info", msg))

    def warning(self, msg: str) -> None:
        self.records.append(("warning", msg))

    def error(self, msg: str) -> None:
        self.records.append(("error", msg))

    def count(self, text: str) -> int:
        return sum(text in m for _, m in self.records)


@pytest.fixture
def server() -> Iterator[RedisTestServer]:
    with RedisTestServer() as srv:
        yield srv


def client_for(server: RedisTestServer) -> redis.Redis:
    return redis.Redis(port=server.port, decode_responses=True)


def entries(server: RedisTestServer, stream: str, field: str = "metadata") -> list[str]:
    return [fields[field] for _, fields in client_for(server).xrange(stream)]


def wait_for(predicate, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


# --- BufferedRedisStream ---------------------------------------------------------------------


@needs_redis
def test_messages_arrive_in_order(server: RedisTestServer) -> None:
    with BufferedRedisStream(port=server.port, stream="s") as out:
        assert wait_for(lambda: out.stats().connected)
        for i in range(250):  # more than one batch
            out.add(f"m{i}")
        out.add({"k": 1, "text": "é"})
        out.add(b"raw")
        assert out.flush(10)
        stats = out.stats()
    assert (stats.sent, stats.buffered, stats.dropped) == (252, 0, 0)
    got = entries(server, "s")
    assert got[:250] == [f"m{i}" for i in range(250)]
    assert json.loads(got[250]) == {"k": 1, "text": "é"} and got[251] == "raw"


@needs_redis
def test_maxlen_trims_approximately(server: RedisTestServer) -> None:
    with BufferedRedisStream(port=server.port, stream="t", maxlen=100, field="f") as out:
        for i in range(2000):
            out.add(str(i))
        assert out.flush(10)
    length = client_for(server).xlen("t")
    assert 100 <= length < 2000
    assert entries(server, "t", "f")[-1] == "1999"


@needs_redis
def test_outage_buffers_and_delivers_exactly_once_in_order(server: RedisTestServer) -> None:
    log = ListLogger()
    with BufferedRedisStream(port=server.port, stream="o", logger=log) as out:
        assert wait_for(lambda: out.stats().connected)
        server.stop()
        for i in range(50):
            out.add(f"m{i}")
        assert wait_for(lambda: not out.stats().connected)
        time.sleep(0.5)  # several failed retries: still one outage message
        stats = out.stats()
        assert stats.buffered == 50 and stats.sent == 0 and stats.last_error
        assert log.count("Redis unavailable") == 1
        server.start()  # same port, empty (no persistence)
        assert out.flush(15)
        stats = out.stats()
    assert entries(server, "o") == [f"m{i}" for i in range(50)]
    assert (stats.sent, stats.dropped, stats.connected) == (50, 0, True)
    assert log.count("Redis unavailable") == 1 and log.count("reachable again") == 1


@needs_redis
def test_overflow_drops_the_oldest_and_counts_exactly(server: RedisTestServer) -> None:
    log = ListLogger()
    out = BufferedRedisStream(port=server.port, stream="x", buffer_size=10, logger=log)
    assert wait_for(lambda: out.stats().connected)
    server.stop()
    for i in range(25):
        out.add(f"m{i}")
    server.start()
    assert out.flush(15)
    assert entries(server, "x") == [f"m{i}" for i in range(15, 25)]
    stats = out.stats()
    assert (stats.sent, stats.dropped) == (10, 15)
    assert log.count("buffer full (10); dropped") == 1  # rate-limited, not one per message
    out.close()


@needs_redis
def test_add_never_blocks_and_close_reports_what_was_left() -> None:
    log = ListLogger()
    out = BufferedRedisStream(port=find_free_port(), stream="d", buffer_size=500, logger=log)
    started = time.monotonic()
    for i in range(2000):
        out.add(f"m{i}")
    assert time.monotonic() - started < 0.5
    assert wait_for(lambda: out.stats().last_error != "")
    # A batch taken for sending when the connection failed is counted once it is given up.
    assert wait_for(lambda: out.stats().dropped == 1500), out.stats()
    stats = out.stats()
    assert not stats.connected and stats.buffered == 500 and stats.dropped == 1500
    started = time.monotonic()
    out.close(0.5)
    assert time.monotonic() - started < 3
    assert out.stats().dropped == 2000
    assert log.count("closed with 500 message(s) not delivered") == 1


@needs_redis
def test_rejected_messages_are_counted_not_retried(server: RedisTestServer) -> None:
    client_for(server).set("plain", "a string, not a stream")
    log = ListLogger()
    with BufferedRedisStream(port=server.port, stream="plain", logger=log) as out:
        out.add("m")
        assert out.flush(5)
        stats = out.stats()
    assert (stats.sent, stats.rejected) == (0, 1) and "WRONGTYPE" in stats.last_error
    assert log.count("rejected 1 message(s)") == 1


# --- redis action ----------------------------------------------------------------------------


def event(i: int, state: EventState = EventState.NEW) -> Event:
    return Event(f"e{i}", "cam0", "yolo", "person", "0", 0.8, 0.9, 1, 2, 3, str(i),
                 (1, 2, 3, 4), state)  # fmt: skip


@needs_redis
def test_redis_action_end_to_end_and_reconfiguration(server: RedisTestServer) -> None:
    action = RedisAction("events_out", LoggingContext())
    action.set_properties({"port": server.port, "stream": "ev:a", "labels": ["person"]})
    runner = ActionRunner(action)
    assert runner.submit(event(1)) == "queued"
    # Every state change goes out: once_per_event is off for this action by default.
    assert runner.submit(event(1, EventState.END)) == "queued"
    assert wait_for(lambda: runner.stats().fired == 2)
    assert action.writer().flush(5)
    got = [json.loads(m) for m in entries(server, "ev:a")]
    assert [(m["id"], m["state"], m["action"]) for m in got] == [
        ("e1", "NEW", "events_out"),
        ("e1", "END", "events_out"),
    ]
    assert Event.from_dict(got[0]) == event(1)

    action.stream = "ev:b"  # takes effect with the next event
    runner.submit(event(2))
    assert wait_for(lambda: runner.stats().fired == 3)
    assert action.writer().flush(5)
    assert [json.loads(m)["id"] for m in entries(server, "ev:b")] == ["e2"]
    assert len(entries(server, "ev:a")) == 2
    assert runner.close(5)


# --- Metropolis minimal schema ---------------------------------------------------------------


def test_iso_timestamp() -> None:
    stamp = 1714566896_789_999_999
    assert iso_timestamp(stamp) == "2024-05-01T12:34:56.789Z"
    assert iso_timestamp(0) == "1970-01-01T00:00:00.000Z"
    expected = datetime.fromtimestamp(stamp // 10**9, tz=timezone.utc)
    assert iso_timestamp(stamp).startswith(expected.strftime("%Y-%m-%dT%H:%M:%S"))


def test_frame_message_format_and_round_trip() -> None:
    dets = Detections(
        np.array([[10.123, 20.456, 110.0, 220.999], [0, 0, 5.5, 6.25]], np.float32),
        [0.91234, 0.5],
        [0, 2],
        [7, -1],
        ["person", "a|b"],
    )
    msg = frame_message("cam0", 1714566896_789_000_000, 42, dets)
    assert json.loads(json.dumps(msg)) == msg
    assert {k: msg[k] for k in ("version", "id", "@timestamp", "sensorId")} == {
        "version": "4.0",
        "id": "42",
        "@timestamp": "2024-05-01T12:34:56.789Z",
        "sensorId": "cam0",
    }
    assert msg["objects"] == [
        "7|10.12|20.46|110.0|221.0|person|#|0.912",
        "-1|0.0|0.0|5.5|6.25|a/b|#|0.5",
    ]
    first = parse_object(msg["objects"][0])
    assert first == {"id": 7, "left": 10.12, "top": 20.46, "right": 110.0, "bottom": 221.0,
                     "type": "person", "confidence": 0.912, "attributes": []}  # fmt: skip
    for text, i in zip(msg["objects"], range(len(dets)), strict=True):
        obj = parse_object(text)
        np.testing.assert_allclose(
            [obj["left"], obj["top"], obj["right"], obj["bottom"]], dets.xyxy[i], atol=0.005
        )
        assert obj["confidence"] == pytest.approx(float(dets.scores[i]), abs=5e-4)


def test_frame_message_untracked_unlabelled_and_empty() -> None:
    dets = Detections(np.array([[1, 2, 3, 4]], np.float32), [0.25], [3])
    msg = frame_message("s", 0, "f-1", dets)
    assert msg["id"] == "f-1" and msg["objects"] == ["-1|1.0|2.0|3.0|4.0|3|#|0.25"]
    assert frame_message("s", 0, 1, Detections.empty())["objects"] == []
    assert parse_object("957|1834|150|1918|215|Vehicle|#|sedan|Bugatti|0.8")["attributes"] == [
        "sedan",
        "Bugatti",
    ]
    with pytest.raises(ValueError, match="not a minimal-schema object"):
        parse_object("1|2|3")
    with pytest.raises(ValueError, match="not a minimal-schema object"):
        parse_object("x|1|2|3|4|person|#|0.5")

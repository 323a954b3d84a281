"""Event aggregation rules, the SQLite event store, and its durability under kill -9."""

from __future__ import annotations

import csv
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge_vision.core.detections import Detections
from edge_vision.events import Event, EventAggregator, EventState, EventStore

S = 1_000_000_000  # ns per second
REPO = Path(__file__).resolve().parents[2]


def dets(*rows: tuple[int, str, float]) -> Detections:
    """Tracked detections from (track_id, label, score); track -1 means untracked."""
    n = len(rows)
    xyxy = np.array([[10 * i, 0, 10 * i + 5, 5] for i in range(n)], np.float32).reshape(-1, 4)
    return Detections(
        xyxy,
        [r[2] for r in rows],
        [0 if r[1] == "person" else 1 for r in rows],
        [r[0] for r in rows],
        [r[1] for r in rows],
    )


def states(events: list[Event]) -> list[str]:
    return [e.state.name for e in events]


# --- model -----------------------------------------------------------------------------------


def test_event_dict_round_trip() -> None:
    e = Event("a" * 32, "cam", "yolo", "person", "0", 0.5, 0.9, 1, 2, 3, "7", (1, 2, 3, 4),
              EventState.UPDATE, {"zone": "door"})  # fmt: skip
    d = e.to_dict()
    assert d["state"] == "UPDATE" and d["bbox"] == [1.0, 2.0, 3.0, 4.0]
    assert Event.from_dict(json.loads(json.dumps(d))) == e
    assert Event.from_dict({**d, "state": 2}).state is EventState.END


# --- aggregator ------------------------------------------------------------------------------


def test_new_after_min_frames_not_necessarily_consecutive() -> None:
    agg = EventAggregator("cam", "m", min_frames=3, end_after_s=1.0)
    t = 0
    assert agg.update(dets((1, "person", 0.5)), t) == []
    assert agg.update(Detections.empty(), t + S // 10) == []  # a missed frame: gap < end_after
    assert agg.update(dets((1, "person", 0.5)), t + 2 * S // 10) == []
    out = agg.update(dets((1, "person", 0.5)), t + 3 * S // 10)
    assert states(out) == ["NEW"]
    e = out[0]
    assert (e.track_id, e.label, e.class_id, e.frames) == ("1", "person", "0", 3)
    assert (e.begin_ns, e.end_ns) == (0, 3 * S // 10)
    assert e.bbox == (0.0, 0.0, 5.0, 5.0) and len(e.id) == 32


def test_candidate_with_long_gaps_never_becomes_event() -> None:
    agg = EventAggregator("cam", "m", min_frames=3, end_after_s=1.0)
    out: list[Event] = []
    for k in range(5):  # seen every 1.5 s: each gap drops the candidate
        out += agg.update(dets((1, "person", 0.9)), k * 3 * S // 2)
    out += agg.flush()
    assert out == []


def test_update_throttling_and_max_score() -> None:
    agg = EventAggregator("cam", "m", min_frames=1, update_every_s=1.0, update_on_max_score=True)
    dt = S // 10
    assert states(agg.update(dets((1, "person", 0.5)), 0)) == ["NEW"]
    assert agg.update(dets((1, "person", 0.4)), dt) == []  # lower score, too soon
    out = agg.update(dets((1, "person", 0.8)), 2 * dt)  # max score rose: at once
    assert states(out) == ["UPDATE"] and out[0].max_score == pytest.approx(0.8)
    updates = []
    for k in range(3, 25):  # 2.2 s of lower scores: one UPDATE per second
        updates += agg.update(dets((1, "person", 0.6)), k * dt)
    assert [e.end_ns for e in updates] == [12 * dt, 22 * dt]
    assert all(e.score == pytest.approx(0.6) and e.max_score == pytest.approx(0.8) for e in updates)

    quiet = EventAggregator("cam", "m", min_frames=1, update_on_max_score=False)
    quiet.update(dets((1, "person", 0.1)), 0)
    assert quiet.update(dets((1, "person", 0.9)), dt) == []  # rise ignored when disabled


def test_end_after_absence_and_flush() -> None:
    agg = EventAggregator("cam", "m", min_frames=2, end_after_s=1.0)
    agg.update(dets((1, "person", 0.5), (2, "car", 0.7)), 0)
    new = agg.update(dets((1, "person", 0.6), (2, "car", 0.7)), S // 10)
    assert sorted(e.track_id for e in new) == ["1", "2"] and agg.active == 2
    ids = {e.track_id: e.id for e in new}
    # Track 2 disappears; track 1 keeps going. END is checked by stamp on each call.
    assert agg.update(dets((1, "person", 0.6)), S) == []  # 0.9 s absent: not yet
    out = agg.update(dets((1, "person", 0.6)), 12 * S // 10)
    assert states(out) == ["END", "UPDATE"]  # track 1: its 1 s periodic UPDATE is due too
    end = out[0]
    assert (end.id, end.track_id, end.end_ns, end.frames) == (ids["2"], "2", S // 10, 2)
    assert agg.active == 1
    out = agg.flush(2 * S)
    assert states(out) == ["END"] and out[0].id == ids["1"] and out[0].end_ns == 12 * S // 10
    assert agg.active == 0 and agg.flush() == []


def test_untracked_detections_are_frame_level_events_per_label() -> None:
    agg = EventAggregator("cam", "m", min_frames=2)
    frame = dets((-1, "person", 0.3), (-1, "person", 0.7), (-1, "car", 0.5))
    frame.track_ids = None  # untracked detector output
    agg.update(frame, 0)
    out = agg.update(frame, S // 10)
    by_label = {e.label: e for e in out}
    assert set(by_label) == {"person", "car"} and states(out) == ["NEW", "NEW"]
    p = by_label["person"]
    assert p.score == pytest.approx(0.7) and p.frames == 2 and p.track_id == ""
    assert p.bbox == (0.0, 0.0, 0.0, 0.0)


def test_classification_events() -> None:
    agg = EventAggregator("cam", "i3d", min_frames=2, end_after_s=0.5)
    assert agg.update_classification("12", "waving", 0.6, 0) == []
    new = agg.update_classification(12, "waving", 0.7, S // 4, attributes={"window": "16"})
    assert states(new) == ["NEW"] and new[0].class_id == "12"
    assert new[0].attributes == {"window": "16"}
    out = agg.tick(S)
    assert states(out) == ["END"] and out[0].id == new[0].id
    assert out[0].max_score == pytest.approx(0.7)


def test_duplicate_stamp_not_counted_twice() -> None:
    agg = EventAggregator("cam", "m", min_frames=2)
    agg.update(dets((1, "person", 0.5)), 5)
    assert agg.update(dets((1, "person", 0.5)), 5) == []
    assert states(agg.update(dets((1, "person", 0.5)), 6)) == ["NEW"]


# --- store -----------------------------------------------------------------------------------


def ev(i: int, label: str = "person", score: float = 0.5, stream: str = "cam",
       state: EventState = EventState.END) -> Event:  # fmt: skip
    return Event(f"{i:032x}", stream, "m", label, "0", score, score, i * S, i * S + S // 2, 4,
                 str(i), (1.0, 2.0, 3.0, 4.0), state, {"i": str(i)})  # fmt: skip


def test_store_round_trip_and_upsert(tmp_path: Path) -> None:
    with EventStore(tmp_path / "ev.db") as store:
        e = ev(1, state=EventState.NEW)
        store.put(e)
        assert store.get(e.id) == e and store.get("nope") is None
        e.state, e.frames, e.end_ns, e.max_score = EventState.END, 9, 5 * S, 0.9
        e.attributes["zone"] = "door"
        store.put(e)
        assert store.count() == 1 and store.get(e.id) == e
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_store_queries(tmp_path: Path) -> None:
    with EventStore(tmp_path / "ev.db") as store:
        for i in range(10):
            store.put(ev(i, label="car" if i % 2 else "person", score=i / 10,
                         stream="a" if i < 5 else "b",
                         state=EventState.END if i < 8 else EventState.UPDATE))  # fmt: skip

        def idx(**q: object) -> list[int]:
            return [int(e.id, 16) for e in store.query(**q)]

        assert idx() == list(range(9, -1, -1))
        assert idx(order="asc", limit=3) == [0, 1, 2]
        assert idx(since_ns=7 * S) == [9, 8, 7]  # overlapping: event 6 ends at 6.5 s
        assert idx(until_ns=2 * S) == [2, 1, 0]
        assert idx(since_ns=3 * S, until_ns=5 * S, order="asc") == [3, 4, 5]
        assert idx(label="car") == [9, 7, 5, 3, 1]
        assert idx(min_score=0.75) == [9, 8]
        assert idx(stream="a", label="person") == [4, 2, 0]
        assert idx(state=EventState.UPDATE) == [9, 8] and idx(state="update") == [9, 8]
        with pytest.raises(ValueError):
            store.query(order="sideways")


def test_retention_by_age_and_count(tmp_path: Path) -> None:
    with EventStore(tmp_path / "age.db", max_age_s=3.0) as store:
        for i in range(10):
            store.put(ev(i))
        # now = 10 s: keep events that ended at or after 7 s (7.5, 8.5, 9.5).
        assert store.prune(10 * S) == 7
        assert sorted(int(e.id, 16) for e in store.query()) == [7, 8, 9]
    with EventStore(tmp_path / "count.db", max_events=4, prune_every=5) as store:
        for i in range(9):  # prune ran after the 5th put only
            store.put(ev(i))
        assert store.count() == 8
        store.put(ev(9))  # 10th put: prune again
        assert [int(e.id, 16) for e in store.query()] == [9, 8, 7, 6]


def test_store_thread_safe(tmp_path: Path) -> None:
    import threading

    with EventStore(tmp_path / "ev.db") as store:

        def work(base: int) -> None:
            for i in range(50):
                store.put(ev(base + i))
                store.query(limit=5)

        threads = [threading.Thread(target=work, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count() == 200


def test_exports(tmp_path: Path) -> None:
    with EventStore(tmp_path / "ev.db") as store:
        for i in range(4):
            store.put(ev(i, label="car" if i % 2 else "person"))
        assert store.export_json(tmp_path / "e.json", label="car", order="asc") == 2
        data = json.loads((tmp_path / "e.json").read_text())
        assert [Event.from_dict(d) for d in data] == [ev(1, "car"), ev(3, "car")]
        assert store.export_csv(tmp_path / "e.csv") == 4
        with open(tmp_path / "e.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["id"] for r in rows] == [ev(i).id for i in (3, 2, 1, 0)]
        r = rows[0]
        assert (r["label"], r["state"], r["x2"], r["begin_ns"]) == ("car", "END", "3.0", str(3 * S))
        assert json.loads(r["attributes"]) == {"i": "3"}


_WRITER = """
import sys, uuid
from edge_vision.events import Event, EventState, EventStore
store = EventStore(sys.argv[1], max_events=100_000)
i = 0
while True:
    e = Event(uuid.uuid4().hex, "cam", "m", "person", "0", 0.5, 0.5, i, i + 1, 1, str(i),
              (0.0, 0.0, 1.0, 1.0), EventState.NEW, {"k": "v" * 50})
    store.put(e)
    e.state, e.frames = EventState.END, 2  # an in-place upsert of the same row
    store.put(e)
    print(e.id, flush=True)
    i += 1
"""


def test_events_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked: list[str] = []
    deadline = time.monotonic() + 3.0
    try:
        while len(acked) < 500 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
        child.send_signal(signal.SIGKILL)  # mid-stream: the child is still writing
    finally:
        child.kill()
        rest = child.stdout.read()
        child.wait()
    assert child.returncode == -signal.SIGKILL
    # Lines printed before the kill are acked too; a partial last line is not an ack.
    acked += [x for x in rest.split("\n") if len(x) == 32]
    assert len(acked) >= 100, "child did not get far enough to test anything"

    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = dict(con.execute("SELECT id, state FROM events").fetchall())
    finally:
        con.close()
    missing = [i for i in acked if i not in stored]
    assert missing == []
    assert all(stored[i] == int(EventState.END) for i in acked)


def test_annotate_updates_an_open_tracked_event_once_per_change() -> None:
    agg = EventAggregator("cam0", "m", min_frames=1, update_every_s=100.0)
    tracked = Detections(
        np.array([[0, 0, 10, 10]], np.float32),
        np.array([0.5], np.float32),
        np.array([0], np.int32),
        track_ids=np.array([4], np.int64),
        labels=["person"],
    )
    (new,) = agg.update(tracked, 1_000)
    assert agg.annotate("9", {"zone": "door"}) is None  # unknown track
    update = agg.annotate("4", {"zone": "door"})
    assert update is not None and update.id == new.id
    assert (update.state, update.attributes) == (EventState.UPDATE, {"zone": "door"})
    assert agg.annotate("4", {"zone": "door"}) is None  # nothing new
    assert agg.tracked_ids() == ["4"]
    (end,) = agg.flush()
    assert end.attributes == {"zone": "door"}

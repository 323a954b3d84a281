"""``edge-vision events``: list, filter, follow and export a real event store."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_vision.cli.events import parse_time
from edge_vision.cli.main import main
from edge_vision.events import Event, EventState, EventStore


def _event(i: int, label: str, max_score: float, state: EventState, age_s: float) -> Event:
    # Ages are from now, not from import time: `follow` starts one minute back from its start.
    end = time.time_ns() - int(age_s * 1e9)
    return Event(
        id=f"event{i:04d}",
        stream="cam0",
        model="nanodet-m",
        label=label,
        class_id="0",
        score=max_score - 0.1,
        max_score=max_score,
        begin_ns=end - 2 * 10**9,
        end_ns=end,
        frames=20,
        track_id=str(i),
        state=state,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "events.db"
    with EventStore(path) as store:
        store.put_many(
            [
                _event(1, "person", 0.9, EventState.END, age_s=3600),  # an hour ago
                _event(2, "person", 0.5, EventState.END, age_s=120),
                _event(3, "car", 0.8, EventState.UPDATE, age_s=1),
            ]
        )
    return path


def test_parse_time_forms() -> None:
    assert parse_time("10m", now_ns=10**12) == 10**12 - 600 * 10**9
    assert parse_time("1.5h", now_ns=10**13) == 10**13 - 5400 * 10**9
    assert parse_time("123") == 123
    assert parse_time("2026-01-02T03:04:05+00:00") == 1767323045 * 10**9
    with pytest.raises(ValueError, match="is not a time"):
        parse_time("yesterday")


def test_list_filters_and_prints_a_table(db: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["events", "list", "--db", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "begin",
        "duration",
        "stream",
        "label",
        "track",
        "frames",
        "max",
        "state",
        "id",
    ]
    # begin is "date time": the track is the 6th whitespace-separated field.
    assert [ln.split()[5] for ln in lines[1:]] == ["3", "2", "1"]  # newest first

    assert main(["events", "list", "--db", str(db), "--label", "person", "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in rows] == ["event0002", "event0001"]

    assert main(["events", "list", "--db", str(db), "--since", "10m", "--json"]) == 0
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == [
        "event0003",
        "event0002",
    ]
    assert main(["events", "list", "--db", str(db), "--min-score", "0.85", "--json"]) == 0
    assert [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()] == ["event0001"]


def test_export_csv_and_json(db: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out_csv = tmp_path / "person.csv"
    assert main(["events", "export", str(out_csv), "--db", str(db), "--label", "person"]) == 0
    with open(out_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["id"] for r in rows) == ["event0001", "event0002"]
    assert {r["state"] for r in rows} == {"END"}

    out_json = tmp_path / "all.json"
    assert main(["events", "export", str(out_json), "--db", str(db)]) == 0
    assert len(json.loads(out_json.read_text())) == 3
    assert "3 events written" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_code_2(tmp_path: Path, capsys) -> None:
    assert main(["events", "list", "--db", str(tmp_path / "none.db")]) == 2
    assert "no event database at" in capsys.readouterr().err
    db = tmp_path / "e.db"
    EventStore(db).close()
    assert main(["events", "list", "--db", str(db), "--since", "soon"]) == 2
    assert "'soon' is not a time" in capsys.readouterr().err
    assert main(["events", "export", str(tmp_path / "x.txt"), "--db", str(db)]) == 2


def test_follow_prints_new_updated_and_ended_events(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    store = EventStore(db)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-X",
            "faulthandler",  # SIGABRT dumps every thread's stack (see below)
            "-m",
            "edge_vision.cli.main",
            "events",
            "follow",
            "--db",
            str(db),
            "--interval",
            "0.1",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # it is polling an empty store
        live = _event(7, "person", 0.6, EventState.NEW, age_s=0)
        store.put(live)
        first = json.loads(proc.stdout.readline())
        assert (first["id"], first["state"]) == ("event0007", "NEW")
        live.state, live.frames, live.end_ns = EventState.UPDATE, 30, live.end_ns + 10**9
        store.put(live)
        update = json.loads(proc.stdout.readline())  # printed before the END is written
        live.state, live.frames = EventState.END, 31
        store.put(live)
        end = json.loads(proc.stdout.readline())
        assert [(d["state"], d["frames"]) for d in (update, end)] == [("UPDATE", 30), ("END", 31)]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"follow did not stop 30 s after SIGINT; its stacks:\n{err}")
        finally:
            store.close()
    assert code == 0, proc.stderr.read() if proc.stderr else ""

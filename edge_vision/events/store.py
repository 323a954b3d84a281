"""SQLite event store: one row per event id, upserted on every NEW/UPDATE/END.

Durability: WAL mode with ``synchronous=NORMAL`` (the default here). In WAL mode every commit
is written to the WAL file with write() before ``put()`` returns, so it lives in the OS page
cache and survives the process being killed (kill -9, crash); only an OS crash or power loss can
drop the last few commits, never corrupt the database. FULL adds an fsync per commit, which
costs a lot on SD cards/eMMC at event rates; pass ``synchronous="FULL"`` where power loss
matters more than throughput.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from edge_vision.events.model import Event, EventState

_COLUMNS = (
    "id", "stream", "model", "label", "class_id", "score", "max_score", "begin_ns", "end_ns",
    "frames", "track_id", "x1", "y1", "x2", "y2", "state", "attributes",
)  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    model TEXT NOT NULL,
    label TEXT NOT NULL,
    class_id TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    begin_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    track_id TEXT NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    state INTEGER NOT NULL,
    attributes TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_begin ON events (begin_ns);
CREATE INDEX IF NOT EXISTS events_end ON events (end_ns);
CREATE INDEX IF NOT EXISTS events_label ON events (label, begin_ns);
"""

_UPSERT = (
    f"INSERT INTO events ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS if c not in ("id", "begin_ns"))
)


def _row(e: Event) -> tuple[Any, ...]:
    x1, y1, x2, y2 = e.bbox
    return (
        e.id, e.stream, e.model, e.label, e.class_id, float(e.score), float(e.max_score),
        int(e.begin_ns), int(e.end_ns), int(e.frames), e.track_id, float(x1), float(y1),
        float(x2), float(y2), int(e.state), json.dumps(e.attributes, sort_keys=True),
    )  # fmt: skip


def _event(r: sqlite3.Row) -> Event:
    return Event(
        id=r["id"],
        stream=r["stream"],
        model=r["model"],
        label=r["label"],
        class_id=r["class_id"],
        score=r["score"],
        max_score=r["max_score"],
        begin_ns=r["begin_ns"],
        end_ns=r["end_ns"],
        frames=r["frames"],
        track_id=r["track_id"],
        bbox=(r["x1"], r["y1"], r["x2"], r["y2"]),
        state=EventState(r["state"]),
        attributes=json.loads(r["attributes"]),
    )


def default_database() -> str:
    """``$XDG_DATA_HOME/edge_vision/events.db`` (``~/.local/share/...`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "edge_vision" / "events.db")


class EventStore:
    """Thread-safe event store: one connection guarded by a lock (SQLite serialises writers
    anyway, and one connection keeps prepared statements cached).

    Retention: ``prune(now_ns)`` deletes events that ended more than ``max_age_s`` before
    ``now_ns``, then the oldest (by end) beyond ``max_events``. ``put`` calls it every
    ``prune_every`` puts with the newest event end stamp seen as "now", so retention follows the
    source clock (sim time and replays behave like live streams).
    """

    def __init__(
        self,
        path: str | Path,
        max_age_s: float | None = None,
        max_events: int | None = None,
        prune_every: int = 100,
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous={synchronous!r}: NORMAL, FULL or EXTRA keep commits")
        self.path = str(path)
        self.max_age_s = max_age_s
        self.max_events = max_events
        self.prune_every = max(1, prune_every)
        self._lock = threading.Lock()
        self._puts = 0
        self._latest_ns = 0
        # isolation_level=None: autocommit, so each put is its own committed transaction.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA busy_timeout=5000")  # other processes may read/export
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def put(self, event: Event) -> None:
        """Insert or update (by id) one event; committed when this returns."""
        with self._lock:
            self._db.execute(_UPSERT, _row(event))
            self._latest_ns = max(self._latest_ns, int(event.end_ns))
            self._puts += 1
            due = self._puts % self.prune_every == 0
        if due:
            self.prune(self._latest_ns)

    def put_many(self, events: Iterable[Event]) -> None:
        """Several events in one transaction (one commit instead of one per event)."""
        events = list(events)
        rows = [_row(e) for e in events]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(_UPSERT, rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._latest_ns = max([self._latest_ns, *(int(e.end_ns) for e in events)])
            due = self._puts // self.prune_every != (self._puts + len(rows)) // self.prune_every
            self._puts += len(rows)
        if due:
            self.prune(self._latest_ns)

    def get(self, event_id: str) -> Event | None:
        with self._lock:
            r = self._db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if r is None else _event(r)

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def query(
        self,
        since_ns: int | None = None,
        until_ns: int | None = None,
        label: str | None = None,
        min_score: float | None = None,
        stream: str | None = None,
        state: EventState | int | str | None = None,
        limit: int | None = 100,
        order: str = "desc",
    ) -> list[Event]:
        """Events overlapping [since_ns, until_ns] (end >= since, begin <= until), filtered,
        ordered by begin stamp. ``min_score`` applies to ``max_score``; ``limit=None``: all."""
        if order.lower() not in ("asc", "desc"):
            raise ValueError(f"order={order!r}: 'asc' or 'desc'")
        where: list[str] = []
        args: list[Any] = []
        if since_ns is not None:
            where.append("end_ns >= ?")
            args.append(int(since_ns))
        if until_ns is not None:
            where.append("begin_ns <= ?")
            args.append(int(until_ns))
        if label is not None:
            where.append("label = ?")
            args.append(label)
        if min_score is not None:
            where.append("max_score >= ?")
            args.append(float(min_score))
        if stream is not None:
            where.append("stream = ?")
            args.append(stream)
        if state is not None:
            st = EventState[state.upper()] if isinstance(state, str) else EventState(int(state))
            where.append("state = ?")
            args.append(int(st))
        sql = "SELECT * FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        d = order.upper()
        sql += f" ORDER BY begin_ns {d}, id {d}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_event(r) for r in rows]

    def prune(self, now_ns: int) -> int:
        """Apply the retention limits; returns the number of events deleted."""
        deleted = 0
        with self._lock:
            if self.max_age_s is not None:
                cutoff = int(now_ns - self.max_age_s * 1e9)
                cur = self._db.execute("DELETE FROM events WHERE end_ns < ?", (cutoff,))
                deleted += cur.rowcount
            if self.max_events is not None:
                # Delete everything older than the max_events newest (ties broken by id).
                deleted += self._db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events "
                    "ORDER BY end_ns DESC, id DESC LIMIT -1 OFFSET ?)",
                    (int(self.max_events),),
                ).rowcount
        return deleted

    def export_json(self, path: str | Path, **query: Any) -> int:
        """Write the events matching ``query`` (see ``query``) as a JSON list; returns count."""
        query.setdefault("limit", None)
        events = self.query(**query)
        Path(path).write_text(json.dumps([e.to_dict() for e in events], indent=1))
        return len(events)

    def export_csv(self, path: str | Path, **query: Any) -> int:
        """Write the matching events as CSV (bbox split in x1..y2, attributes as JSON)."""
        query.setdefault("limit", None)
        events = self.query(**query)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(_COLUMNS)
            for e in events:
                d = e.to_dict()
                x1, y1, x2, y2 = d.pop("bbox")
                d.update(x1=x1, y1=y1, x2=x2, y2=y2)
                d["attributes"] = json.dumps(d["attributes"], sort_keys=True)
                w.writerow([d[c] for c in _COLUMNS])
        return len(events)

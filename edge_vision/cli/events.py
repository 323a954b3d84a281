"""``edge-vision events``: list, follow and export the events an event_aggregator stored.

It reads the SQLite store directly (WAL mode lets it read while the node writes), so it works
without ROS and after the pipeline stopped. ``--db`` defaults to the node's default database.
Times (``--since``/``--until``) take a relative age (``90s``, ``10m``, ``2h``, ``7d``), an ISO
date/time (local time unless it carries an offset) or integer nanoseconds; they are compared
with the events' source stamps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["parse_time", "register"]

EXIT_USAGE = 2
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now_ns: int | None = None) -> int:
    """``10m`` (ago), an ISO date/time or integer ns -> ns since the epoch (ValueError if none)."""
    text = text.strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    if m := _AGE.match(text):
        return now_ns - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1e9)
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use an age like 10m/2h/7d, an ISO date/time or integer ns"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as typed
    return int(when.timestamp() * 1e9)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "events",
        help="list, follow and export stored events",
        description="Events from an event_aggregator's store (SQLite), without ROS.",
    )
    parser.set_defaults(func=lambda _args: _usage(parser))
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", type=Path, default=None, help="event database (default: the node's default)"
    )
    common.add_argument("--since", help="events still going on at/after this time (e.g. 10m)")
    common.add_argument("--until", help="events that began at/before this time")
    common.add_argument("--label", help="only this label")
    common.add_argument("--stream", help="only this stream")
    common.add_argument("--min-score", type=float, default=None, help="minimum max_score")
    common.add_argument("--state", choices=("NEW", "UPDATE", "END"), help="only this state")

    p = actions.add_parser("list", parents=[common], help="a table of events, newest first")
    p.add_argument("--limit", type=int, default=50, help="most events shown (0: all)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=_list)

    p = actions.add_parser(
        "follow", parents=[common], help="print events as they start, change and end"
    )
    p.add_argument("--interval", type=float, default=0.5, help="poll period in seconds")
    p.add_argument("--json", action="store_true", help="JSON lines instead of text")
    p.set_defaults(func=_follow)

    p = actions.add_parser("export", parents=[common], help="write matching events to a file")
    p.add_argument("output", type=Path, help="FILE.csv or FILE.json")
    p.add_argument("--format", choices=("csv", "json"), help="default: from the file suffix")
    p.set_defaults(func=_export)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def _query(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "since_ns": parse_time(args.since) if args.since else None,
        "until_ns": parse_time(args.until) if args.until else None,
        "label": args.label,
        "stream": args.stream,
        "min_score": args.min_score,
        "state": args.state,
    }


def _open(args: argparse.Namespace):
    from edge_vision.events import EventStore, default_database

    path = Path(args.db) if args.db else Path(default_database())
    if not path.exists():
        raise FileNotFoundError(f"no event database at {path} (start an event_aggregator or --db)")
    return EventStore(path)


def _run(args: argparse.Namespace, body: Any) -> int:
    try:
        query = _query(args)
        with _open(args) as store:
            return int(body(store, query))
    except (ValueError, FileNotFoundError) as exc:
        print(f"edge-vision events: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _clock(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


_HEADER = ("begin", "duration", "stream", "label", "track", "frames", "max", "state", "id")


def _row(e: Any) -> tuple[str, ...]:
    return (
        _clock(e.begin_ns),
        f"{e.duration_s:.1f}s",
        e.stream,
        e.label,
        e.track_id or "-",
        str(e.frames),
        f"{e.max_score:.2f}",
        e.state.name,
        e.id[:8],
    )


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _list(args: argparse.Namespace) -> int:
    def body(store: Any, query: dict[str, Any]) -> int:
        events = store.query(**query, limit=args.limit or None)
        if args.json:
            for e in events:
                print(json.dumps(e.to_dict()))
        elif events:
            _print_table([_HEADER, *(_row(e) for e in events)])
        else:
            print("no events match", file=sys.stderr)
        return 0

    return _run(args, body)


def _follow(args: argparse.Namespace) -> int:
    def body(store: Any, query: dict[str, Any]) -> int:
        seen: dict[str, tuple[int, int]] = {}  # id -> (state, frames) last printed
        open_ends: dict[str, int] = {}  # events not ended yet -> their latest end stamp
        # Start with what is open or ended in the last minute, unless --since says otherwise.
        floor = query.pop("since_ns") or time.time_ns() - 60 * 10**9
        try:
            while True:
                for e in store.query(**query, since_ns=floor, limit=None, order="asc"):
                    key = (int(e.state), e.frames)
                    if seen.get(e.id) == key:
                        continue
                    seen[e.id] = key
                    if e.state.name == "END":
                        open_ends.pop(e.id, None)
                    else:
                        open_ends[e.id] = e.end_ns
                    print(json.dumps(e.to_dict()) if args.json else "  ".join(_row(e)), flush=True)
                    # An event's end only grows, so the next poll reads from the oldest open
                    # one (or from the newest seen): the window stays small on long runs.
                    floor = max(floor, e.end_ns) if not open_ends else min(open_ends.values())
                if len(seen) > 100_000:  # ended events never change again
                    seen = {k: v for k, v in seen.items() if k in open_ends}
                time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0

    return _run(args, body)


def _export(args: argparse.Namespace) -> int:
    fmt = args.format or args.output.suffix.lstrip(".").lower()
    if fmt not in ("csv", "json"):
        print(
            f"edge-vision events: cannot tell the format of {args.output}; use --format",
            file=sys.stderr,
        )
        return EXIT_USAGE

    def body(store: Any, query: dict[str, Any]) -> int:
        export = store.export_csv if fmt == "csv" else store.export_json
        n = export(args.output, **query)
        print(f"{n} events written to {args.output}")
        return 0

    return _run(args, body)

#!/usr/bin/env python3
"""Events and actions: aggregation and rule throughput (core, no ROS) and the latency from a
frame to an action firing over real DDS, in one run.

    .venv/bin/python bench/events_actions.py [--objects 20] [--seconds 20]

1. Aggregation: synthetic tracker output (``--objects`` tracked objects per frame at 30 fps
   source stamps; each object lives 2-10 s, then a new track id replaces it; 5 % of
   detections missed per frame) through ``EventAggregator.update`` with the node's defaults
   (min_frames 3, end_after_s 1, update_every_s 1, UPDATE on max-score rise), alone and with
   ``EventStore.put_many`` per frame that emitted events (WAL, synchronous NORMAL, the node's
   retention defaults, in a temp dir). Aim: >= 10,000 detections/s.
2. Rules: ``RuleSet.match`` over the events step 1 emitted (their NEW/UPDATE/END mix), each
   given a stream cam0-cam3 and, for 3 of 4, a ``zone`` attribute, against the two EDGEMATRIX
   samples merged, config/rules/example.yaml and 20 generated rules of 3-5 conditions.
   Aim: >= 100,000 rule evaluations/s. Then ``ActionRunner.submit`` with a do-nothing action,
   and the ROS message conversions the nodes do, per call.
3. End to end over real DDS, detector-free (the bench publishes synthetic Detection2DArray
   frames, header stamp = wall clock at publish, so the figures are the events/actions path
   only): ``tracker`` -> ``event_aggregator`` (min_frames 1) -> ``action_trigger`` (one rule:
   state == NEW -> ``alert``), a new object every ``--new-every`` frames; latency = arrival in
   the bench - the stamp of the frame that made the event (the Alert's and Event's stamp),
   with the intermediate topics subscribed for per-hop figures. Then ``event_aggregator``
   alone, fed tracked detections directly.
DDS stays on loopback on a domain of its own (edge_vision.testing.ros_harness).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_vision.testing.ros_harness import isolate_ros_environment

ENV = isolate_ros_environment(domain_id=150 + os.getpid() % 50)

from _common import node_breakdown, print_header, print_table  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose  # noqa: E402

from edge_vision.actions import Action, ActionRunner, EventFilter, LoggingContext  # noqa: E402
from edge_vision.core.detections import Detections  # noqa: E402
from edge_vision.events import Event, EventAggregator, EventState, EventStore  # noqa: E402
from edge_vision.msg import Alert  # noqa: E402
from edge_vision.msg import Event as EventMsg  # noqa: E402
from edge_vision.nodes.event_aggregator import events_qos  # noqa: E402
from edge_vision.ros.conversions import (  # noqa: E402
    detections_to_msg,
    event_to_msg,
    msg_to_detections,
    msg_to_event,
)
from edge_vision.ros.image_conversion import ns_to_stamp, stamp_to_ns  # noqa: E402
from edge_vision.rules import RuleSet, load_rules, rules_from_data  # noqa: E402
from edge_vision.testing.ros_harness import Collector, NodeProcess, RosClient  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "rules"
T0 = 1_700_000_000 * 10**9
# (label, COCO class id, share of objects)
CLASSES = (("person", 0, 0.6), ("car", 2, 0.25), ("bicycle", 1, 0.1), ("dog", 16, 0.05))
WIDTH, HEIGHT = 1280, 720


# --- 1. aggregation ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Obj:
    track_id: int
    label: str
    class_id: int
    x: float
    y: float
    w: float
    h: float
    vx: float
    vy: float
    score: float
    left: int  # frames to live


def synthetic_frames(
    objects: int, frames: int, fps: float, seed: int = 0, miss: float = 0.05
) -> list[tuple[Detections, int]]:
    """Tracker output: ``objects`` live tracks per frame; each lives 2-10 s, then a new id."""
    rng = np.random.default_rng(seed)
    shares = np.array([c[2] for c in CLASSES])
    next_id = 1

    def spawn(first: bool = False) -> _Obj:
        nonlocal next_id
        label, cid, _ = CLASSES[int(rng.choice(len(CLASSES), p=shares))]
        w, h = (rng.uniform(40, 90), rng.uniform(100, 220)) if cid == 0 else rng.uniform(60, 200, 2)
        life = int(rng.uniform(2, 10) * fps)
        o = _Obj(
            next_id, label, cid, rng.uniform(0, WIDTH - w), rng.uniform(0, HEIGHT - h), w, h,
            rng.normal(0, 2), rng.normal(0, 1), rng.uniform(0.4, 0.95),
            int(rng.integers(1, life)) if first else life,
        )  # fmt: skip
        next_id += 1
        return o

    live = [spawn(first=True) for _ in range(objects)]
    out = []
    for f in range(frames):
        noise = rng.normal(0, 0.03, objects)
        seen = rng.random(objects) >= miss
        rows = []
        for i in range(objects):
            o = live[i]
            if o.left <= 0:
                live[i] = o = spawn()
            o.left -= 1
            o.x = min(max(o.x + o.vx, 0.0), WIDTH - o.w)
            o.y = min(max(o.y + o.vy, 0.0), HEIGHT - o.h)
            if seen[i]:
                s = min(max(o.score + noise[i], 0.05), 0.99)
                rows.append((o.x, o.y, o.x + o.w, o.y + o.h, s, o.class_id, o.track_id, o.label))
        xyxy = np.array([r[:4] for r in rows], np.float32).reshape(-1, 4)
        dets = Detections(
            xyxy,
            [r[4] for r in rows],
            [r[5] for r in rows],
            [r[6] for r in rows],
            [r[7] for r in rows],
        )
        out.append((dets, T0 + round(f * 1e9 / fps)))
    return out


def aggregate(
    frames: list[tuple[Detections, int]], store: EventStore | None
) -> tuple[float, float, list[Event]]:
    """(seconds in total, seconds in put_many, events emitted)."""
    agg = EventAggregator("cam0", "nanodet-m")  # the node's defaults
    emitted: list[Event] = []
    in_store = 0.0
    perf = time.perf_counter
    t0 = perf()
    for dets, stamp in frames:
        events = agg.update(dets, stamp)
        if events:
            if store is not None:
                s0 = perf()
                store.put_many(events)
                in_store += perf() - s0
            emitted.extend(events)
    return perf() - t0, in_store, emitted


def bench_aggregation(frames: list[tuple[Detections, int]], repeats: int) -> dict[str, Any]:
    detections = sum(len(d) for d, _ in frames)
    alone, with_store, share = [], [], []
    events: list[Event] = []
    for _ in range(repeats):
        seconds, _, events = aggregate(frames, None)
        alone.append(detections / seconds)
    for _ in range(repeats):
        # The event_aggregator node's defaults: 30 days, 1,000,000 events, NORMAL.
        with (
            tempfile.TemporaryDirectory(prefix="ev-bench-") as tmp,
            EventStore(
                Path(tmp) / "events.db", max_age_s=30 * 86400, max_events=1_000_000
            ) as store,
        ):
            seconds, in_store, _ = aggregate(frames, store)
            assert store.count() == len({e.id for e in events})
        with_store.append(detections / seconds)
        share.append(in_store / seconds)
    return {
        "frames": len(frames),
        "detections": detections,
        "alone": statistics.median(alone),
        "with_store": statistics.median(with_store),
        "store_share": statistics.median(share),
        "events": events,
        "states": Counter(e.state.name for e in events),
        "frames_with_events": len({e.end_ns for e in events if e.state != EventState.END}),
    }


# --- 2. rules and the runner ------------------------------------------------------------------


def edgematrix_rules() -> RuleSet:
    rules = [
        r
        for f in ("edgematrix_record.json", "edgematrix_upload.json")
        for r in json.loads((RULES / f).read_text())["rules"]
    ]
    return rules_from_data({"rules": rules}, "edgematrix samples merged")


def generated_rules(count: int = 20, seed: int = 1) -> tuple[RuleSet, int]:
    """``count`` rules of 3-5 conditions (some in an ``or`` list or a nested group)."""
    rng = np.random.default_rng(seed)
    labels = [c[0] for c in CLASSES] + ["truck"]

    def pick(seq: list[Any]) -> Any:
        return seq[int(rng.integers(len(seq)))]

    pool: list[Callable[[], dict[str, Any]]] = [
        lambda: {"key": "label", "operator": "==", "value": pick(labels)},
        lambda: {"key": "object", "operator": "in", "value": [pick(labels), pick(labels)]},
        lambda: {"key": "max_score", "operator": ">=", "value": round(rng.uniform(0.4, 0.9), 2)},
        lambda: {"key": "probability", "operator": ">=", "value": int(rng.integers(30, 90))},
        lambda: {"key": "state", "operator": "==", "value": pick(["NEW", "UPDATE", "END"])},
        lambda: {"key": "tracking_status", "operator": "==", "value": "ended"},
        lambda: {"key": "duration_s", "operator": ">=", "value": round(rng.uniform(0.5, 5), 1)},
        lambda: {"key": "frames", "operator": ">=", "value": int(rng.integers(3, 60))},
        lambda: {"key": "stream", "operator": "in", "value": ["cam0", pick(["cam1", "cam2"])]},
        lambda: {"key": "attributes.zone", "operator": "==", "value": pick(["door", "bay"])},
        lambda: {"key": "class_id", "operator": "!=", "value": pick([0, 2, 16])},
        lambda: {"key": "track_id", "operator": "not in", "value": ["1", "2", "3"]},
    ]
    rules, conditions = [], 0
    for i in range(count):
        n = int(rng.integers(3, 6))
        conds = [pick(pool)() for _ in range(n)]
        rule: dict[str, Any] = {"name": f"rule_{i}", "action": pick(["alert", "record"])}
        kind = i % 4
        if kind == 1:  # the last two in an `or` list
            rule["and"], rule["or"] = conds[:-2], conds[-2:]
        elif kind == 2:  # the last two in a nested group
            rule["and"] = [*conds[:-2], {"or": conds[-2:]}]
        else:
            rule["and"] = conds
        rules.append(rule)
        conditions += n
    return rules_from_data({"rules": rules}, f"{count} generated rules"), conditions


def rule_events(events: list[Event], seed: int = 2) -> list[Event]:
    """The aggregated events, each on a stream cam0-cam3 and, for 3 of 4, in a zone."""
    rng = np.random.default_rng(seed)
    zones = ["door", "bay", "street", None]
    out = []
    for e in events:
        zone = zones[int(rng.integers(4))]
        out.append(
            replace(
                e,
                stream=f"cam{int(rng.integers(4))}",
                attributes={"zone": zone} if zone else {},
            )
        )
    return out


def time_match(rules: RuleSet, events: list[Event], seconds: float) -> dict[str, float]:
    match = rules.match
    matched = sum(len(match(e)) for e in events)
    n = 0
    t0 = time.perf_counter()
    while True:
        for e in events:
            match(e)
        n += len(events)
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            break
    enabled = sum(r.enabled for r in rules)
    return {
        "rules": enabled,
        "events_s": n / elapsed,
        "evals_s": n * enabled / elapsed,
        "matches_per_event": matched / len(events),
    }


class _Nop(Action):
    """Does nothing."""

    type_name = "bench_nop"

    def on_event(self, event: Event, args: Mapping[str, Any]) -> None:
        return None


class _NopFiltered(EventFilter):
    """Does nothing, with the event filter properties of alert/log/record (none set)."""

    type_name = "bench_nop_filtered"

    def on_event(self, event: Event, args: Mapping[str, Any]) -> None:
        return None


def time_submit(action: Action, events: list[Event], count: int) -> dict[str, float]:
    """µs per submit: ``count`` events with new ids (all queued), then the same again (all
    skipped by once_per_event). The worker drains the queue meanwhile, as in the node."""
    fresh = [replace(events[i % len(events)], id=f"ev{i}") for i in range(count)]
    runner = ActionRunner(action, queue_size=count + 1, logger=logging.getLogger("bench"))
    args: dict[str, Any] = {}
    try:
        results: Counter[str] = Counter()
        t0 = time.perf_counter()
        for e in fresh:
            results[runner.submit(e, args, "rule")] += 1
        queued = (time.perf_counter() - t0) / count * 1e6
        assert results == {"queued": count}, results
        results.clear()
        t0 = time.perf_counter()
        for e in fresh:
            results[runner.submit(e, args, "rule")] += 1
        skipped = (time.perf_counter() - t0) / count * 1e6
        assert results == {"skipped_once": count}, results
    finally:
        runner.close()
    return {"queued_us": queued, "skipped_us": skipped}


def per_call_us(fn: Callable[[], Any], seconds: float = 0.5) -> float:
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            fn()
        n += 100
    return (time.perf_counter() - t0) / n * 1e6


def bench_conversions(frames: list[tuple[Detections, int]], events: list[Event]) -> list[list[str]]:
    dets = max((d for d, _ in frames[:100]), key=len)
    header = Header(frame_id="camera")
    header.stamp = ns_to_stamp(T0)
    det_msg = detections_to_msg(dets, header)
    event = next(e for e in events if e.attributes) if any(e.attributes for e in events) else None
    event = event or events[0]
    ev_msg = event_to_msg(event)
    n = len(dets)
    calls: list[tuple[str, Callable[[], Any], str]] = [
        (f"`msg_to_detections`, {n} tracked detections", lambda: msg_to_detections(det_msg), ".0f"),
        (
            f"`detections_to_msg`, {n} tracked detections",
            lambda: detections_to_msg(dets, header),
            ".0f",
        ),
        ("`event_to_msg`, one event", lambda: event_to_msg(event), ".1f"),
        ("`msg_to_event`, one event", lambda: msg_to_event(ev_msg), ".1f"),
    ]
    return [[what, format(per_call_us(fn), fmt)] for what, fn, fmt in calls]


# --- 3. end to end over DDS --------------------------------------------------------------------


class DetectionFeeder:
    """Publishes Detection2DArray frames at ``fps``: ``objects`` boxes on a grid, one new object
    every ``new_every`` frames (replacing the oldest). Stamp = wall clock just before publish.
    ``tracked``: set ``Detection2D.id`` (the object's id), as a tracker would.

    A new object takes the grid cell vacated longest ago, so that it is not re-identified as the
    track that just left (ByteTrack keeps lost tracks for 30 frames). When the thread is late
    it skips frames rather than publishing a burst to catch up (a camera does not do that)."""

    COLS, ROWS = 8, 4

    def __init__(
        self, ros: RosClient, topic: str, objects: int, new_every: int, tracked: bool
    ) -> None:
        if objects > self.COLS * self.ROWS:
            raise ValueError(f"at most {self.COLS * self.ROWS} objects in the end-to-end part")
        self._pub = ros.node.create_publisher(Detection2DArray, topic, QoSProfile(depth=10))
        self._rng = np.random.default_rng(3)
        self._objects = objects
        self._new_every = new_every
        self._tracked = tracked
        self._slots: list[tuple[int, float, float, float]] = []  # (id, x, y, score), oldest first
        self._next_id = 1
        cells = list(range(self.COLS * self.ROWS))
        self._rng.shuffle(cells)
        self._free = deque(cells)
        self._slot_of: dict[int, int] = {}
        for _ in range(objects):
            self._add()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.published = 0
        self.new_objects = 0
        self.publish_times: list[float] = []  # time.monotonic() of each publish

    @property
    def subscribers(self) -> int:
        return self._pub.get_subscription_count()

    def _add(self) -> None:
        slot = self._free.popleft()
        x = (slot % self.COLS) * WIDTH / self.COLS + 40
        y = (slot // self.COLS) * HEIGHT / self.ROWS + 20
        self._slots.append((self._next_id, x, y, float(self._rng.uniform(0.7, 0.95))))
        self._slot_of[self._next_id] = slot
        self._next_id += 1

    def _frame(self, index: int) -> Detection2DArray:
        if index and index % self._new_every == 0:
            gone = self._slots.pop(0)
            self._free.append(self._slot_of.pop(gone[0]))
            self._add()
            self.new_objects += 1
        msg = Detection2DArray()
        jitter = self._rng.normal(0, 1.0, (len(self._slots), 2))
        for (oid, x, y, score), (dx, dy) in zip(self._slots, jitter, strict=True):
            det = Detection2D()
            det.bbox.center.position.x = x + 30 + dx
            det.bbox.center.position.y = y + 60 + dy
            det.bbox.size_x, det.bbox.size_y = 60.0, 120.0
            hyp = ObjectHypothesisWithPose()
            hyp.hypothesis.class_id = "0"
            hyp.hypothesis.score = score
            det.results = [hyp]
            if self._tracked:
                det.id = str(oid)
            msg.detections.append(det)
        msg.header.frame_id = "camera"
        return msg

    def start(self, fps: float) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(fps,), daemon=True)
        self._thread.start()

    def _run(self, fps: float) -> None:
        period = 1.0 / fps
        next_t = time.monotonic()
        while not self._stop.is_set():
            msg = self._frame(self.published)  # built before stamping
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
            self._pub.publish(msg)
            self.publish_times.append(time.monotonic())
            self.published += 1
            next_t = max(next_t + period, time.monotonic())
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        time.sleep(0.05)


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process so far (threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_steal() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs so far: the VM's time taken by its host."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


def _snapshot(collector: Collector) -> list[tuple[Any, int]]:
    return list(zip(list(collector.messages), list(collector.arrival_ns), strict=False))


def _stats(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"n": 0, "median": float("nan"), "p90": float("nan"), "max": float("nan")}
    return {
        "n": len(ms),
        "median": statistics.median(ms),
        "p90": float(np.percentile(ms, 90)),
        "max": max(ms),
    }


def _row(what: str, s: dict[str, float]) -> list[str]:
    return [what, f"{s['median']:.1f}", f"{s['p90']:.1f}", f"{s['max']:.1f}", str(s["n"])]


def bench_chain(
    ros: RosClient, tmp: Path, args: argparse.Namespace
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """tracker -> event_aggregator -> action_trigger; latencies in ms."""
    rules_file = tmp / "rules.json"
    rules_file.write_text(
        json.dumps(
            {
                "rules": [
                    {
                        "name": "alert_on_new",
                        "and": [{"key": "state", "operator": "==", "value": "NEW"}],
                        "action": "alert",
                    }
                ]
            }
        )
    )
    ns = "bench"
    diags = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=50))
    tracks = ros.subscribe(Detection2DArray, f"/{ns}/tracks", qos=QoSProfile(depth=100))
    events = ros.subscribe(EventMsg, f"/{ns}/events", qos=events_qos())
    alerts = ros.subscribe(Alert, f"/{ns}/alerts", qos=QoSProfile(depth=100))
    nodes = [
        NodeProcess("tracker", namespace=ns),
        NodeProcess(
            "event_aggregator",
            namespace=ns,
            parameters={"database": str(tmp / "events.db"), "min_frames": 1},
            remappings={"detections": "tracks"},
        ),
        NodeProcess(
            "action_trigger",
            namespace=ns,
            parameters={
                "rules_file": str(rules_file),
                "actions": ["alert: alert"],
                "watch_rules": False,
            },
        ),
    ]
    feeder = DetectionFeeder(ros, f"/{ns}/detections", args.objects, args.new_every, False)
    try:
        _wait_until(lambda: feeder.subscribers > 0, 60, "the tracker subscribed")
        for topic in (f"/{ns}/tracks", f"/{ns}/events", f"/{ns}/alerts"):
            assert ros.wait_for_publisher(topic, timeout=60), f"no publisher on {topic}"
        _wait_until(
            lambda: ros.node.count_subscribers(f"/{ns}/events") >= 2, 60, "action_trigger on events"
        )
        time.sleep(0.5)
        feeder.start(args.fps)
        alerts.wait_for(3, timeout=60)
        time.sleep(2.0)  # warm-up
        for c in (tracks, events, alerts, diags):
            c.clear()
        pids = {"bench (feeder + subscribers)": "self", **{n.name: n.pid for n in nodes}}
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        published0, t0, steal0 = feeder.published, time.monotonic(), cpu_steal()
        time.sleep(args.seconds)
        t1, steal1 = time.monotonic(), cpu_steal()
        cpu = {k: (cpu_seconds(p) - cpu0[k]) / (t1 - t0) for k, p in pids.items()}
        window = [t for t in feeder.publish_times if t0 <= t <= t1]
        feeder.stop()
        published = feeder.published - published0
        time.sleep(0.5)  # what is in flight
        got_tracks, got_events, got_alerts = _snapshot(tracks), _snapshot(events), _snapshot(alerts)
        inside = {n.name: node_breakdown(diags.messages, n.fqn) for n in nodes}
    finally:
        feeder.stop()
        for n in reversed(nodes):
            n.stop()
        for c in (tracks, events, alerts, diags):
            c.destroy()
    for n in nodes:
        if n.process.returncode not in (0, None):
            print(f"{n.name} exited with {n.process.returncode}:\n{n.output()[-2000:]}")

    track_arrival = {stamp_to_ns(m.header.stamp): a for m, a in got_tracks}
    new_events = [(m, a) for m, a in got_events if m.state == EventMsg.STATE_NEW]
    event_arrival = {m.id: a for m, a in new_events}
    ms = 1e6
    hop_tracks = [(a - s) / ms for s, a in track_arrival.items()]
    to_events = [(a - stamp_to_ns(m.header.stamp)) / ms for m, a in new_events]
    to_alerts = [(a - stamp_to_ns(m.header.stamp)) / ms for m, a in got_alerts]
    hop_events = [
        (a - track_arrival[stamp_to_ns(m.header.stamp)]) / ms
        for m, a in new_events
        if stamp_to_ns(m.header.stamp) in track_arrival
    ]
    hop_alerts = [
        (a - event_arrival[m.event.id]) / ms for m, a in got_alerts if m.event.id in event_arrival
    ]
    results = {
        "alert": _stats(to_alerts),
        "event": _stats(to_events),
        "tracks": _stats(hop_tracks),
        "hop_events": _stats(hop_events),
        "hop_alerts": _stats(hop_alerts),
    }
    extra = {
        "frames": len(got_tracks),
        "events": len(got_events),
        "states": Counter(EventState(m.state).name for m, _ in got_events),
        "alerts": len(got_alerts),
        "published": published,
        "inside": inside,
        "cpu": cpu,
        "steal": (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1]),
        "feeder_max_gap_ms": 1e3 * float(np.max(np.diff(window))) if len(window) > 1 else 0.0,
        "samples": {
            "tracks": [(stamp_to_ns(m.header.stamp), a) for m, a in got_tracks],
            "events": [(m.id, int(m.state), stamp_to_ns(m.header.stamp), a) for m, a in got_events],
            "alerts": [(m.event.id, stamp_to_ns(m.header.stamp), a) for m, a in got_alerts],
        },
    }
    return results, extra


def bench_aggregator_alone(
    ros: RosClient, tmp: Path, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    ns = "bench_agg"
    events = ros.subscribe(EventMsg, f"/{ns}/events", qos=events_qos())
    node = NodeProcess(
        "event_aggregator",
        namespace=ns,
        parameters={"database": str(tmp / "events_alone.db"), "min_frames": 1},
    )
    feeder = DetectionFeeder(ros, f"/{ns}/detections", args.objects, args.new_every, True)
    try:
        _wait_until(lambda: feeder.subscribers > 0, 60, "the event_aggregator subscribed")
        _wait_until(lambda: ros.node.count_publishers(f"/{ns}/events") > 0, 60, "events publisher")
        time.sleep(0.5)
        feeder.start(args.fps)
        events.wait_for(args.objects + 3, timeout=60)
        time.sleep(2.0)
        events.clear()
        time.sleep(args.alone_seconds)
        feeder.stop()
        time.sleep(0.5)
        got = _snapshot(events)
    finally:
        feeder.stop()
        node.stop()
        events.destroy()
    # END carries the last frame seen and comes end_after_s later by design: left out.
    lat = [(a - stamp_to_ns(m.header.stamp)) / 1e6 for m, a in got if m.state != EventMsg.STATE_END]
    new = [(a - stamp_to_ns(m.header.stamp)) / 1e6 for m, a in got if m.state == EventMsg.STATE_NEW]
    return _stats(new), _stats(lat)


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=20, help="tracked objects per frame")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument(
        "--source-seconds", type=float, default=120.0, help="video time aggregated (part 1)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="median over this many (part 1)")
    parser.add_argument("--rule-seconds", type=float, default=1.5, help="per rule set (part 2)")
    parser.add_argument("--seconds", type=float, default=20.0, help="end to end, full chain")
    parser.add_argument("--alone-seconds", type=float, default=12.0, help="event_aggregator alone")
    parser.add_argument("--new-every", type=int, default=10, help="frames between new objects")
    parser.add_argument("--skip-ros", action="store_true", help="only the core parts")
    parser.add_argument("--json", help="also write the end-to-end samples here")
    args = parser.parse_args()

    started = time.monotonic()
    print_header()
    print(f"ROS_DOMAIN_ID={ENV['ROS_DOMAIN_ID']}")

    # 1. aggregation
    frames = synthetic_frames(args.objects, round(args.source_seconds * args.fps), args.fps)
    agg = bench_aggregation(frames, args.repeats)
    states = agg["states"]
    n_events = len(agg["events"])
    print()
    print(
        f"1. EventAggregator.update: {agg['frames']} frames ({args.source_seconds:.0f} s at "
        f"{args.fps:.0f} fps), {agg['detections']} detections of {args.objects} live tracks, "
        f"{n_events} events (NEW {states['NEW']}, UPDATE {states['UPDATE']}, END {states['END']}) "
        f"on {agg['frames_with_events']} frames; median of {args.repeats}"
    )
    print_table(
        ["case", "detections/s", "x real time", "aim >= 10,000/s"],
        [
            [
                "aggregator alone",
                f"{agg['alone']:,.0f}",
                f"{agg['alone'] / (args.objects * args.fps):,.0f}",
                "yes" if agg["alone"] >= 10_000 else "**no**",
            ],
            [
                "aggregator + `EventStore.put_many` per frame with events",
                f"{agg['with_store']:,.0f}",
                f"{agg['with_store'] / (args.objects * args.fps):,.0f}",
                "yes" if agg["with_store"] >= 10_000 else "**no**",
            ],
            ["share of the time in `put_many`", f"{agg['store_share']:.0%}", "", ""],
        ],
    )

    # 2. rules
    events = rule_events(agg["events"])
    twenty, conditions = generated_rules()
    sets = [
        ("EDGEMATRIX samples merged (2 rules)", edgematrix_rules()),
        ("config/rules/example.yaml (3 rules)", load_rules(RULES / "example.yaml")),
        (f"20 generated rules ({conditions} conditions)", twenty),
    ]
    rows = []
    for name, rules in sets:
        r = time_match(rules, events, args.rule_seconds)
        rows.append(
            [
                name,
                f"{r['events_s']:,.0f}",
                f"{r['evals_s']:,.0f}",
                f"{r['matches_per_event']:.2f}",
                "yes" if r["evals_s"] >= 100_000 else "**no**",
            ]
        )
    print()
    print(f"2. RuleSet.match over the {len(events)} events above (streams cam0-cam3, zones)")
    print_table(
        ["rule set", "events/s", "rule evaluations/s", "matches/event", "aim >= 100,000/s"], rows
    )
    ctx = LoggingContext(logging.getLogger("bench"))
    plain = time_submit(_Nop("nop", ctx), events, 5_000)
    filtered = time_submit(_NopFiltered("nop", ctx), events, 5_000)
    print()
    print_table(
        ["per call, µs", "value"],
        [
            ["`ActionRunner.submit`, queued (Action, no filter)", f"{plain['queued_us']:.1f}"],
            [
                "`ActionRunner.submit`, queued (EventFilter action, as alert/log/record)",
                f"{filtered['queued_us']:.1f}",
            ],
            [
                "`ActionRunner.submit`, skipped by once_per_event (EventFilter action)",
                f"{filtered['skipped_us']:.1f}",
            ],
            *bench_conversions(frames, events),
        ],
    )
    if args.skip_ros:
        print(f"\ntotal {time.monotonic() - started:.0f} s")
        return 0

    # 3. end to end
    ros = RosClient("bench_events")
    try:
        with tempfile.TemporaryDirectory(prefix="ev-bench-") as tmpdir:
            tmp = Path(tmpdir)
            chain, extra = bench_chain(ros, tmp, args)
            alone_new, alone_all = bench_aggregator_alone(ros, tmp, args)
    finally:
        ros.close()
    st = extra["states"]
    inside = extra["inside"]
    print()
    print(
        f"3. end to end, synthetic detections ({args.objects} objects, a new one every "
        f"{args.new_every} frames, {args.fps:.0f} fps), {args.seconds:.0f} s: "
        f"{extra['published']} frames published, {extra['frames']} tracks messages, "
        f"{extra['events']} events (NEW {st['NEW']}, UPDATE {st['UPDATE']}, END {st['END']}), "
        f"{extra['alerts']} alerts"
    )
    print_table(
        ["latency, ms (arrival in the bench - frame stamp)", "median", "p90", "max", "n"],
        [
            _row("frame -> alert (tracker -> event_aggregator -> action_trigger)", chain["alert"]),
            _row("frame -> NEW event (tracker -> event_aggregator)", chain["event"]),
            _row("hop: detections -> tracks (tracker)", chain["tracks"]),
            _row("hop: tracks -> NEW event (event_aggregator)", chain["hop_events"]),
            _row("hop: NEW event -> alert (action_trigger)", chain["hop_alerts"]),
            _row(
                f"event_aggregator alone, tracked detections -> NEW event "
                f"({args.alone_seconds:.0f} s)",
                alone_new,
            ),
            _row("event_aggregator alone, tracked detections -> NEW or UPDATE", alone_all),
        ],
    )
    print()
    print_table(
        ["process (during the full-chain measurement)", "CPU, % of one core"],
        [[name, f"{100 * share:.0f}"] for name, share in extra["cpu"].items()],
    )
    if args.json:
        Path(args.json).write_text(json.dumps({**extra, "states": dict(st)}, default=str))
    print(
        f"CPU steal during the measurement {extra['steal']:.1%}; longest gap between two "
        f"published frames {extra['feeder_max_gap_ms']:.0f} ms (period {1e3 / args.fps:.0f} ms)"
    )
    tr = inside.get("tracker", {})
    print(
        f"tracker diagnostics: {tr.get('time per frame (ms)', '?')} ms per frame "
        f"(conversion + ByteTrack + publish), {tr.get('frames', '?')} frames"
    )
    print(
        f"load average at the end {os.getloadavg()[0]:.2f}; "
        f"total {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Events and actions: aggregation and rule throughput (core, no ROS) and the latency from a
frame to an action firing over real DDS, in one run.

    .venv/bin/python bench/events_actions.py [--objects 20] [--seconds 20] [--skip-ros]

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
3. End to end over real DDS, detector-free: a feeder process publishes synthetic
   Detection2DArray frames (``--objects`` boxes, a new object every ``--new-every`` frames, at
   ``--fps``; header stamp = wall clock just before publishing), so the figures are the
   events/actions path only. Nodes: ``tracker`` (defaults: ByteTrack, a track is confirmed on
   its 2nd frame) -> ``event_aggregator`` (min_frames 1: the first tracked frame of an object
   makes its NEW event) -> ``action_trigger`` (one rule, state == NEW -> ``alert``). Latency =
   arrival in the bench - stamp of the frame that made the event (the Event's and the Alert's
   stamp). Phase 1: the bench subscribes to ``alerts`` only; phase 2: also to ``tracks``,
   ``events`` and /diagnostics, for the per-hop figures. Then ``event_aggregator`` alone, fed
   tracked detections (``Detection2D.id`` set) directly.
DDS stays on loopback on a domain of its own (edge_vision.testing.ros_harness).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
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
from edge_vision.testing.ros_harness import Collector, NodeProcess  # noqa: E402

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
) -> tuple[float, float, list[Event], int]:
    """(seconds in total, seconds in put_many, events emitted, frames that emitted any)."""
    agg = EventAggregator("cam0", "nanodet-m")  # the node's defaults
    emitted: list[Event] = []
    in_store = 0.0
    calls = 0
    perf = time.perf_counter
    t0 = perf()
    for dets, stamp in frames:
        events = agg.update(dets, stamp)
        if events:
            calls += 1
            if store is not None:
                s0 = perf()
                store.put_many(events)
                in_store += perf() - s0
            emitted.extend(events)
    return perf() - t0, in_store, emitted, calls


def bench_aggregation(frames: list[tuple[Detections, int]], repeats: int) -> dict[str, Any]:
    detections = sum(len(d) for d, _ in frames)
    alone, with_store, share = [], [], []
    events: list[Event] = []
    calls = 0
    for _ in range(repeats):
        seconds, _, events, calls = aggregate(frames, None)
        alone.append(detections / seconds)
    for _ in range(repeats):
        # The event_aggregator node's defaults: 30 days, 1,000,000 events, NORMAL.
        with (
            tempfile.TemporaryDirectory(prefix="ev-bench-") as tmp,
            EventStore(
                Path(tmp) / "events.db", max_age_s=30 * 86400, max_events=1_000_000
            ) as store,
        ):
            seconds, in_store, _, _ = aggregate(frames, store)
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
        "frames_with_events": calls,
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
    event = next((e for e in events if e.attributes), events[0])  # with a zone attribute
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


class DetectionScene:
    """Detection2DArray frames: ``objects`` boxes on a grid, one new object every ``new_every``
    frames (replacing the oldest). ``tracked``: set ``Detection2D.id`` as a tracker would.

    A new object takes the grid cell vacated longest ago, so that it is not re-identified as the
    track that just left (ByteTrack keeps lost tracks for 30 frames)."""

    COLS, ROWS = 8, 4

    def __init__(self, objects: int, new_every: int, tracked: bool) -> None:
        if objects >= self.COLS * self.ROWS:
            raise ValueError(f"fewer than {self.COLS * self.ROWS} objects in the end-to-end part")
        self._rng = np.random.default_rng(3)
        self._new_every = new_every
        self._tracked = tracked
        self._objects: list[tuple[int, float, float, float]] = []  # (id, x, y, score)
        self._cell_of: dict[int, int] = {}
        cells = list(range(self.COLS * self.ROWS))
        self._rng.shuffle(cells)
        self._free = deque(cells)
        self._next_id = 1
        self._index = 0
        for _ in range(objects):
            self._add()

    def _add(self) -> None:
        cell = self._free.popleft()
        x = (cell % self.COLS) * WIDTH / self.COLS + 40
        y = (cell // self.COLS) * HEIGHT / self.ROWS + 20
        self._objects.append((self._next_id, x, y, float(self._rng.uniform(0.7, 0.95))))
        self._cell_of[self._next_id] = cell
        self._next_id += 1

    def next_frame(self) -> Detection2DArray:
        if self._index and self._index % self._new_every == 0:
            gone = self._objects.pop(0)
            self._free.append(self._cell_of.pop(gone[0]))
            self._add()
        self._index += 1
        msg = Detection2DArray()
        msg.header.frame_id = "camera"
        jitter = self._rng.normal(0, 1.0, (len(self._objects), 2))
        for (oid, x, y, score), (dx, dy) in zip(self._objects, jitter, strict=True):
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
        return msg


def _feeder_main(conn: Connection, topic: str, scene: DetectionScene, fps: float) -> None:
    """In the feeder process: once subscribed, say so; publish ``scene`` frames at ``fps``
    between "start" and "stop", then send back the publish times. A late frame is not made up
    for with a burst (a camera does not do that)."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node("bench_feeder", context=context)
    pub = node.create_publisher(Detection2DArray, topic, QoSProfile(depth=10))
    times: list[float] = []
    try:
        while pub.get_subscription_count() == 0:
            if conn.poll(0.05):
                return  # stopped before anyone subscribed
        conn.send("subscribed")
        if conn.recv() != "start":
            return
        period = 1.0 / fps
        next_t = time.monotonic()
        while True:
            msg = scene.next_frame()  # built before stamping
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
            pub.publish(msg)
            times.append(time.monotonic())
            next_t = max(next_t + period, time.monotonic())
            if conn.poll(max(0.0, next_t - time.monotonic())):
                return  # stop
    finally:
        conn.send(times)
        node.destroy_node()
        rclpy.try_shutdown(context=context)


class FeederProcess:
    """Frames from a process of their own, so that the bench's subscriptions cannot delay them
    (in one process, RosClient's executor threads delayed the publishing thread by up to
    0.9 s). Create it before this process starts any rclpy context: it is forked."""

    def __init__(self, topic: str, scene: DetectionScene, fps: float) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_feeder_main, args=(child, topic, scene, fps), daemon=True
        )
        self.process.start()
        self.times: list[float] | None = None

    def wait_subscribed(self, timeout: float = 60.0) -> None:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"nobody subscribed to the frames in {timeout} s")
        self._conn.recv()

    def start(self) -> None:
        self._conn.send("start")

    def stop(self) -> list[float]:
        """time.monotonic() of every frame published (the clock is system-wide)."""
        if self.times is None:
            self.times = []
            if self.process.is_alive():
                self._conn.send("stop")
                while self._conn.poll(10):
                    reply = self._conn.recv()
                    if isinstance(reply, list):
                        self.times = reply
                        break
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
        return self.times


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        time.sleep(0.05)


class Listener:
    """The bench's subscriptions: one rclpy node spun by a SingleThreadedExecutor thread, with
    the harness's Collector (arrival = wall clock when the callback runs).

    Not RosClient: its MultiThreadedExecutor, with tracks, events, alerts and /diagnostics
    subscribed, delayed callbacks (and a frame-publishing thread) in this process by up to
    0.9 s, which would have been measured as latency of the nodes."""

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy._rclpy_pybind11 import InvalidHandle
        from rclpy.executors import ExternalShutdownException

        while self.context.ok() and not self._stopping.is_set():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except InvalidHandle:  # a subscription destroyed meanwhile (as in RosClient)
                continue
            except ExternalShutdownException:
                return

    def subscribe(self, msg_type: type, topic: str, qos: Any) -> Collector:
        collector = Collector()
        sub = self.node.create_subscription(msg_type, topic, collector.add, qos)
        collector.subscription = sub
        collector.destroy = lambda: self.node.destroy_subscription(sub)
        return collector

    def wait_for_publisher(self, topic: str, timeout: float = 60.0) -> None:
        _wait_until(lambda: self.node.count_publishers(topic) > 0, timeout, f"a {topic} publisher")

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU time of a process so far (threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_steal() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs so far: the VM's time taken by its host."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[7], sum(fields[:8])


def _snapshot(collector: Collector, since_ns: int, until_ns: int) -> list[tuple[Any, int]]:
    """(message, arrival) for the messages stamped in [since_ns, until_ns] (wall clock)."""
    pairs = zip(list(collector.messages), list(collector.arrival_ns), strict=False)
    return [(m, a) for m, a in pairs if since_ns <= stamp_to_ns(m.header.stamp) <= until_ns]


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


def _latency_ms(samples: list[tuple[Any, int]]) -> list[float]:
    return [(a - stamp_to_ns(m.header.stamp)) / 1e6 for m, a in samples]


def _max_gap_ms(times: list[float], t0: float, t1: float) -> float:
    window = [t for t in times if t0 <= t <= t1]
    return 1e3 * float(np.max(np.diff(window))) if len(window) > 1 else float("nan")


def bench_chain(
    ros: Listener, feeder: FeederProcess, tmp: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """tracker -> event_aggregator -> action_trigger. Phase 1: the bench subscribes to
    ``alerts`` only; phase 2: also ``tracks``, ``events`` and /diagnostics (per hop)."""
    rules = {
        "rules": [
            {
                "name": "alert_on_new",
                "and": [{"key": "state", "operator": "==", "value": "NEW"}],
                "action": "alert",
            }
        ]
    }
    (tmp / "rules.json").write_text(json.dumps(rules))
    ns = "bench"
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
                "rules_file": str(tmp / "rules.json"),
                "actions": ["alert: alert"],
                "watch_rules": False,
            },
        ),
    ]
    collectors = [alerts]
    out: dict[str, Any] = {}
    try:
        feeder.wait_subscribed()
        ros.wait_for_publisher(f"/{ns}/alerts")
        _wait_until(lambda: ros.node.count_subscribers(f"/{ns}/events") >= 1, 60, "on events")
        time.sleep(0.5)
        feeder.start()
        alerts.wait_for(3, timeout=60)
        time.sleep(2.0)  # warm-up

        # Phase 1: alerts only.
        alerts.clear()
        pids = {"bench (subscribers)": "self", "frame feeder": feeder.process.pid}
        pids.update({n.name: n.pid for n in nodes})
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        t0, steal0, w0 = time.monotonic(), cpu_steal(), time.time_ns()
        time.sleep(args.seconds)
        t1, steal1, w1 = time.monotonic(), cpu_steal(), time.time_ns()
        out["cpu"] = {k: (cpu_seconds(p) - cpu0[k]) / (t1 - t0) for k, p in pids.items()}
        out["steal"] = (steal1[0] - steal0[0]) / max(1, steal1[1] - steal0[1])
        time.sleep(0.5)  # what is in flight
        got_alerts = _snapshot(alerts, w0, w1)
        out["alert"] = _stats(_latency_ms(got_alerts))
        out["window1"] = (t0, t1)

        # Phase 2: intermediate topics too.
        diags = ros.subscribe(DiagnosticArray, "/diagnostics", qos=QoSProfile(depth=50))
        tracks = ros.subscribe(Detection2DArray, f"/{ns}/tracks", qos=QoSProfile(depth=100))
        events = ros.subscribe(EventMsg, f"/{ns}/events", qos=events_qos())
        collectors += [diags, tracks, events]
        time.sleep(1.5)  # matched
        for c in collectors:
            c.clear()
        t2, w2 = time.monotonic(), time.time_ns()
        time.sleep(args.hop_seconds)
        t3, w3 = time.monotonic(), time.time_ns()
        time.sleep(0.5)
        got_tracks = _snapshot(tracks, w2, w3)
        got_events = _snapshot(events, w2, w3)
        got_alerts2 = _snapshot(alerts, w2, w3)
        out["inside"] = {n.name: node_breakdown(diags.messages, n.fqn) for n in nodes}
        out["window2"] = (t2, t3)
    finally:
        times = feeder.stop()
        for n in reversed(nodes):
            n.stop()
        for c in collectors:
            c.destroy()
    for n in nodes:
        if n.process.returncode not in (0, None, -2):
            print(f"{n.name} exited with {n.process.returncode}:\n{n.output()[-2000:]}")

    t0, t1 = out["window1"]
    out["published"] = sum(t0 <= t <= t1 for t in times)
    out["alerts"] = len(got_alerts)
    out["feeder_max_gap_ms"] = max(_max_gap_ms(times, t0, t1), _max_gap_ms(times, *out["window2"]))
    track_arrival = {stamp_to_ns(m.header.stamp): a for m, a in got_tracks}
    new_events = [(m, a) for m, a in got_events if m.state == EventMsg.STATE_NEW]
    event_arrival = {m.id: a for m, a in new_events}
    out["phase2"] = {
        "alert": _stats(_latency_ms(got_alerts2)),
        "event": _stats(_latency_ms(new_events)),
        "tracks": _stats(_latency_ms(got_tracks)),
        "hop_events": _stats(
            [
                (a - track_arrival[stamp_to_ns(m.header.stamp)]) / 1e6
                for m, a in new_events
                if stamp_to_ns(m.header.stamp) in track_arrival
            ]
        ),
        "hop_alerts": _stats(
            [
                (a - event_arrival[m.event.id]) / 1e6
                for m, a in got_alerts2
                if m.event.id in event_arrival
            ]
        ),
    }
    out["phase2_counts"] = {
        "published": sum(out["window2"][0] <= t <= out["window2"][1] for t in times),
        "tracks": len(got_tracks),
        "states": Counter(EventState(m.state).name for m, _ in got_events),
        "alerts": len(got_alerts2),
    }
    return out


def bench_aggregator_alone(
    ros: Listener, feeder: FeederProcess, tmp: Path, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float]]:
    """event_aggregator fed tracked detections directly: (NEW, NEW or UPDATE) latencies."""
    ns = "bench_agg"
    events = ros.subscribe(EventMsg, f"/{ns}/events", qos=events_qos())
    node = NodeProcess(
        "event_aggregator",
        namespace=ns,
        parameters={"database": str(tmp / "events_alone.db"), "min_frames": 1},
    )
    try:
        feeder.wait_subscribed()
        ros.wait_for_publisher(f"/{ns}/events")
        time.sleep(0.5)
        feeder.start()
        events.wait_for(args.objects + 3, timeout=60)
        time.sleep(2.0)
        events.clear()
        w0 = time.time_ns()
        time.sleep(args.alone_seconds)
        w1 = time.time_ns()
        time.sleep(0.5)
        got = _snapshot(events, w0, w1)
    finally:
        feeder.stop()
        node.stop()
        events.destroy()
    # END carries the last frame seen and comes end_after_s later by design: left out.
    new = [s for s in got if s[0].state == EventMsg.STATE_NEW]
    live = [s for s in got if s[0].state != EventMsg.STATE_END]
    return _stats(_latency_ms(new)), _stats(_latency_ms(live))


def time_tracker_core(objects: int, new_every: int, frames: int = 300) -> float:
    """Median ms per frame of the tracker node's callback work without rclpy: conversion in,
    ByteTrack with the node's defaults, conversion out, on the end-to-end part's frames."""
    from edge_vision.tracking import create_tracker

    scene = DetectionScene(objects, new_every, False)
    msgs = [scene.next_frame() for _ in range(frames)]
    tracker = create_tracker(
        "bytetrack",
        track_activation_threshold=0.25,
        lost_track_buffer=30,
        minimum_matching_threshold=0.8,
        frame_rate=30,
        minimum_consecutive_frames=2,
    )
    times = []
    for msg in msgs:
        t0 = time.perf_counter()
        detections_to_msg(tracker.update(msg_to_detections(msg)), msg.header)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


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
    parser.add_argument("--seconds", type=float, default=20.0, help="full chain, alerts only")
    parser.add_argument("--hop-seconds", type=float, default=12.0, help="full chain, per hop")
    parser.add_argument("--alone-seconds", type=float, default=12.0, help="event_aggregator alone")
    parser.add_argument("--new-every", type=int, default=10, help="frames between new objects")
    parser.add_argument("--skip-ros", action="store_true", help="only the core parts")
    parser.add_argument("--json", help="also write the end-to-end results here")
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
        [
            "case",
            "detections/s",
            f"x one stream ({args.objects} x {args.fps:.0f}/s)",
            "aim >= 10,000/s",
        ],
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
    tracker_ms = time_tracker_core(args.objects, args.new_every)
    gc.collect()
    feeders = [
        FeederProcess(
            f"/{ns}/detections", DetectionScene(args.objects, args.new_every, tracked), args.fps
        )
        for ns, tracked in (("bench", False), ("bench_agg", True))
    ]
    ros = Listener("bench_events")
    try:
        with tempfile.TemporaryDirectory(prefix="ev-bench-") as tmpdir:
            tmp = Path(tmpdir)
            chain = bench_chain(ros, feeders[0], tmp, args)
            alone_new, alone_live = bench_aggregator_alone(ros, feeders[1], tmp, args)
    finally:
        for feeder in feeders:
            feeder.stop()
        ros.close()
    p2 = chain["phase2"]
    c2 = chain["phase2_counts"]
    st = c2["states"]
    print()
    print(
        f"3. end to end, detector-free: synthetic Detection2DArray frames ({args.objects} objects, "
        f"a new one every {args.new_every} frames) at {args.fps:.0f} fps from a feeder process"
    )
    print(
        f"phase 1 ({args.seconds:.0f} s, the bench subscribed to alerts only): "
        f"{chain['published']} frames published, {chain['alerts']} alerts"
    )
    print(
        f"phase 2 ({args.hop_seconds:.0f} s, also tracks, events, /diagnostics): "
        f"{c2['published']} frames published, {c2['tracks']} tracks messages, "
        f"events NEW {st['NEW']}, UPDATE {st['UPDATE']}, END {st['END']}, {c2['alerts']} alerts"
    )
    print_table(
        ["latency, ms (arrival in the bench - frame stamp)", "median", "p90", "max", "n"],
        [
            _row(
                "phase 1: frame -> alert (tracker, event_aggregator, action_trigger)",
                chain["alert"],
            ),
            _row("phase 2: frame -> alert", p2["alert"]),
            _row("phase 2: frame -> NEW event (tracker, event_aggregator)", p2["event"]),
            _row("phase 2: frame -> tracks (tracker)", p2["tracks"]),
            _row("phase 2: hop tracks -> NEW event (event_aggregator)", p2["hop_events"]),
            _row("phase 2: hop NEW event -> alert (action_trigger)", p2["hop_alerts"]),
            _row(
                f"event_aggregator alone ({args.alone_seconds:.0f} s): tracked detections -> NEW",
                alone_new,
            ),
            _row("event_aggregator alone: tracked detections -> NEW or UPDATE", alone_live),
        ],
    )
    print()
    print_table(
        ["process, during phase 1", "CPU, % of one core"],
        [[name, f"{100 * share:.0f}"] for name, share in chain["cpu"].items()],
    )
    tr = chain["inside"].get("tracker", {})
    print(
        f"tracker diagnostics: {tr.get('time per frame (ms)', '?')} ms per frame in its callback "
        f"(conversion, ByteTrack, publishing); the same work in a plain loop {tracker_ms:.1f} ms "
        f"(median); CPU steal in phase 1 {chain['steal']:.1%}; "
        f"longest gap between two published frames {chain['feeder_max_gap_ms']:.0f} ms "
        f"(period {1e3 / args.fps:.0f} ms)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(chain, default=str))
    print(
        f"load average at the end {os.getloadavg()[0]:.2f}; "
        f"total {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Image topic latency and throughput: default Fast DDS vs the shipped profile vs one process.

Measures bgr8 ``sensor_msgs/Image`` delivery with the package's own conversion
(``numpy_to_image``, ``stamp_to_ns``) and QoS helpers (``image_publisher_qos``,
``sensor_subscriber_qos``), so the figures are what edge_vision's nodes get:

* transports: ``default`` (Fast DDS built-in transports, no XML profile), ``shm`` (the shipped
  ``config/fastdds_shm.xml``: SHM with a 32 MB segment + UDP limited to 127.0.0.1), both between
  two processes; ``inproc``: publisher and subscriber nodes in one process (shipped profile),
  the subscriber spun by its own executor thread;
* at 30 Hz, with a reliable and with a best-effort (sensor QoS) subscriber: median / p95 / max
  latency (receive wall time minus the header stamp set just before ``publish``) and the
  fraction of frames delivered;
* at full rate (reliable publisher + reliable subscriber): messages/s published and received,
  and publish failures (``RCLError``).

The Fast DDS profile is read from the environment at ``rclpy.init``, so every case runs in fresh
subprocesses (``--role pub|sub|both``, internal) that print one JSON line each; this script
gathers them and prints Markdown tables. DDS stays on loopback
(``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``) on a domain id of this run's own.

    python bench/image_transport.py                 # full run (about 2 minutes)
    python bench/image_transport.py --quick         # 640x480 only, short windows
    python bench/image_transport.py --sizes 1920x1080 --seconds 8 --json results.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # running from a checkout without the package installed
    sys.path.insert(0, str(REPO))

from _common import cpu_model  # noqa: E402

from edge_vision.core.dds import default_dds_environment  # noqa: E402

TOPIC = "bench/image"
RATE_HZ = 30.0
TRANSPORTS = ("default", "shm", "inproc")
TRANSPORT_LABELS = {
    "default": "default Fast DDS",
    "shm": "shipped profile (SHM)",
    "inproc": "same process",
}
# (mode, subscriber QoS): 30 Hz with both subscriber kinds, then full rate, reliable.
MODES: tuple[tuple[str, str], ...] = (
    ("rate", "reliable"),
    ("rate", "best_effort"),
    ("max", "reliable"),
)
_SHOWN_ENV_PREFIXES = ("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "PYTHONMALLOC")
# Variables that would change which Fast DDS configuration a child process gets.
_DDS_VARIABLES = (
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
    "FASTDDS_BUILTIN_TRANSPORTS",
    "RMW_FASTRTPS_USE_QOS_FROM_XML",
    "RMW_FASTRTPS_PUBLICATION_MODE",
    "ROS_STATIC_PEERS",
)


# ---------------------------------------------------------------------------------------------
# Child roles (run inside the subprocesses)


def _parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        size = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got {text!r}") from None
    if min(size) <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return size


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _minor_faults() -> int:
    """Minor page faults of this process so far: fresh pages for large buffers show up here."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class _Receiver:
    """Subscription callback: latency of measured frames (frame_id ``m<seq>``)."""

    def __init__(self) -> None:
        from edge_vision.ros.image_conversion import image_to_numpy, stamp_to_ns

        self._image_to_numpy = image_to_numpy
        self._stamp_to_ns = stamp_to_ns
        self.latencies_ns: list[int] = []
        self.seqs: set[int] = set()
        self.warmup = 0
        self.first_ns = 0
        self.last_ns = 0
        self.first_faults = self.last_faults = 0

    def __call__(self, msg: Any) -> None:
        now = time.time_ns()
        frame_id = msg.header.frame_id
        if not frame_id.startswith("m"):
            self.warmup += 1
            return
        self.latencies_ns.append(now - self._stamp_to_ns(msg.header.stamp))
        self.seqs.add(int(frame_id[1:]))
        self.first_ns = self.first_ns or now
        self.last_ns = now
        self.last_faults = _minor_faults()
        self.first_faults = self.first_faults or self.last_faults
        self._image_to_numpy(msg)  # what a node does next (a view, no copy)

    def result(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ns, dtype=np.float64) / 1e6
        out: dict[str, Any] = {
            "received": len(self.latencies_ns),
            "unique": len(self.seqs),
            "warmup_received": self.warmup,
            "max_seq": max(self.seqs, default=-1),
            "missing_seqs": [i for i in range(max(self.seqs, default=-1)) if i not in self.seqs][
                :20
            ],
            # Minor page faults of the receiving process per measured frame (the whole process
            # when publisher and subscriber share it).
            "faults_per_frame": (self.last_faults - self.first_faults)
            / max(1, len(self.latencies_ns) - 1),
            "receive_span_s": (self.last_ns - self.first_ns) / 1e9,
        }
        if lat.size:
            out.update(
                median_ms=float(np.median(lat)),
                p95_ms=float(np.percentile(lat, 95)),
                max_ms=float(lat.max()),
                min_ms=float(lat.min()),
            )
        return out


def _subscription_qos(kind: str) -> Any:
    from edge_vision.ros.qos import image_publisher_qos, sensor_subscriber_qos

    # A reliable subscriber asks for what the publisher offers; best effort is our nodes' QoS.
    return image_publisher_qos("reliable") if kind == "reliable" else sensor_subscriber_qos()


def _publish(node: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Wait for the subscriber, warm up at 30 Hz, then publish the measured frames."""
    from rclpy._rclpy_pybind11 import RCLError
    from sensor_msgs.msg import Image

    from edge_vision.ros.image_conversion import ns_to_stamp, numpy_to_image
    from edge_vision.ros.qos import image_publisher_qos

    width, height = args.size
    publisher = node.create_publisher(Image, TOPIC, image_publisher_qos("reliable"))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)

    deadline = time.monotonic() + args.match_timeout
    while publisher.get_subscription_count() < 1:
        if time.monotonic() > deadline:
            raise SystemExit(f"no subscriber matched within {args.match_timeout} s")
        time.sleep(0.01)

    published = failures = 0

    def send(frame_id: str) -> None:
        nonlocal published, failures
        msg = numpy_to_image(frame, "bgr8", frame_id=frame_id)
        msg.header.stamp = ns_to_stamp(time.time_ns())
        try:
            publisher.publish(msg)
            published += 1
        except RCLError:
            failures += 1

    period = 1.0 / RATE_HZ
    tick = time.perf_counter()
    for _ in range(max(1, round(args.warmup * RATE_HZ))):
        tick += period
        time.sleep(max(0.0, tick - time.perf_counter()))
        send("w")
    published = failures = 0

    cpu0, faults0 = _cpu_seconds(), _minor_faults()
    start = time.perf_counter()
    if args.mode == "rate":
        tick = start
        for seq in range(round(args.seconds * RATE_HZ)):
            time.sleep(max(0.0, tick - time.perf_counter()))
            send(f"m{seq}")
            tick += period
    else:
        seq = 0
        end = start + args.seconds
        while time.perf_counter() < end:
            send(f"m{seq}")
            seq += 1
    duration = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu0
    # Keep the writer alive while the last frames are still on their way: a writer destroyed
    # right after publish takes its in-flight samples with it.
    time.sleep(args.grace)
    return {
        "published": published,
        "attempts": published + failures,
        "failures": failures,
        "duration_s": duration,
        "pub_cpu_s": cpu,
        "pub_minflt": _minor_faults() - faults0,
    }


def _init_rclpy() -> None:
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    # Our own SIGTERM handling: the orchestrator stops the subscriber with it.
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)


def _spin_until(executor: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        executor.spin_once(timeout_sec=0.05)


def _run_child(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    _init_rclpy()
    stop = threading.Event()
    result: dict[str, Any] = {"role": args.role}
    try:
        if args.role == "pub":
            node = rclpy.create_node("bench_image_pub")
            result.update(_publish(node, args))
        else:
            receiver = _Receiver()
            sub_node = rclpy.create_node("bench_image_sub")
            sub_node.create_subscription(Image, TOPIC, receiver, _subscription_qos(args.sub_qos))
            executor = SingleThreadedExecutor()
            executor.add_node(sub_node)
            if args.role == "sub":
                signal.signal(signal.SIGTERM, lambda *_: stop.set())
                signal.signal(signal.SIGINT, lambda *_: stop.set())
                timer = threading.Timer(
                    args.match_timeout + args.warmup + args.seconds + 30.0, stop.set
                )  # never outlive an orphaned run
                timer.daemon = True
                timer.start()
                cpu0, faults0 = _cpu_seconds(), _minor_faults()
                _spin_until(executor, stop)
                result["sub_cpu_s"] = _cpu_seconds() - cpu0
                result["sub_minflt"] = _minor_faults() - faults0
            else:  # both: publisher in the main thread, subscriber's executor in another
                spinner = threading.Thread(target=_spin_until, args=(executor, stop), daemon=True)
                spinner.start()
                pub_node = rclpy.create_node("bench_image_pub")
                result.update(_publish(pub_node, args))
                stop.set()
                spinner.join()
            result.update(receiver.result())
    finally:
        rclpy.try_shutdown()
    print(json.dumps(result), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# Orchestrator


@dataclass(frozen=True)
class Case:
    transport: str
    size: tuple[int, int]
    mode: str
    sub_qos: str

    @property
    def size_text(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"


def _child_env(transport: str, domain_id: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DDS_VARIABLES}
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env.update(default_dds_environment(env, force=True))
    env["ROS_DOMAIN_ID"] = str(domain_id)
    if transport == "default":
        env.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    elif "FASTDDS_DEFAULT_PROFILES_FILE" not in env:
        raise SystemExit("the shipped Fast DDS profile config/fastdds_shm.xml was not found")
    return env


def _child_command(case: Case, role: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--role", role,
        "--size", case.size_text,
        "--mode", case.mode,
        "--sub-qos", case.sub_qos,
        "--seconds", str(args.seconds),
        "--warmup", str(args.warmup),
        "--grace", str(args.grace),
        "--match-timeout", str(args.match_timeout),
    ]  # fmt: skip


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line")


def _busy_cpu_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), 0 where unavailable."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_cpu_seconds() -> float:
    times = os.times()
    return times.children_user + times.children_system


def _run_case(case: Case, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    """Start the case's process(es) and merge their JSON lines.

    Also measures how busy the machine was with other processes meanwhile (``others_cores``:
    busy CPU of the whole machine minus this case's processes, per second of wall time), to
    tell a disturbed measurement from a real one.
    """
    busy0, wall0 = _busy_cpu_seconds(), time.monotonic()
    ours0 = _children_cpu_seconds() + time.process_time()
    env = _child_env(case.transport, args.domain_id)
    limit = args.match_timeout + args.warmup + args.seconds + 30.0
    processes: list[subprocess.Popen[str]] = []

    def start(role: str, log: IO[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            _child_command(case, role, args),
            env=env,
            cwd=workdir,  # no stray DEFAULT_FASTDDS_PROFILES.xml is picked up from the cwd
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        processes.append(process)
        return process

    def finish(process: subprocess.Popen[str], log: IO[str], role: str) -> dict[str, Any]:
        out, _ = process.communicate(timeout=limit)
        try:
            return _last_json(out)
        except ValueError:
            log.seek(0)
            raise RuntimeError(
                f"{role} process failed (exit {process.returncode}) for {case}:\n"
                f"{out}{log.read()[-3000:]}"
            ) from None

    with tempfile.TemporaryFile("w+") as sub_log, tempfile.TemporaryFile("w+") as pub_log:
        try:
            if case.transport == "inproc":
                result = finish(start("both", pub_log), pub_log, "both")
            else:
                sub = start("sub", sub_log)
                pub = start("pub", pub_log)
                result = finish(pub, pub_log, "pub")
                time.sleep(0.2)  # the publisher lingered --grace s already
                sub.send_signal(signal.SIGTERM)
                result.update(finish(sub, sub_log, "sub"))
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    wall = time.monotonic() - wall0
    ours = _children_cpu_seconds() + time.process_time() - ours0
    others = max(0.0, (_busy_cpu_seconds() - busy0 - ours) / wall) if busy0 else None
    result.pop("role", None)
    result["others_cores"] = others
    delivered = result.get("unique", 0) / result["published"] if result["published"] else 0.0
    result.update(
        transport=case.transport,
        size=case.size_text,
        mode=case.mode,
        sub_qos=case.sub_qos,
        delivered=delivered,
        published_per_s=result["published"] / result["duration_s"],
        received_per_s=result.get("unique", 0) / result["duration_s"],
    )
    return result


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in ("ros-rclpy", "ros-fastdds", "ros-rmw-fastrtps-cpp"):
        with suppress(PackageNotFoundError):
            parts.append(f"{dist} {version(dist)}")
    return ", ".join(parts) or "ROS from the environment"


def _header(args: argparse.Namespace) -> list[str]:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    # Allocator settings change the figures (they decide whether frame buffers are reused).
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(_SHOWN_ENV_PREFIXES)]
    return [
        f"command: `{shlex.join([*env, *getattr(sys, 'orig_argv', ['python', *sys.argv])])}`",
        f"machine: {os.cpu_count()} cores, {cpu_model()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; {_versions()}",
        f"load average at start: {load}",
        f"settings: {args.seconds:g} s per case after {args.warmup:g} s warm-up; "
        f"30 Hz cases publish {round(args.seconds * RATE_HZ)} frames; ROS_DOMAIN_ID "
        f"{args.domain_id}, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST",
    ]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _latency_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| transport | size | subscriber | median ms | p95 ms | max ms | delivered "
        "| page faults/frame |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r["mode"] != "rate":
            continue
        lines.append(
            f"| {TRANSPORT_LABELS[r['transport']]} | {r['size']} | "
            f"{r['sub_qos'].replace('_', ' ')} | {_fmt(r.get('median_ms'))} | "
            f"{_fmt(r.get('p95_ms'))} | {_fmt(r.get('max_ms'))} | "
            f"{100 * r['delivered']:.1f} % | {r.get('faults_per_frame', 0):.0f} |"
        )
    return lines


def _throughput_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| transport | size | published/s | received/s | publish failures | delivered "
        "| median ms | MB/s received |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if r["mode"] != "max":
            continue
        width, height = (int(x) for x in r["size"].split("x"))
        mbytes = r["received_per_s"] * width * height * 3 / 1e6
        lines.append(
            f"| {TRANSPORT_LABELS[r['transport']]} | {r['size']} | "
            f"{r['published_per_s']:.0f} | {r['received_per_s']:.0f} | "
            f"{r['failures']} of {r['attempts']} | {100 * r['delivered']:.1f} % | "
            f"{_fmt(r.get('median_ms'))} | {mbytes:.0f} |"
        )
    return lines


def _ratio_lines(results: list[dict[str, Any]]) -> list[str]:
    index = {(r["transport"], r["size"], r["mode"], r["sub_qos"]): r for r in results}
    sizes = list(dict.fromkeys(r["size"] for r in results))
    pairs = [
        ("shm", "default", "shipped profile / default"),
        ("inproc", "shm", "same process / cross-process (shipped profile)"),
        ("inproc", "default", "same process / cross-process (default)"),
    ]
    lines = []
    for a, b, label in pairs:
        for size in sizes:
            parts = []
            for mode, qos in MODES:
                ra, rb = index.get((a, size, mode, qos)), index.get((b, size, mode, qos))
                if not ra or not rb:
                    continue
                if mode == "rate":
                    if ra.get("median_ms") and rb.get("median_ms"):
                        ratio = ra["median_ms"] / rb["median_ms"]
                        text = f"median latency {qos.replace('_', ' ')} x{ratio:.2f}"
                        if min(ra["delivered"], rb["delivered"]) < 0.99:
                            text += (
                                f" (delivered {100 * ra['delivered']:.0f} %"
                                f" vs {100 * rb['delivered']:.0f} %)"
                            )
                        parts.append(text)
                elif rb["received_per_s"]:
                    ratio = ra["received_per_s"] / rb["received_per_s"]
                    parts.append(f"max throughput x{ratio:.2f}")
            if parts:
                lines.append(f"- {label}, {size}: " + ", ".join(parts))
    return lines


def _orchestrate(args: argparse.Namespace) -> int:
    for line in _header(args):
        print(line + "  ")
    print(flush=True)
    cases = [
        Case(transport, size, mode, sub_qos)
        for size in args.sizes
        for transport in args.transports
        for mode, sub_qos in MODES
    ]
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edge_vision_bench_") as workdir:
        for number, case in enumerate(cases, 1):
            result = _run_case(case, args, workdir)
            results.append(result)
            print(f"[{number}/{len(cases)}] {json.dumps(result)}", file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text("".join(json.dumps(r) + "\n" for r in results))
    print("### 30 Hz: latency (receive time - header stamp) and frames delivered\n")
    print("\n".join(_latency_table(results)))
    print("\n### Full rate: reliable publisher + reliable subscriber\n")
    print("\n".join(_throughput_table(results)))
    disturbed = [
        f"{TRANSPORT_LABELS[r['transport']]} {r['size']} {r['mode']} {r['sub_qos']}: "
        f"{r['others_cores']:.2f}"
        for r in results
        if (r.get("others_cores") or 0.0) > args.disturbed
    ]
    if disturbed:
        print(
            f"\nOther processes kept more than {args.disturbed:g} cores busy during: "
            + "; ".join(disturbed)
            + " (cores). Repeat those cases on a quieter machine."
        )
    ratios = _ratio_lines(results)
    if ratios:
        print("\n### Ratios\n")
        print("\n".join(ratios))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\n{len(cases)} cases in {time.monotonic() - started:.0f} s; load average at end: {load}"
    )
    return 0


def _parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="measured window per case (default 4, --quick 1.5)",
    )
    parser.add_argument(
        "--sizes",
        type=_parse_size,
        nargs="+",
        default=None,
        help="WIDTHxHEIGHT ... (default 640x480 1920x1080; --quick 640x480)",
    )
    parser.add_argument("--transports", nargs="+", choices=TRANSPORTS, default=list(TRANSPORTS))
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--json", help="also write the merged results as JSON lines here")
    parser.add_argument(
        "--domain-id",
        type=int,
        default=101 + os.getpid() % 99,
        help="ROS_DOMAIN_ID for the run (default 101..199 from the pid)",
    )
    parser.add_argument(
        "--disturbed",
        type=float,
        default=0.25,
        help="flag cases during which other processes used more than this many cores",
    )
    parser.add_argument("--warmup", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--grace", type=float, default=0.7, help=argparse.SUPPRESS)
    parser.add_argument("--match-timeout", type=float, default=20.0, help=argparse.SUPPRESS)
    # Internal: the subprocess roles.
    parser.add_argument("--role", choices=("pub", "sub", "both"), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=_parse_size, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("rate", "max"), help=argparse.SUPPRESS)
    parser.add_argument("--sub-qos", choices=("reliable", "best_effort"), help=argparse.SUPPRESS)
    args = parser.parse_args(None if argv is None else list(argv))
    if args.seconds is None:
        args.seconds = 1.5 if args.quick else 4.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.sizes is None:
        args.sizes = [(640, 480)] if args.quick else [(640, 480), (1920, 1080)]
    if not 0 <= args.domain_id <= 232:
        parser.error("--domain-id must be in 0..232 (Fast DDS on Linux)")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def main(argv: Iterable[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.role:
        return _run_child(args)
    return _orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())

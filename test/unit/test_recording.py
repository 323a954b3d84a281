"""The recorder's core without ROS, with real encoding and decoding (PyAV libx264).

Frames are the test pattern, which carries its frame index in a row of blocks that survives
H.264: every check of what a clip covers reads the decoded frames' content back, not metadata.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import av
import numpy as np
import pytest

from edge_vision.recording.bag import BagWriter, TypeRegistry
from edge_vision.recording.clip import top_level_boxes
from edge_vision.recording.prebuffer import EncoderSettings, H264Encoder, PacketRing
from edge_vision.recording.recorder import Recorder, RecorderConfig
from edge_vision.recording.storage import (
    SIDECAR_FORMAT,
    StorageError,
    check_pattern,
    render_name,
)
from edge_vision.sources.test_pattern import read_pattern_code, render_pattern

W, H, FPS = 320, 240, 30
T0 = 1_700_000_000 * 10**9
REPO = Path(__file__).resolve().parents[2]


def stamp(i: int, fps: float = FPS) -> int:
    return T0 + round(i * 1e9 / fps)


def make_recorder(tmp_path: Path, log: list | None = None, **kwargs) -> Recorder:
    kwargs.setdefault("output_dir", str(tmp_path / "clips"))
    kwargs.setdefault("stream", "cam0")
    kwargs.setdefault("fsync", False)
    kwargs.setdefault("file_pattern", "{stream}_{seq:03d}_{reason}")
    sink = log if log is not None else []
    return Recorder(RecorderConfig(**kwargs), log=lambda level, text: sink.append((level, text)))


def feed(rec: Recorder, indices, fps: float = FPS, size=(W, H)) -> None:
    """Push pattern frames one by one, each encoded before the next (no frame is dropped)."""
    for i in indices:
        assert rec.push_frame(render_pattern(i, *size), stamp(i, fps))
        assert rec.wait_encoded(10)


def decoded_indices(path: str | Path) -> list[int]:
    with av.open(str(path)) as container:
        return [
            read_pattern_code(f.to_ndarray(format="bgr24"))[0] for f in container.decode(video=0)
        ]


def sidecar(path: str | Path) -> dict:
    return json.loads(Path(str(path)[: -len(".mp4")] + ".json").read_text())


# -- encoder and ring ----------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [30.0, 12.5])
def test_a_keyframe_every_gop_seconds_of_stamps_whatever_the_rate(fps):
    enc = H264Encoder(EncoderSettings(gop_s=1.0))
    keys = []
    for i in range(int(4 * fps)):
        (packet,) = enc.encode(render_pattern(i, W, H), stamp(i, fps))  # zero latency: 1 in, 1 out
        assert packet.stamp_ns == stamp(i, fps)
        if packet.keyframe:
            keys.append(i)
    # The first frame at least a GOP after the previous keyframe: 0, 30, 60, 90 at 30 fps;
    # 0, 13, 26, 39 at 12.5 fps (frame 12 is 0.96 s after frame 0).
    assert keys == ([0, 30, 60, 90] if fps == 30 else [0, 13, 26, 39])


def test_the_ring_always_reaches_keep_s_back_from_a_keyframe():
    enc = H264Encoder(EncoderSettings(gop_s=1.0))
    ring = PacketRing(keep_s=3.0)
    for i in range(12 * FPS):
        for packet in enc.encode(render_pattern(i, W, H), stamp(i)):
            ring.append(packet)
        packets = list(ring)
        assert packets[0].keyframe
        if i >= 4 * FPS:
            newest = packets[-1].stamp_ns
            chosen = ring.select(newest - 3 * 10**9)
            assert chosen[0].keyframe
            span = (newest - chosen[0].stamp_ns) / 1e9
            assert 3.0 <= span < 3.0 + 1.0 + 1 / FPS  # at least keep_s, at most a GOP more
    assert ring.seconds < 3.0 + 1.0 + 1 / FPS  # and no more than that is kept


# -- clips ---------------------------------------------------------------------------------------


def test_a_clip_covers_the_pre_roll_and_the_duration_and_maps_to_source_stamps(tmp_path):
    rec = make_recorder(tmp_path)
    try:
        feed(rec, range(0, 201))
        result = rec.request("ev-1", "person cam0", pre_s=3.0, duration_s=4.0, now_ns=stamp(200))
        assert result.success, result.message
        assert result.path.endswith("cam0_001_person_cam0.mp4")
        assert not Path(result.path).exists()  # it appears when complete
        feed(rec, range(201, 360))
        assert rec.wait_idle(30)
    finally:
        rec.close()
    got = decoded_indices(result.path)
    # Contiguous: no frame lost or repeated.
    assert got == list(range(got[0], got[-1] + 1))
    # Pre-roll: from the keyframe at or before 200 - 3 s (frame 110), i.e. frame 90.
    assert got[0] == 90
    assert 110 - FPS < got[0] <= 110
    # Duration: up to 200 + 4 s = frame 320 (+-1 frame).
    assert abs(got[-1] - 320) <= 1
    meta = sidecar(result.path)
    assert meta["format"] == SIDECAR_FORMAT
    assert meta["frames"] == len(got)
    assert meta["first_frame_stamp_ns"] == stamp(got[0])
    assert meta["last_frame_stamp_ns"] == stamp(got[-1])
    assert meta["event_ids"] == ["ev-1"] and meta["reasons"] == ["person cam0"]
    assert meta["pre_s_achieved"] == pytest.approx(110 / FPS, abs=1e-6)  # 3.67 s >= 3 s
    assert meta["requested"]["start_ns"] == stamp(200) - 3 * 10**9
    assert meta["requested"]["end_ns"] == stamp(200) + 4 * 10**9
    assert (meta["width"], meta["height"], meta["stream"]) == (W, H, "cam0")
    # The file's timeline is the stamps': frame time + first stamp = that frame's source stamp.
    with av.open(result.path) as container:
        times = [f.time for f in container.decode(video=0)]
    recovered = [meta["first_frame_stamp_ns"] + round(t * 1e9) for t in times]
    assert np.max(np.abs(np.array(recovered) - np.array([stamp(i) for i in got]))) < 20_000


def test_a_new_trigger_while_recording_extends_the_clip(tmp_path):
    rec = make_recorder(tmp_path)
    try:
        feed(rec, range(0, 151))
        first = rec.request("ev-1", "person", pre_s=2.0, duration_s=2.0, now_ns=stamp(150))
        feed(rec, range(151, 181))
        # Same event id: extends to 180 + 2 s = 240.
        again = rec.request("ev-1", "person", duration_s=2.0, now_ns=stamp(180))
        feed(rec, range(181, 221))
        # Another event (EDGEMATRIX: any trigger while recording): extends to 220 + 3 s = 310.
        other = rec.request("ev-2", "car", duration_s=3.0, now_ns=stamp(220))
        feed(rec, range(221, 400))
        assert rec.wait_idle(30)
    finally:
        rec.close()
    assert first.success and again.success and other.success
    assert first.path == again.path == other.path and "extended" in other.message
    got = decoded_indices(first.path)
    assert got == list(range(got[0], got[-1] + 1))
    assert got[0] == 90  # keyframe at or before 150 - 60
    assert abs(got[-1] - 310) <= 1
    meta = sidecar(first.path)
    assert meta["event_ids"] == ["ev-1", "ev-2"] and meta["reasons"] == ["person", "car"]
    assert [r["event_id"] for r in meta["requests"]] == ["ev-1", "ev-1", "ev-2"]
    assert not meta["capped"]
    assert len(list((tmp_path / "clips").glob("*.mp4"))) == 1


def test_extensions_stop_at_max_duration(tmp_path):
    rec = make_recorder(tmp_path)
    try:
        feed(rec, range(0, 61))
        results = [
            rec.request("ev", "r", pre_s=1.0, duration_s=2.0, max_duration_s=5.0, now_ns=stamp(60))
        ]
        for i in range(61, 600):
            feed(rec, [i])
            if i % 30 == 0 and i < 400:  # re-triggered every second for 11 s
                results.append(rec.request("ev", "r", duration_s=2.0, now_ns=stamp(i)))
        assert rec.wait_idle(30)
    finally:
        rec.close()
    assert all(r.success for r in results)
    assert any("capped at max_duration_s 5" in r.message for r in results)
    got = decoded_indices(results[0].path)
    assert got[0] == 30 and got == list(range(got[0], got[-1] + 1))
    # No longer than max_duration_s from its first frame: 5 s = 150 frames (+-1).
    assert abs((got[-1] - got[0]) - 5 * FPS) <= 1
    meta = sidecar(results[0].path)
    assert meta["capped"] and meta["duration_s"] <= 5.0 + 1e-6
    # Later triggers after the clip was complete start a new clip.
    assert len({r.path for r in results}) == 2


def test_the_mp4_is_faststart_moov_before_mdat(tmp_path):
    rec = make_recorder(tmp_path)
    try:
        feed(rec, range(0, 40))
        result = rec.request("e", "r", pre_s=1.0, duration_s=0.5, now_ns=stamp(39))
        feed(rec, range(40, 70))
        assert rec.wait_idle(30)
    finally:
        rec.close()
    boxes = top_level_boxes(result.path)
    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat"), boxes
    with av.open(result.path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.extradata  # avcC from the in-band SPS/PPS
        assert container.format.name.startswith("mov,mp4")


def test_a_change_of_frame_size_ends_the_clip_and_starts_a_new_buffer(tmp_path):
    log: list = []
    rec = make_recorder(tmp_path, log)
    try:
        feed(rec, range(0, 40))
        result = rec.request("e", "r", pre_s=1.0, duration_s=5.0, now_ns=stamp(39))
        feed(rec, range(40, 60))
        feed(rec, range(60, 100), size=(W * 2, H * 2))
        assert rec.wait_idle(30)
        assert rec.ring.seconds < 40 / FPS and next(iter(rec.ring)).width == W * 2
    finally:
        rec.close()
    got = decoded_indices(result.path)
    assert got == list(range(0, 60))
    assert sidecar(result.path)["ended_by"] == "the video changed size or its clock jumped"


def test_a_clip_ends_when_the_video_stops_coming(tmp_path):
    rec = make_recorder(tmp_path, stall_s=0.3)
    try:
        feed(rec, range(0, 61))
        # The source clock runs on from the last frame; 0.5 s + 0.3 s later the clip is done.
        result = rec.request("e", "r", pre_s=1.0, duration_s=0.5)
        assert rec.wait_idle(10)
    finally:
        rec.close()
    assert decoded_indices(result.path) == list(range(30, 61))
    assert sidecar(result.path)["ended_by"] == "no more frames"


def test_no_video_yet_is_refused_with_a_reason(tmp_path):
    rec = make_recorder(tmp_path)
    try:
        result = rec.request("e", "r")
    finally:
        rec.close()
    assert not result.success and "no frames" in result.message


# -- names, leftovers, quota, retention ------------------------------------------------------------


def test_file_names_from_the_pattern():
    from datetime import datetime, timezone

    t = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    assert (
        render_name(
            "{stream}_{time:%Y%m%d-%H%M%S}_{reason}", stream="cam0", time=t, reason="person cam0"
        )
        == "cam0_20250304-050607_person_cam0"
    )
    assert render_name(
        "{time:%Y-%m-%d}/{stream}_{event_id}", stream="c", time=t, event_id="a/b"
    ) == ("2025-03-04/c_a_b")
    assert render_name("{stream}_{reason}", stream="cam0", reason="") == "cam0"  # no trailing _
    assert render_name("../{stream}", stream="x") == "x"  # cannot climb out
    assert "KeyError: 'nope'" in (check_pattern("{nope}") or "")
    assert check_pattern("{stream}_{time:%H%M}") is None


def test_leftovers_of_a_crash_are_removed_at_start_up(tmp_path):
    root = tmp_path / "clips"
    (root / ".cam0_1.part").mkdir(parents=True)
    (root / ".cam0_1.part" / "cam0_1.mp4").write_bytes(b"\0" * 1000)
    (root / "day").mkdir()
    (root / "day" / ".x.part").mkdir()
    orphan = root / "cam0_2.json"  # a sidecar whose video never got its final name
    orphan.write_text(json.dumps({"format": SIDECAR_FORMAT}))
    (root / "cam0_2.rosbag2").mkdir()
    foreign = root / "notes.json"  # not ours: left alone
    foreign.write_text("{}")
    log: list = []
    rec = make_recorder(tmp_path, log)
    rec.close()
    assert sorted(p.name for p in root.rglob("*")) == ["day", "notes.json"]
    removed = [t for level, t in log if level == "warning" and "leftover" in t]
    assert len(removed) == 3, log


def _clip(rec: Recorder, start: int, seconds: float = 1.0) -> str:
    feed(rec, range(start, start + 31))
    result = rec.request("e", f"n{start}", pre_s=1.0, duration_s=seconds, now_ns=stamp(start + 30))
    assert result.success, result.message
    feed(rec, range(start + 31, start + 31 + int(seconds * FPS) + 2))
    assert rec.wait_idle(30)
    return result.path


def test_quota_deletes_the_oldest_clips_first(tmp_path):
    log: list = []
    rec = make_recorder(tmp_path, log)
    try:
        first = _clip(rec, 0)
        size = sum(p.stat().st_size for p in Path(first).parent.iterdir())
        # Room for about two and a half such clips.
        rec.reconfigure(quota_bytes=int(size * 2.5))
        paths = [first] + [_clip(rec, 100 * k) for k in range(1, 6)]
        used = rec.storage.used_bytes()
    finally:
        rec.close()
    left = sorted(str(p) for p in (tmp_path / "clips").glob("*.mp4"))
    assert left == sorted(paths[-2:])  # the newest two survive, the oldest went first
    assert used <= size * 2.5
    deleted = [t for level, t in log if level == "info" and t.startswith("deleted")]
    assert [Path(t.split()[1]).name for t in deleted] == [Path(p).name for p in paths[:4]]
    for p in paths[:4]:
        assert not Path(p[:-4] + ".json").exists()  # sidecars go with their clips


def test_retention_by_count_and_age(tmp_path):
    rec = make_recorder(tmp_path, max_files=2)
    try:
        paths = [_clip(rec, 100 * k) for k in range(4)]
        assert sorted(str(p) for p in (tmp_path / "clips").glob("*.mp4")) == sorted(paths[2:])
        old = time.time() - 3 * 86400
        os.utime(paths[2], (old, old))
        rec.reconfigure(max_age_s=2 * 86400.0)
        rec.enforce_retention()
        assert rec.wait_idle(10)
    finally:
        rec.close()
    assert [str(p) for p in (tmp_path / "clips").glob("*.mp4")] == [paths[3]]


def test_a_clip_bigger_than_the_quota_stops_with_an_error_and_leaves_nothing(tmp_path):
    log: list = []
    quota = 1_500_000
    rec = make_recorder(tmp_path, log, encoder=EncoderSettings(crf=0), quota_bytes=quota)
    rng = np.random.default_rng(1)
    noise = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(10)]
    try:
        feed(rec, range(0, 61))  # the test pattern: a low bitrate
        started = rec.request("e", "r", pre_s=0.0, duration_s=0.5, now_ns=stamp(60))
        # Then noise at crf 0 (several MB/s), and triggers that keep extending the clip.
        for i in range(61, 400):
            rec.push_frame(noise[i % 10], stamp(i))
            rec.wait_encoded()
            if i % 5 == 0:
                rec.request("e", "r", duration_s=1.0, now_ns=stamp(i))
            time.sleep(0.004)  # the writer checks the size about once a second
        assert rec.wait_idle(30)
        stats = rec.stats()
        # Now the buffer's bitrate says a 6 s clip cannot fit: refused at once, with the reason.
        refused = rec.request("e2", "r", pre_s=1.0, duration_s=5.0, now_ns=stamp(399))
    finally:
        rec.close()
    assert started.success, started.message
    assert stats["clips failed"] == 1 and stats["clips written"] == 0
    stopped = [t for level, t in log if level == "error" and "stopped" in t]
    assert len(stopped) == 1 and "more than the whole quota" in stopped[0], log
    assert list((tmp_path / "clips").iterdir()) == []  # no final name, no temporary left
    assert not refused.success and refused.message.startswith("quota impossible"), refused


def test_min_free_space_refuses_a_clip_with_a_clear_reason(tmp_path):
    rec = make_recorder(tmp_path, min_free_bytes=10**18)  # more than any disk has
    try:
        feed(rec, range(0, 31))
        result = rec.request("e", "r", now_ns=stamp(30))
        stats = rec.stats()
    finally:
        rec.close()
    assert not result.success
    assert result.message.startswith("disk full:") and "MB free" in result.message
    assert "disk full" in stats["last error"]


def test_an_unusable_output_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="cannot create output_dir"):
        make_recorder(tmp_path, output_dir=str(blocker / "clips"))


# -- crash and full disk, in real processes ------------------------------------------------------

_WRITER_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import numpy as np
    from edge_vision.recording.recorder import Recorder, RecorderConfig
    from edge_vision.recording.prebuffer import EncoderSettings
    from edge_vision.sources.test_pattern import render_pattern

    out, mode = sys.argv[1], sys.argv[2]
    log = []
    rec = Recorder(
        RecorderConfig(output_dir=out, stream="cam0", fsync=True, min_free_bytes=0,
                       buffer_s=2.0, file_pattern="{stream}_{seq:03d}",
                       encoder=EncoderSettings(crf=10)),
        log=lambda level, text: log.append([level, text]),
    )
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(8)]
    T0 = 1_700_000_000 * 10**9
    i = 0

    def push(frame):
        global i
        rec.push_frame(frame, T0 + i * 10**9 // 30)
        rec.wait_encoded()
        i += 1

    def small_clip():
        for _ in range(91):  # a buffer of the test pattern only (a low bitrate)
            push(render_pattern(i, 320, 240))
        r = rec.request("small", "ok", pre_s=1.0, duration_s=0.5)
        for _ in range(20):
            push(render_pattern(i, 320, 240))
        rec.wait_idle(30)
        return r

    first = small_clip()
    if mode == "kill":
        r = rec.request("big", "long", pre_s=1.0, duration_s=600.0, max_duration_s=600.0)
        print("REQUESTED", r.path, flush=True)
        while True:  # until killed
            push(noise[i % 8])
    else:  # disk full: a big clip of noise cannot fit on the small file system
        big = rec.request("big", "too big", pre_s=0.0, duration_s=20.0)
        for _ in range(600):
            push(noise[i % 8])
        rec.wait_idle(30)
        after = small_clip()  # the recorder is still usable
        rec.close()
        print("RESULT " + json.dumps({"first": first.__dict__, "big": big.__dict__,
                                      "after": after.__dict__, "stats": rec.stats(), "log": log,
                                      "files": sorted(os.listdir(out))}))
    """
)


def test_kill_9_while_writing_leaves_no_corrupt_file_under_a_final_name(tmp_path):
    out = tmp_path / "clips"
    script = tmp_path / "writer.py"
    script.write_text(_WRITER_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), "kill"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("REQUESTED"), line + proc.stdout.read()
        big = Path(line.split()[1])
        temp = big.parent / f".{big.stem}.part" / big.name
        deadline = time.monotonic() + 60
        while not (temp.exists() and temp.stat().st_size > 2_000_000):
            assert time.monotonic() < deadline, "the long clip did not grow"
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not big.exists()
    finals = sorted(out.glob("*.mp4"))
    assert [p.name for p in finals] == ["cam0_001.mp4"]  # the complete small clip only
    for path in finals:
        got = decoded_indices(path)
        assert len(got) == sidecar(path)["frames"] and got == list(range(got[0], got[-1] + 1))
    assert temp.exists()  # the partial file is there, under its temporary name
    # The next start removes it and says so.
    log: list = []
    Recorder(RecorderConfig(output_dir=str(out)), log=lambda lv, t: log.append((lv, t))).close()
    assert not temp.parent.exists()
    assert any("leftover" in t and big.stem in t for _, t in log)
    assert sorted(p.name for p in out.iterdir()) == ["cam0_001.json", "cam0_001.mp4"]


def _tmpfs_command(mount: Path, size: str, argv: list[str]) -> list[str] | None:
    """argv run in a private mount namespace with a small tmpfs at ``mount``; None if this
    machine cannot make one (no unshare, or no user/mount namespaces)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    flags = ["-m"] if os.geteuid() == 0 else ["-Urm"]
    probe = subprocess.run(
        [unshare, *flags, "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {mount}"],
        capture_output=True,
        timeout=20,
    )
    if probe.returncode != 0:
        return None
    quoted = " ".join(f"'{a}'" for a in argv)
    return [unshare, *flags, "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs {mount} && {quoted}"]


def test_a_full_disk_stops_the_recording_with_a_clear_error_and_the_recorder_goes_on(tmp_path):
    mount = tmp_path / "small_fs"
    mount.mkdir()
    script = tmp_path / "writer.py"
    script.write_text(_WRITER_SCRIPT)
    command = _tmpfs_command(mount, "3m", [sys.executable, str(script), str(mount), "full"])
    if command is None:
        pytest.skip("cannot mount a small tmpfs in a private mount namespace here")
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=REPO)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["first"]["success"] and result["big"]["success"]
    stats, log = result["stats"], result["log"]
    # The real ENOSPC from the file system, reported in plain words.
    assert stats["clips failed"] == 1
    errors = [t for level, t in log if level == "error"]
    assert any("stopped: disk full" in t and "No space left on device" in t for t in errors), log
    # The recorder survived: the next clip was written; the failed one left nothing behind.
    assert result["after"]["success"] and stats["clips written"] == 2, stats
    assert result["files"] == ["cam0_001.json", "cam0_001.mp4", "cam0_003.json", "cam0_003.mp4"]


# -- rosbag2 ---------------------------------------------------------------------------------------


def _event_bytes(eid: str, stamp_ns: int) -> bytes:
    from rclpy.serialization import serialize_message

    from edge_vision.msg import Event as EventMsg
    from edge_vision.ros.image_conversion import ns_to_stamp

    msg = EventMsg(id=eid, stream="cam0", label="person", score=0.9)
    msg.header.stamp = ns_to_stamp(stamp_ns)
    return serialize_message(msg)


def test_bag_topics_are_recorded_over_the_clip_window_and_read_back_with_rosbags(tmp_path):
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    registry = TypeRegistry()
    rec = Recorder(
        RecorderConfig(output_dir=str(tmp_path / "clips"), fsync=True), registry=registry
    )
    wall0 = time.time_ns()
    try:
        # Before the pre-roll window: must not be in the bag. recv stamps are wall clock.
        rec.push_message("/cam0/events", "edge_vision/msg/Event", _event_bytes("old", 1), wall0)
        for i in range(0, 61):
            rec.push_frame(render_pattern(i, W, H), stamp(i), recv_ns=wall0 + i * 10**9 // 30)
            rec.wait_encoded()
            rec.push_message(
                "/cam0/events",
                "edge_vision/msg/Event",
                _event_bytes(f"e{i}", stamp(i)),
                wall0 + i * 10**9 // 30 + 1,
            )
        result = rec.request("e60", "person", pre_s=1.0, duration_s=1.0, now_ns=stamp(60))
        for i in range(61, 100):
            rec.push_frame(render_pattern(i, W, H), stamp(i), recv_ns=wall0 + i * 10**9 // 30)
            rec.wait_encoded()
            rec.push_message(
                "/cam0/events",
                "edge_vision/msg/Event",
                _event_bytes(f"e{i}", stamp(i)),
                wall0 + i * 10**9 // 30 + 1,
            )
        assert rec.wait_idle(30)
    finally:
        rec.close()
    meta = sidecar(result.path)
    bag = Path(result.path).with_suffix(".rosbag2")
    assert meta["bag"] == bag.name and bag.is_dir()
    got = decoded_indices(result.path)
    with Reader(bag) as reader:
        (connection,) = reader.connections
        assert connection.msgtype == "edge_vision/msg/Event"
        # The bag carries the same type hash as the interface build (ros2 bag checks it).
        built = json.loads((Path(sys.prefix) / "share/edge_vision/msg/Event.json").read_text())[
            "type_hashes"
        ][0]["hash_string"]
        assert connection.digest == built
    # Self-describing: a reader with no edge_vision types at all decodes it from the
    # definitions stored in the bag.
    with AnyReader([bag], default_typestore=get_typestore(Stores.EMPTY)) as reader:
        ids = [reader.deserialize(raw, c.msgtype).id for c, _, raw in reader.messages()]
    # Over the clip's window: from its first frame (a keyframe) to its last.
    assert ids == [f"e{i}" for i in range(got[0], got[-1] + 1)]
    assert meta["bag_messages"] == {"/cam0/events": len(ids)}


def test_the_type_registry_matches_the_interface_build_hashes():
    registry = TypeRegistry()
    for msgtype in (
        "edge_vision/msg/Event",
        "vision_msgs/msg/Detection2DArray",
        "sensor_msgs/msg/Image",
    ):
        package, _, name = msgtype.split("/")
        built = json.loads(
            (Path(sys.prefix) / "share" / package / "msg" / f"{name}.json").read_text()
        )
        assert registry.hash(msgtype) == built["type_hashes"][0]["hash_string"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_writer_writes_what_it_is_given(tmp_path, storage):
    from rosbags.rosbag2 import Reader

    registry = TypeRegistry()
    writer = BagWriter(tmp_path / "b.rosbag2", registry, storage)
    writer.write("/events", "edge_vision/msg/Event", _event_bytes("x", 5), 123)
    writer.close()
    with Reader(tmp_path / "b.rosbag2") as reader:
        assert [(c.topic, t) for c, t, _ in reader.messages()] == [("/events", 123)]
    suffix = {"mcap": "mcap", "sqlite3": "db3"}[storage]
    assert (tmp_path / "b.rosbag2" / f"b.rosbag2.{suffix}").is_file()


# -- a real browser plays the clip -----------------------------------------------------------------


def test_a_clip_plays_in_headless_chromium(tmp_path):
    from edge_vision.testing.browser import browser_unavailable_reason, run_browser_script

    reason = browser_unavailable_reason()
    if reason:
        pytest.skip(reason)
    rec = make_recorder(tmp_path, file_pattern="clip")
    try:
        feed(rec, range(0, 61))
        result = rec.request("e", "r", pre_s=1.0, duration_s=1.0, now_ns=stamp(60))
        feed(rec, range(61, 100))
        assert rec.wait_idle(30)
    finally:
        rec.close()
    clip = Path(result.path)
    (clip.parent / "index.html").write_text("<html><body></body></html>")
    js = r"""
    return await page.evaluate(async (src) => {
      const v = document.createElement('video');
      v.muted = true; v.src = src; document.body.appendChild(v);
      await new Promise((ok, bad) => { v.onloadeddata = ok;
        v.onerror = () => bad(new Error('media error ' + (v.error && v.error.message))); });
      const c = document.createElement('canvas'); c.width = v.videoWidth; c.height = v.videoHeight;
      const g = c.getContext('2d', { willReadFrequently: true });
      const code = () => {  // read_pattern_code in JavaScript: the frame index
        g.drawImage(v, 0, 0);
        const bh = Math.max(4, Math.min(16, Math.floor(c.height / 16)));
        const bw = Math.floor(c.width / 32);
        const y = c.height - 2 * bh + Math.floor(bh / 2);
        let value = 0;
        for (let b = 0; b < 32; b++) {
          const d = g.getImageData(b * bw + Math.floor(bw / 2), y, 1, 1).data;
          value = value * 2 + ((d[0] + d[1] + d[2]) / 3 > 127 ? 1 : 0);
        }
        return value;
      };
      const seen = [];
      await new Promise((ok) => {
        v.requestVideoFrameCallback(function cb() { seen.push(code());
          if (!v.ended) v.requestVideoFrameCallback(cb); });
        v.onended = ok; v.play();
      });
      return { duration: v.duration, width: v.videoWidth, seen };
    }, args.src);
    """
    value = run_browser_script(
        js,
        url=(clip.parent / "index.html").as_uri(),
        args={"src": clip.name},
        extra_flags=["--allow-file-access-from-files"],
        timeout_s=60,
    )["value"]
    expected = decoded_indices(clip)
    assert value["width"] == W
    assert value["duration"] == pytest.approx(len(expected) / FPS, abs=0.05)
    # Chromium showed the clip's frames in order (headless may skip a few while painting).
    seen = value["seen"]
    assert len(seen) >= 0.8 * len(expected) and set(seen) <= set(expected) and seen == sorted(seen)
    assert seen[-1] == expected[-1]

import av
import numpy as np

from edge_vision.recording.mp4_writer import Mp4Writer
from edge_vision.sources.test_pattern import read_pattern_code, render_pattern


def test_frames_and_timing_survive_the_round_trip(tmp_path):
    path = tmp_path / "out.mp4"
    writer = Mp4Writer(path, fps_hint=10)
    t0 = 1_700_000_000_000_000_000
    for i in range(20):
        writer.write(render_pattern(i, 320, 240), t0 + i * 100_000_000)  # 10 fps
    writer.close()
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 20
    times = [f.time for f in frames]
    assert np.allclose(np.diff(times), 0.1, atol=0.002)
    # The pattern's embedded frame counter survives H.264: order and content are right.
    codes = [read_pattern_code(f.to_ndarray(format="bgr24")) for f in frames]
    assert [c[0] for c in codes if c is not None] == list(range(20))


def test_a_file_that_was_never_closed_is_still_playable(tmp_path):
    path = tmp_path / "crash.mp4"
    writer = Mp4Writer(path, fps_hint=10)
    for i in range(30):
        writer.write(render_pattern(i, 320, 240), i * 100_000_000)
    # No close(): as after a crash. The fragments already written (a keyframe per second) decode.
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded >= 20  # at most the last second (10 frames) is lost

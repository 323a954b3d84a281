"""StampMatcher: exact stamp matching of streams with bounded buffers."""

from __future__ import annotations

import random
import threading

import pytest

from edge_vision.core.sync import StampMatcher

IMAGE, DETS = 0, 1


def test_pairs_are_emitted_when_the_second_item_of_a_stamp_arrives_in_either_order():
    m = StampMatcher(queue_size=5)
    assert m.add(IMAGE, 100, "img100") is None
    assert m.add(DETS, 100, "det100") == ("img100", "det100")
    # Detections first (another publisher may be faster): input order is kept in the tuple.
    assert m.add(DETS, 200, "det200") is None
    assert m.add(IMAGE, 200, "img200") == ("img200", "det200")
    assert m.matched == 2 and m.dropped == [0, 0]
    assert m.pending(IMAGE) == m.pending(DETS) == 0


def test_a_detector_that_skips_frames_leaves_only_matches_and_counts_the_skipped_images():
    # The usual case: every frame arrives, detections come late for every third one.
    m = StampMatcher(queue_size=10)
    pairs = []
    for t in range(30):
        m.add(IMAGE, t, f"img{t}")
        if t >= 2 and (t - 2) % 3 == 0:
            pair = m.add(DETS, t - 2, f"det{t - 2}")
            assert pair is not None
            pairs.append(pair)
    assert pairs[0] == ("img0", "det0") and pairs[-1] == ("img27", "det27")
    assert all(a[3:] == b[3:] for a, b in pairs)
    # Images older than a delivered detection stamp can never match: dropped at once, so the
    # buffer only holds the images newer than the last detection.
    assert m.pending(IMAGE) == 2  # 28, 29
    assert m.dropped[IMAGE] == 30 - len(pairs) - 2
    assert m.dropped[DETS] == 0


def test_buffers_are_bounded_and_what_falls_out_is_counted():
    m = StampMatcher(queue_size=3)
    for t in range(10):
        assert m.add(DETS, t, t) is None  # no image ever comes
    assert m.pending(DETS) == 3 and m.dropped[DETS] == 7
    # A partner for an evicted stamp finds nothing: its own stamp is not buffered.
    assert m.add(IMAGE, 5, "late") is None
    # ...and it drops the detections older than it from the other buffer (none left here).
    assert m.add(IMAGE, 9, "img9") == ("img9", 9)
    assert m.received == [2, 10]


def test_items_older_than_a_delivered_partner_stamp_are_dropped():
    m = StampMatcher(queue_size=10)
    for t in (1, 2, 3):
        m.add(DETS, t, t)
    # The image stream is at 3 already: detections 1 and 2 lost their frames.
    assert m.add(IMAGE, 3, "img3") == ("img3", 3)
    assert m.dropped == [0, 2] and m.pending(DETS) == 0


def test_a_duplicate_stamp_on_one_input_keeps_the_newer_item():
    m = StampMatcher()
    m.add(IMAGE, 7, "first")
    m.add(IMAGE, 7, "second")
    assert m.dropped[IMAGE] == 1
    assert m.add(DETS, 7, "d") == ("second", "d")


def test_three_inputs_match_only_when_all_have_the_stamp():
    m = StampMatcher(inputs=3)
    assert m.add(0, 5, "a") is None
    assert m.add(2, 5, "c") is None
    assert m.add(1, 5, "b") == ("a", "b", "c")


def test_matching_resumes_after_a_stamp_jump_backwards():
    m = StampMatcher(queue_size=4)
    for t in (100, 101):
        m.add(IMAGE, t, t)
        m.add(DETS, t, t)
    # The source loops: stamps start over; matching resumes once both streams have jumped.
    pairs = []
    for t in range(10):
        m.add(IMAGE, t, t)
        pair = m.add(DETS, t, t)
        if pair is not None:
            pairs.append(pair)
    assert pairs == [(t, t) for t in range(10)]


def test_shrinking_the_queue_drops_the_oldest_and_bad_arguments_are_refused():
    m = StampMatcher(queue_size=5)
    for t in range(5):
        m.add(DETS, t, t)
    m.queue_size = 2
    assert m.pending(DETS) == 2 and m.dropped[DETS] == 3
    assert m.add(IMAGE, 3, "x") == ("x", 3)
    m.clear()
    assert m.pending(DETS) == 0 and m.dropped[DETS] == 4
    with pytest.raises(ValueError):
        StampMatcher(inputs=1)
    with pytest.raises(ValueError):
        StampMatcher(queue_size=0)
    with pytest.raises(ValueError):
        m.queue_size = 0
    with pytest.raises(IndexError):
        m.add(2, 0, None)


def test_concurrent_producers_get_every_pair_exactly_once():
    m = StampMatcher(queue_size=1000)
    n = 2000
    found: list[tuple] = []
    lock = threading.Lock()

    def produce(index: int, seed: int) -> None:
        rng = random.Random(seed)
        for t in range(n):
            pair = m.add(index, t, (index, t))
            if pair is not None:
                with lock:
                    found.append(pair)
            if rng.random() < 0.01:
                threading.Event().wait(0.0005)  # let the other thread get ahead now and then

    threads = [threading.Thread(target=produce, args=(i, i)) for i in (IMAGE, DETS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(found) == [((IMAGE, t), (DETS, t)) for t in range(n)]
    assert m.matched == n and m.dropped == [0, 0]

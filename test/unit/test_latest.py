import threading
import time

from edge_vision.core.latest import LatestSlot


def test_consumer_gets_the_newest_item_and_skips_are_counted():
    slot: LatestSlot[int] = LatestSlot()
    for i in range(5):
        slot.put(i)
    assert slot.take(timeout=0) == 4
    assert slot.replaced == 4 and slot.put_count == 5
    assert slot.take(timeout=0.01) is None


def test_take_blocks_until_put_and_close_releases_waiters():
    slot: LatestSlot[str] = LatestSlot()
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    t.start()
    time.sleep(0.05)
    slot.put("frame")
    t.join(2)
    assert got == ["frame"]

    t = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    t.start()
    time.sleep(0.05)
    started = time.monotonic()
    slot.close()
    t.join(2)
    assert got[-1] is None and time.monotonic() - started < 1 and slot.closed


def test_a_slow_consumer_sees_bounded_staleness():
    """Producer at ~200 Hz, consumer at ~20 Hz: every item taken is one of the last two put."""
    slot: LatestSlot[int] = LatestSlot()
    stop = threading.Event()
    produced = [0]

    def produce() -> None:
        while not stop.is_set():
            produced[0] += 1
            slot.put(produced[0])
            time.sleep(0.005)

    t = threading.Thread(target=produce)
    t.start()
    try:
        for _ in range(10):
            item = slot.take(timeout=1)
            assert item is not None and produced[0] - item <= 2
            time.sleep(0.05)
    finally:
        stop.set()
        t.join()
    assert slot.replaced > 0

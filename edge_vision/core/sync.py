"""Matching messages of several streams by header stamp (pure Python, no rclpy).

message_filters' ``TimeSynchronizer`` is not in the ROS 2 wheels; :class:`StampMatcher` does the
exact-stamp part of it that the nodes need, e.g. an image with the detections computed on it
(a detector copies the image header, so the stamps are equal).

Each input keeps a bounded buffer of items not matched yet. Adding an item whose stamp every
other input already holds emits the tuple of those items, one per input, in input order.
What can no longer match is dropped and counted per input:

- an item pushed out of a full buffer (its partner never came or came too late);
- an item older than a stamp another input has just delivered: each input delivers in stamp
  order (one publisher, DDS keeps its order), so that partner can never come. This keeps the
  buffers short, which matters when they hold images;
- an item replaced by a newer one with the same stamp on the same input.

After a stamp jump backwards (a looped bag, a restarted simulation) the inputs disagree for a
moment about what is old: a few pairs around the jump are lost, then matching resumes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

__all__ = ["StampMatcher"]


class StampMatcher:
    """Exact stamp matching of ``inputs`` streams with at most ``queue_size`` items buffered each.

    Thread-safe: inputs may be fed from different executor threads.
    """

    def __init__(self, inputs: int = 2, queue_size: int = 10) -> None:
        if inputs < 2:
            raise ValueError(f"need at least 2 inputs to match, got {inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._queue_size = int(queue_size)
        self._lock = threading.Lock()
        # Insertion order is arrival order: the first item is the one to evict when full.
        self._buffers: list[OrderedDict[int, Any]] = [OrderedDict() for _ in range(inputs)]
        self.received = [0] * inputs
        self.dropped = [0] * inputs
        """Per input: items that left the buffer without a match."""
        self.matched = 0

    @property
    def inputs(self) -> int:
        return len(self._buffers)

    @property
    def queue_size(self) -> int:
        return self._queue_size

    @queue_size.setter
    def queue_size(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"queue_size must be >= 1, got {size}")
        with self._lock:
            self._queue_size = int(size)
            for i in range(self.inputs):
                self._trim(i)

    def add(self, index: int, stamp_ns: int, item: Any) -> tuple[Any, ...] | None:
        """Buffer ``item`` of input ``index``; the matched tuple when all inputs have its stamp."""
        if not 0 <= index < self.inputs:
            raise IndexError(f"input {index} out of range 0..{self.inputs - 1}")
        stamp = int(stamp_ns)
        with self._lock:
            self.received[index] += 1
            for j in range(self.inputs):
                if j != index:
                    self._drop_older(j, stamp)
            own = self._buffers[index]
            if own.pop(stamp, None) is not None:
                self.dropped[index] += 1  # a duplicate stamp: the newer item wins
            if all(stamp in b for j, b in enumerate(self._buffers) if j != index):
                self.matched += 1
                return tuple(
                    item if j == index else b.pop(stamp) for j, b in enumerate(self._buffers)
                )
            own[stamp] = item
            self._trim(index)
            return None

    def pending(self, index: int) -> int:
        """Items of input ``index`` waiting for a match."""
        with self._lock:
            return len(self._buffers[index])

    def clear(self) -> None:
        """Forget everything buffered (counted as dropped), e.g. when the inputs are re-wired."""
        with self._lock:
            for i, buffer in enumerate(self._buffers):
                self.dropped[i] += len(buffer)
                buffer.clear()

    def _drop_older(self, index: int, stamp: int) -> None:
        buffer = self._buffers[index]
        stale = [s for s in buffer if s < stamp]
        for s in stale:
            del buffer[s]
        self.dropped[index] += len(stale)

    def _trim(self, index: int) -> None:
        buffer = self._buffers[index]
        while len(buffer) > self._queue_size:
            buffer.popitem(last=False)
            self.dropped[index] += 1

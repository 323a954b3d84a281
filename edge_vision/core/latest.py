"""A one-slot mailbox: the consumer always gets the newest item, never a backlog.

Inference nodes put every incoming frame here and a worker thread takes from it; when inference
is slower than the camera, older frames are replaced (and counted) instead of queueing, so
latency stays bounded by one inference time.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.put_count = 0
        self.replaced = 0
        """Items overwritten before anyone took them: the frames the consumer skipped."""

    def put(self, item: T) -> None:
        with self._cond:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self.put_count += 1
            self._cond.notify()

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item (removing it), or None after ``timeout`` s or once closed."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

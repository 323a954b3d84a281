"""Metadata outputs: the buffered Redis stream writer and the Metropolis message format.

Names are imported lazily so that ``edge_vision.outputs.metropolis`` works without redis-py.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["BufferedRedisStream", "RedisStreamStats", "frame_message", "parse_object"]

_WHERE = {
    "BufferedRedisStream": "edge_vision.outputs.redis_stream",
    "RedisStreamStats": "edge_vision.outputs.redis_stream",
    "frame_message": "edge_vision.outputs.metropolis",
    "parse_object": "edge_vision.outputs.metropolis",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

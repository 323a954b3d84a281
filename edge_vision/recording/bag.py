"""rosbag2 (MCAP or SQLite) next to a clip, written with the pure-Python ``rosbags``.

Messages arrive already serialised (CDR bytes from a raw rclpy subscription, or from
``rclpy.serialization.serialize_message``); they are written as they are. ``rosbags`` still
needs every message type's definition, to store it in the bag and to compute the type hash
(RIHS01) that ``ros2 bag`` checks: :class:`TypeRegistry` reads the ``.msg`` files that the
installed interface packages ship (``<prefix>/share/<package>/msg/<Type>.msg`` under
``AMENT_PREFIX_PATH`` and this interpreter's prefix), the package's own ``edge_vision/msg/*``
and the vision_msgs fallback included, and falls back to rosbags' built-in Kilted definitions
for a type with no file. Reading a bag back only needs the same registry.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

from rosbags.interfaces import Nodetype
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

__all__ = ["BAG_STORAGES", "BagWriter", "TypeRegistry", "interface_prefixes"]

BAG_STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def interface_prefixes() -> list[Path]:
    """Install prefixes that may hold ``share/<package>/msg``: AMENT_PREFIX_PATH, then the
    interpreter's prefix (the no-distro venv)."""
    prefixes = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for extra in (Path(sys.prefix),):
        if extra not in prefixes:
            prefixes.append(extra)
    return prefixes


def _referenced(fields: list) -> Iterable[str]:
    for _name, (nodetype, details) in fields:
        if nodetype == Nodetype.NAME:
            yield details
        elif nodetype in (Nodetype.ARRAY, Nodetype.SEQUENCE):
            (sub_type, sub_details), _count = details
            if sub_type == Nodetype.NAME:
                yield sub_details


class TypeRegistry:
    """A rosbags typestore holding the installed definitions of the types asked for (and of
    the types they use). Thread-safe."""

    def __init__(self, prefixes: Iterable[Path] | None = None) -> None:
        self.prefixes = list(prefixes) if prefixes is not None else interface_prefixes()
        self.typestore: Typestore = get_typestore(Stores.EMPTY)
        self._fallback = get_typestore(Stores.ROS2_KILTED)
        self._lock = threading.Lock()
        self.sources: dict[str, str] = {}  # type -> file it came from, or "rosbags"

    def _definition(self, msgtype: str) -> tuple[dict, str]:
        package, kind, name = msgtype.split("/")
        for prefix in self.prefixes:
            path = prefix / "share" / package / kind / f"{name}.msg"
            if path.is_file():
                return get_types_from_msg(path.read_text(encoding="utf-8"), msgtype), str(path)
        if msgtype in self._fallback.fielddefs:
            return {msgtype: self._fallback.fielddefs[msgtype]}, "rosbags"
        raise KeyError(
            f"no definition of {msgtype}: no {package}/{kind}/{name}.msg under "
            f"{', '.join(str(p) for p in self.prefixes)} and not a standard type"
        )

    def ensure(self, msgtype: str) -> Typestore:
        """Register ``msgtype`` ('pkg/msg/Name') and its dependencies; KeyError if unknown."""
        msgtype = msgtype.strip("/")
        if msgtype.count("/") == 1:  # 'pkg/Name' -> 'pkg/msg/Name'
            package, name = msgtype.split("/")
            msgtype = f"{package}/msg/{name}"
        with self._lock:
            pending = [msgtype]
            found: dict = {}
            while pending:
                current = pending.pop()
                if current in found or current in self.typestore.fielddefs:
                    continue
                types, source = self._definition(current)
                for typename, (_consts, fields) in types.items():
                    found[typename] = types[typename]
                    self.sources[typename] = source
                    pending.extend(_referenced(fields))
            if found:
                self.typestore.register(found)
        return self.typestore

    def hash(self, msgtype: str) -> str:
        self.ensure(msgtype)
        return self.typestore.hash_rihs01(msgtype)


class BagWriter:
    """One rosbag2 at ``path`` (a folder, as ``ros2 bag`` makes: ``metadata.yaml`` and
    ``<name>.mcap``). Connections are added on a topic's first message. Not thread-safe."""

    def __init__(
        self,
        path: str | Path,
        registry: TypeRegistry,
        storage: str = "mcap",
        version: int = 8,
    ) -> None:
        if storage not in BAG_STORAGES:
            raise ValueError(f"bag storage must be one of {', '.join(BAG_STORAGES)}")
        self.path = Path(path)
        self._registry = registry
        # Version 8 (Jazzy) is read by Jazzy's and Kilted's ros2 bag; rosbags writes 8 or 9.
        self._writer = Writer(self.path, version=version, storage_plugin=BAG_STORAGES[storage])
        self._writer.open()
        self._connections: dict[tuple[str, str], object] = {}
        self.counts: dict[str, int] = {}
        self.bytes = 0

    def write(self, topic: str, msgtype: str, data: bytes, stamp_ns: int) -> None:
        key = (topic, msgtype)
        connection = self._connections.get(key)
        if connection is None:
            typestore = self._registry.ensure(msgtype)
            connection = self._writer.add_connection(topic, msgtype, typestore=typestore)
            self._connections[key] = connection
        self._writer.write(connection, stamp_ns, data)
        self.counts[topic] = self.counts.get(topic, 0) + 1
        self.bytes += len(data)

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # best effort on a failing disk
            self._writer.abort()

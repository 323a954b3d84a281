"""ROS 2 node executables. Importing this package does not import rclpy.

``NODE_EXECUTABLES`` maps each executable name (``ros2 run edge_vision <name>``, the
``executable:`` of a pipeline file) to its Python module, which defines ``main()``. The table is
``executables.txt`` beside this file, also read by CMakeLists.txt for ROS workspace installs.
"""

from __future__ import annotations

from pathlib import Path


def _read_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for line in Path(__file__).with_name("executables.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            executable, module = line.split()
            table[executable] = module
    return table


NODE_EXECUTABLES: dict[str, str] = _read_table()

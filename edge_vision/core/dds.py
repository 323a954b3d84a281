"""The DDS environment edge_vision processes run with by default.

Discovery stays on the loopback interface unless the user's environment explicitly says
otherwise, and Fast DDS uses the shipped shared-memory profile (config/fastdds_shm.xml), which
measured faster and loss-free for image topics between processes (docs/performance.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PROFILE_NAME = "fastdds_shm.xml"


def fastdds_profile() -> Path | None:
    """The shipped Fast DDS profile: from the checkout, else from the ROS install's share dir."""
    checkout = Path(__file__).resolve().parents[2] / "config" / PROFILE_NAME
    if checkout.is_file():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("edge_vision")) / "config" / PROFILE_NAME
    except Exception:  # not installed as a ROS package
        return None
    return installed if installed.is_file() else None


def default_dds_environment(
    environ: Mapping[str, str] | None = None, *, force: bool = False
) -> dict[str, str]:
    """Variables to add to ``environ`` (default: os.environ) for a node process.

    Values the user set explicitly are kept unless ``force`` (tests, benchmarks), so a deployment
    that wants discovery on the network can have it by saying so.
    """
    environ = os.environ if environ is None else environ
    wanted = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    if environ.get("ROS_DISTRO", "") == "humble":
        wanted["ROS_LOCALHOST_ONLY"] = "1"  # Humble predates ROS_AUTOMATIC_DISCOVERY_RANGE
    rmw = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    profile = fastdds_profile()
    if profile is not None and rmw.startswith("rmw_fastrtps"):
        wanted["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
    if force:
        return wanted
    return {k: v for k, v in wanted.items() if not environ.get(k)}

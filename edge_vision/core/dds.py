"""The DDS environment edge_vision processes run with by default.

Discovery stays on the loopback interface unless the user's environment explicitly chose
otherwise, and Fast DDS uses the shipped shared-memory profile (config/fastdds_shm.xml), which
measured faster and loss-free for image topics between processes (docs/performance.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

DISCOVERY_RANGE_VAR = "ROS_AUTOMATIC_DISCOVERY_RANGE"  # Jazzy and later
LOCALHOST_ONLY_VAR = "ROS_LOCALHOST_ONLY"  # Humble; deprecated in Jazzy, ignored by Kilted
PROFILE_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
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

    Either discovery variable set (non-empty) counts as the user's choice and neither is
    touched: adding ROS_LOCALHOST_ONLY=1 next to an explicit ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET
    would override the user on distros that still honour it. Likewise an explicit Fast DDS
    profile is kept. ``force`` (tests, benchmarks) returns all defaults regardless.
    """
    environ = os.environ if environ is None else environ
    wanted: dict[str, str] = {}
    if force or not (environ.get(DISCOVERY_RANGE_VAR) or environ.get(LOCALHOST_ONLY_VAR)):
        wanted[DISCOVERY_RANGE_VAR] = "LOCALHOST"
        wanted[LOCALHOST_ONLY_VAR] = "1"
    profile = fastdds_profile()
    uses_fastdds = environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp").startswith("rmw_fastrtps")
    if profile is not None and uses_fastdds and (force or not environ.get(PROFILE_VAR)):
        wanted[PROFILE_VAR] = str(profile)
    return wanted


def apply_discovery_defaults(env: MutableMapping[str, str]) -> bool:
    """Add :func:`default_dds_environment` to ``env``; True if the loopback defaults applied."""
    added = default_dds_environment(env)
    env.update(added)
    env.update(venv_ament_prefix(env))
    return DISCOVERY_RANGE_VAR in added


def venv_ament_prefix(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """AMENT_PREFIX_PATH with this interpreter's prefix, when the ROS 2 wheels live there.

    The PyPI wheels install an ament index into the venv but no setup script that would put the
    venv on AMENT_PREFIX_PATH, so ``get_package_share_directory`` finds nothing without this.
    """
    import sys

    environ = os.environ if environ is None else environ
    current = [p for p in environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if sys.prefix in current or not Path(sys.prefix, "share", "ament_index").is_dir():
        return {}
    return {"AMENT_PREFIX_PATH": os.pathsep.join([*current, sys.prefix])}

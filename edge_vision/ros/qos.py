"""QoS profiles, following REP-2003 for sensor data.

REP-2003: sensor drivers publish *reliable* (system-default-like) so that every subscriber can
connect, and consumers subscribe *best effort* (``qos_profile_sensor_data``) so that a slow or
lossy link drops frames instead of queueing them. Metadata that must reach late joiners
(LabelInfo) is reliable + transient-local, like a latched topic.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

RELIABILITY_CHOICES = ("reliable", "best_effort")


def image_publisher_qos(reliability: str = "reliable", depth: int = 5) -> QoSProfile:
    """Publisher profile for image streams (``reliability`` is a node parameter)."""
    if reliability not in RELIABILITY_CHOICES:
        raise ValueError(f"reliability must be one of {RELIABILITY_CHOICES}, got {reliability!r}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=(
            ReliabilityPolicy.RELIABLE
            if reliability == "reliable"
            else ReliabilityPolicy.BEST_EFFORT
        ),
        durability=DurabilityPolicy.VOLATILE,
    )


def sensor_subscriber_qos(depth: int = 5) -> QoSProfile:
    """Subscriber profile for image and per-frame result streams: best effort, keep last."""
    return QoSProfile(
        history=qos_profile_sensor_data.history,
        depth=depth,
        reliability=qos_profile_sensor_data.reliability,
        durability=qos_profile_sensor_data.durability,
    )


def latched_qos(depth: int = 1) -> QoSProfile:
    """Reliable, transient-local: late subscribers get the last message (LabelInfo)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )

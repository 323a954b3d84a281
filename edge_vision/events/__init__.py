"""Events: detections and classifications aggregated over time, and their SQLite store."""

from edge_vision.events.aggregator import EventAggregator
from edge_vision.events.model import Event, EventState
from edge_vision.events.store import EventStore, default_database

__all__ = ["Event", "EventAggregator", "EventState", "EventStore", "default_database"]

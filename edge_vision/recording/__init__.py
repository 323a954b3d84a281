"""Recording video to files (pure Python, no ROS).

- :mod:`~edge_vision.recording.mp4_writer`: frames -> fragmented MP4 (``image_monitor``'s
  ``save_path``);
- :mod:`~edge_vision.recording.prebuffer`: encode once (libx264), keep packets in a ring;
- :mod:`~edge_vision.recording.clip`: remux packets to a faststart MP4;
- :mod:`~edge_vision.recording.storage`: temporary names, atomic publication, quota, retention;
- :mod:`~edge_vision.recording.bag`: rosbag2 (MCAP) of other topics with ``rosbags``;
- :mod:`~edge_vision.recording.recorder`: all of it behind ``push_frame``/``request`` (the
  ``recorder`` node's core).
"""

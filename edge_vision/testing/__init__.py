"""Test support shipped with the package: ROS node harness, RTSP test server, media helpers."""

"""Recording video to files (pure Python, no ROS)."""

"""Pure-Python core: no rclpy imports below this package."""

"""facealign_ros: event-camera (+RGB) facial keypoint alignment and head pose for ROS 2.

The runtime package is importable without rclpy and without the training extras; the ROS
adapter lives in :mod:`facealign_ros.node`.
"""

__version__ = "0.1.0"

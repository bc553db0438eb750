"""Measuring a model the KITTI devkit way.

Metrics, ground-truth decoding and labelled-folder readers, the streaming evaluation state, the offline evaluator
over folders and rosbag2 bags, reports, bag reading/writing with ``rosbags`` (no rclpy), and the bird's-eye-view
transform (``bev``: numpy/OpenCV only, also used by the node's ``~/bev_grid``).

May import the core (pipeline, images, errors, contract, outputs, progress, wording); never ``ros`` or ``training``.
"""

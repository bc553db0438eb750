"""Measuring a model the KITTI devkit way: metrics, ground-truth decoding and labelled-folder readers,
the streaming evaluation state, the offline evaluator over folders and rosbag2 bags, reports, and bag
reading/writing with ``rosbags`` (no rclpy).

May import the core (pipeline, images, errors, contract); never ``ros`` or ``training``.
"""

"""Every rclpy module: the road_segmentation node (plain and lifecycle, and its ``~/bev_grid`` publisher).

Also the image folder publisher, the bag player, the evaluator node, the headless demo, sensor_msgs <-> numpy
conversion and the shared ``spin_node`` entry point.

Only this subpackage imports rclpy or ROS message packages. It may import the core (pipeline, images,
errors, resources, outputs, progress, backends) and ``evaluation``; never ``training`` (the node must not load PyTorch).
"""

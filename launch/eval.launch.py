"""Replay evaluation: bag -> road_segmentation node -> road_evaluator, report written when playback ends.

    ros2 launch fcn_road_seg eval.launch.py bag:=kitti_bag out:=report/            # our bag_player
    ros2 launch fcn_road_seg eval.launch.py bag:=kitti_bag out:=report/ player:=ros2  # `ros2 bag play`

Make a bag from a dataset with ``fcn-road-seg bag from-kitti DIR -o BAG``. The node takes its input with
reliable QoS and the bag plays at ``rate`` (default 0.5x) so that no frame is dropped; the evaluator's
report then equals ``fcn-road-seg evaluate BAG`` exactly. Unless ``loop`` is set, the launch shuts down
``shutdown_after`` seconds after the player exits, and the evaluator writes its report on shutdown (or
any time: ``ros2 service call /road_evaluator/write_report std_srvs/srv/Trigger``).
"""
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, OpaqueFunction, RegisterEventHandler, Shutdown,
                            TimerAction)
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "fcn_road_seg"
PROBABILITY_TOPIC = "/road_segmentation/probability"
REPORT_TIMEOUT_S = "60"

ARGUMENTS = {
    "bag": ("", "rosbag2 bag to replay (folder with metadata.yaml, or .mcap)"),
    "out": ("eval_report", "report folder of the evaluator"),
    "model": ("", "road model .onnx or TensorRT plan; empty = the shipped model"),
    "backend": ("auto", "auto | tensorrt | openvino | onnxruntime"),
    "image_topic": ("/camera/image_raw", "image topic in the bag"),
    "gt_topic": ("/camera/road_gt", "ground-truth topic in the bag (mono8 255/0/128, or KITTI rgb8)"),
    "rate": ("0.5", "playback rate factor (slow enough that the node drops nothing)"),
    "loop": ("false", "replay forever (then stop with Ctrl-C; the report is written on shutdown)"),
    "player": ("bag_player", "bag_player (rosbags, no rosbag2 needed) or ros2 (`ros2 bag play`)"),
    "start_delay": ("3.0", "seconds before playback starts (node and evaluator come up first)"),
    "shutdown_after": ("3.0", "seconds after the player exits before the launch shuts down"),
}


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def _setup(context):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    if not arg["bag"]:
        raise RuntimeError("eval.launch.py needs bag:=PATH (make one with `fcn-road-seg bag from-kitti DIR -o BAG`)")
    if arg["player"] not in ("bag_player", "ros2"):
        raise RuntimeError(f"player must be bag_player or ros2, got {arg['player']!r}")
    text = lambda v: ParameterValue(v, value_type=str)  # noqa: E731  (keep paths and topics strings)
    node = Node(package=PACKAGE, executable="road_seg_node", name="road_segmentation", output="screen",
                parameters=[{"model": text(arg["model"]), "backend": text(arg["backend"]), "input_qos": "reliable"}],
                remappings=[("image", arg["image_topic"])])
    # The evaluator writes its report on SIGINT (metrics, PR curve, montage: seconds on a busy CPU); launch's
    # default 5 s before SIGTERM cut that short.
    evaluator = Node(package=PACKAGE, executable="road_evaluator", name="road_evaluator", output="screen",
                     sigterm_timeout=REPORT_TIMEOUT_S,
                     parameters=[{"out": text(arg["out"]), "bag": text(arg["bag"]), "model": text(arg["model"]),
                                  "gt_topic": text(arg["gt_topic"]), "probability_topic": PROBABILITY_TOPIC}])
    topics = [arg["image_topic"], arg["gt_topic"]]
    if arg["player"] == "ros2":
        cmd = ["ros2", "bag", "play", arg["bag"], "--rate", arg["rate"], "--delay", arg["start_delay"],
               "--topics", *topics] + (["--loop"] if _true(arg["loop"]) else [])
        player = ExecuteProcess(cmd=cmd, name="ros2_bag_play", output="screen")
        start = TimerAction(period=0.0, actions=[player])
    else:
        player = Node(package=PACKAGE, executable="bag_player", name="bag_player", output="screen",
                      parameters=[{"bag": text(arg["bag"]), "topics": topics, "rate": float(arg["rate"]),
                                   "loop": _true(arg["loop"]), "wait_for_subscribers": 1}])
        start = TimerAction(period=float(arg["start_delay"]), actions=[player])
    actions = [node, evaluator, start]
    if not _true(arg["loop"]):
        actions.append(RegisterEventHandler(OnProcessExit(target_action=player, on_exit=[TimerAction(
            period=float(arg["shutdown_after"]), actions=[Shutdown(reason="bag replay finished")])])))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_setup)]
    )

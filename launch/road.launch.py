"""Road segmentation: the road_segmentation node, optionally rviz2 and a folder of images as the camera.

    ros2 launch fcn_road_seg road.launch.py                       # segment camera/image_raw
    ros2 launch fcn_road_seg road.launch.py namespace:=r1 image_topic:=front/image_rect   # /r1/front/image_rect
    ros2 launch fcn_road_seg road.launch.py images:=SHARE/samples use_rviz:=true   # SHARE: ros2 pkg prefix + share/...

The node subscribes to the relative topic ``image`` (and ``camera_info`` beside it for ``~/bev_grid``); this
file remaps ``image`` to ``image_topic`` (relative names resolve in ``namespace``). Arguments: model, backend,
input_qos (empty = take them from params_file), image_topic, namespace, params_file (default: the package's
config/road_seg.yaml), lifecycle (true: the managed node road_seg_lifecycle_node, started unconfigured),
use_sim_time (bag replay with /clock), log_level, use_rviz (rviz2 with config/road_seg.rviz, its topics
remapped to this namespace and image topic), images (a folder of PNG/JPG published on image_topic by
image_folder_publisher at rate_hz, looping). With images, the node's input_qos defaults to reliable, like
the folder publisher (a best-effort input loses most large raw frames), and its frozen-camera check is off
(a looping folder repeats its frames by design).
"""
from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "fcn_road_seg"
NODE_NAME = "road_segmentation"
# Topics as written in config/road_seg.rviz (no namespace, default image topic).
RVIZ_INPUT = "/camera/image_raw"
RVIZ_OUTPUTS = ("overlay", "mask", "bev_grid")

ARGUMENTS = {
    "model": ("", "road model .onnx or TensorRT plan; empty = params_file / the shipped model"),
    "backend": ("", "auto | tensorrt | openvino | onnxruntime; empty = params_file (auto)"),
    "image_topic": ("camera/image_raw", "camera topic the node's `image` is remapped to (relative: in namespace)"),
    "input_qos": ("", "sensor_data | reliable; empty = reliable with images, else params_file (sensor_data)"),
    "namespace": ("", "namespace of the nodes"),
    "params_file": ("", "node parameters (YAML); empty = the package's config/road_seg.yaml"),
    "lifecycle": ("false", "true: start road_segmentation as a managed node (unconfigured; `ros2 lifecycle set`)"),
    "use_sim_time": ("false", "use /clock (bag replay) for the nodes' clocks"),
    "log_level": ("info", "log level of the nodes: debug, info, warn, error, fatal"),
    "use_rviz": ("false", "start rviz2 showing input, overlay and mask"),
    "images": ("", "folder of PNG/JPG to publish as the camera (no camera needed)"),
    "rate_hz": ("10.0", "frames per second of the image folder publisher"),
}


def _resolve(topic: str, namespace: str) -> str:
    """Fully qualified name of ``topic`` for a node in ``namespace``."""
    if topic.startswith("/"):
        return topic
    return "/" + "/".join(part for part in (namespace, topic) if part)


def node_overrides(arg: dict[str, str]) -> dict[str, str | int]:
    """Parameters the launch arguments set on road_segmentation, over params_file."""
    values: dict[str, str | int] = {k: arg[k] for k in ("model", "backend", "input_qos") if arg[k]}
    if arg["images"]:
        values.setdefault("input_qos", "reliable")  # matches image_folder_publisher (reliable)
        values["frozen_frames"] = 0  # a looping folder repeats its frames by design
    return values


def _true(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


def _setup(context):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = Path(get_package_share_directory(PACKAGE))
    namespace = arg["namespace"].strip("/")
    params_file = arg["params_file"] or str(share / "config" / "road_seg.yaml")
    image_topic = arg["image_topic"]
    overrides = {k: ParameterValue(v, value_type=str) if isinstance(v, str) else v
                 for k, v in node_overrides(arg).items()}
    common = {"namespace": namespace, "output": "screen", "ros_arguments": ["--log-level", arg["log_level"]]}
    sim_time = {"use_sim_time": _true(arg["use_sim_time"])}
    remap_image = [("image", image_topic)]

    lifecycle = _true(arg["lifecycle"])
    actions = [(LifecycleNode if lifecycle else Node)(
        package=PACKAGE, executable="road_seg_lifecycle_node" if lifecycle else "road_seg_node", name=NODE_NAME,
        parameters=[params_file, overrides, sim_time], remappings=remap_image, emulate_tty=True, **common,
    )]
    if arg["images"]:
        actions.append(Node(
            package=PACKAGE, executable="image_folder_publisher", remappings=remap_image,
            parameters=[{"folder": ParameterValue(arg["images"], value_type=str),
                         "rate_hz": float(arg["rate_hz"]), **sim_time}], **common,
        ))
    if _true(arg["use_rviz"]):
        remappings = [(RVIZ_INPUT, _resolve(image_topic, namespace))]
        remappings += [(f"/{NODE_NAME}/{out}", _resolve(f"{NODE_NAME}/{out}", namespace)) for out in RVIZ_OUTPUTS]
        actions.append(Node(
            package="rviz2", executable="rviz2", name="rviz2",
            arguments=["-d", str(share / "config" / "road_seg.rviz")],
            remappings=[(src, dst) for src, dst in remappings if src != dst], parameters=[sim_time], **common,
        ))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_setup)]
    )

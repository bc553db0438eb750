"""Road segmentation: the road_segmentation node, optionally rviz2 and a folder of images as the camera.

    ros2 launch fcn_road_seg road.launch.py                       # segment /camera/image_raw
    ros2 launch fcn_road_seg road.launch.py images:=$(ros2 pkg prefix fcn_road_seg)/share/fcn_road_seg/samples use_rviz:=true

Arguments: model, backend, image_topic, input_qos (empty = take them from params_file), namespace,
params_file (default: the package's config/road_seg.yaml), use_rviz (rviz2 with config/road_seg.rviz, its
topics remapped to this namespace and image topic), images (a folder of PNG/JPG published on image_topic by
image_folder_publisher at rate_hz, looping). With images, the node's input_qos defaults to reliable, like
the folder publisher (a best-effort input loses most large raw frames), and its frozen-camera check is off
(a looping folder repeats its frames by design).
"""
from pathlib import Path

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

PACKAGE = "fcn_road_seg"
NODE_NAME = "road_segmentation"
# Topics as written in config/road_seg.rviz (no namespace, default image topic).
RVIZ_INPUT = "/camera/image_raw"
RVIZ_OUTPUTS = ("overlay", "mask", "bev_grid")

ARGUMENTS = {
    "model": ("", "road model .onnx or TensorRT plan; empty = params_file / the shipped model"),
    "backend": ("", "auto | tensorrt | openvino | onnxruntime; empty = params_file (auto)"),
    "image_topic": ("", "camera topic; empty = params_file (/camera/image_raw)"),
    "input_qos": ("", "sensor_data | reliable; empty = reliable with images, else params_file (sensor_data)"),
    "namespace": ("", "namespace of the nodes"),
    "params_file": ("", "node parameters (YAML); empty = the package's config/road_seg.yaml"),
    "use_rviz": ("false", "start rviz2 showing input, overlay and mask"),
    "images": ("", "folder of PNG/JPG to publish as the camera (no camera needed)"),
    "rate_hz": ("10.0", "frames per second of the image folder publisher"),
}


def _resolve(topic: str, namespace: str) -> str:
    """Fully qualified name of ``topic`` for a node in ``namespace``."""
    if topic.startswith("/"):
        return topic
    return "/" + "/".join(part for part in (namespace, topic) if part)


def _file_image_topic(params_file: str) -> str:
    """The image_topic a parameters file gives road_segmentation, else the node's default."""
    for key, section in (yaml.safe_load(Path(params_file).read_text()) or {}).items():
        if key.rstrip("/").endswith(NODE_NAME) or key == "/**":
            topic = (section or {}).get("ros__parameters", {}).get("image_topic")
            if topic:
                return topic
    return RVIZ_INPUT


def node_overrides(arg: dict[str, str]) -> dict[str, str | int]:
    """Parameters the launch arguments set on road_segmentation, over params_file."""
    values: dict[str, str | int] = {k: arg[k] for k in ("model", "backend", "image_topic", "input_qos") if arg[k]}
    if arg["images"]:
        values.setdefault("input_qos", "reliable")  # matches image_folder_publisher (reliable)
        values["frozen_frames"] = 0  # a looping folder repeats its frames by design
    return values


def _setup(context):
    arg = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = Path(get_package_share_directory(PACKAGE))
    namespace = arg["namespace"].strip("/")
    params_file = arg["params_file"] or str(share / "config" / "road_seg.yaml")
    image_topic = arg["image_topic"] or _file_image_topic(params_file)
    overrides = {k: ParameterValue(v, value_type=str) if isinstance(v, str) else v
                 for k, v in node_overrides(arg).items()}

    actions = [Node(
        package=PACKAGE, executable="road_seg_node", name=NODE_NAME, namespace=namespace,
        parameters=[params_file, overrides], output="screen", emulate_tty=True,
    )]
    if arg["images"]:
        actions.append(Node(
            package=PACKAGE, executable="image_folder_publisher", namespace=namespace,
            parameters=[{"folder": ParameterValue(arg["images"], value_type=str),
                         "rate_hz": float(arg["rate_hz"]),
                         "image_topic": ParameterValue(image_topic, value_type=str)}],
            output="screen",
        ))
    if arg["use_rviz"].lower() in ("true", "1", "yes"):
        remappings = [(RVIZ_INPUT, _resolve(image_topic, namespace))]
        remappings += [(f"/{NODE_NAME}/{out}", _resolve(f"{NODE_NAME}/{out}", namespace)) for out in RVIZ_OUTPUTS]
        actions.append(Node(
            package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
            arguments=["-d", str(share / "config" / "road_seg.rviz")],
            remappings=[(src, dst) for src, dst in remappings if src != dst], output="screen",
        ))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_setup)]
    )

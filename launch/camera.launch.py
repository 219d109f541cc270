"""One vknet_node per camera: ``ros2 launch vknet_ros camera.launch.py``.

    ros2 launch vknet_ros camera.launch.py image_topic:=/camera/image_raw
    ros2 launch vknet_ros camera.launch.py namespace:=cam_front backend:=tensorrt \\
        model:=/models/r50.engine device:=cuda params_file:=/path/vknet.yaml

Works with the Humble and Jazzy launch APIs: the node is a ``launch_ros`` LifecycleNode that
activates itself (parameter ``autostart``, default true), so no lifecycle manager is needed.
Arguments left empty keep the value from ``params_file`` (default: the installed
``config/vknet.yaml``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode

ARGS = (
    ("namespace", "", "namespace of the node (one per camera), e.g. cam_front"),
    (
        "image_topic",
        "image",
        "input sensor_msgs/Image topic (image_topic/compressed for the compressed input)",
    ),
    (
        "camera_info_topic",
        "",
        "sensor_msgs/CameraInfo topic republished on ~/camera_info "
        "(empty: camera_info next to image_topic)",
    ),
    ("input_qos", "", "auto | sensor_data | reliable (empty: from params_file)"),
    ("backend", "", "torch | onnxruntime | tensorrt (empty: from params_file)"),
    ("model", "", "checkpoint .pt, .onnx or TensorRT engine (empty: from params_file)"),
    ("device", "", "cpu | cuda | cuda:N (empty: from params_file)"),
    ("params_file", "", "parameter YAML (empty: the installed config/vknet.yaml)"),
    ("use_sim_time", "false", "use /clock (bag playback with --clock)"),
    ("log_level", "info", "debug | info | warn | error"),
)


def _node(context, *args, **kwargs):
    get = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    params_file = get("params_file") or os.path.join(
        get_package_share_directory("vknet_ros"), "config", "vknet.yaml"
    )
    overrides = {k: get(k) for k in ("backend", "model", "device") if get(k)}
    overrides["use_sim_time"] = get("use_sim_time").lower() in ("true", "1", "yes")
    if get("input_qos"):
        overrides["input.qos"] = get("input_qos")
    image = get("image_topic")
    info = get("camera_info_topic") or (
        image.rsplit("/", 1)[0] + "/camera_info" if "/" in image else "camera_info"
    )
    return [
        LifecycleNode(
            package="vknet_ros",
            executable="vknet_node",
            name="vknet_node",
            namespace=get("namespace"),
            output="screen",
            parameters=[params_file, overrides],
            remappings=[
                ("image", image),
                ("image/compressed", image + "/compressed"),
                ("camera_info", info),
            ],
            arguments=["--ros-args", "--log-level", get("log_level")],
        )
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, default, desc in ARGS
        ]
        + [OpaqueFunction(function=_node)]
    )

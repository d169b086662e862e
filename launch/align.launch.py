"""Launch the facealign lifecycle node and drive it to *active*.

    ros2 launch facealign_ros align.launch.py [mode:=fused|events|rgb] [device:=auto|cpu|cuda]
        [model:=PATH] [namespace:=NS] [params_file:=YAML] [events_topic:=...]
        [image_topic:=...] [image_transport:=raw|compressed] [camera_info_topic:=...]
        [bag:=PATH] [rviz:=true]

The node is configured at start and activated once it reaches *inactive* (a failed configure,
e.g. a bad checkpoint, leaves it unconfigured with an error in the log). ``bag:=PATH`` plays a
recording into it (``ros2 bag play``), ``rviz:=true`` opens RViz.
"""

from __future__ import annotations

import lifecycle_msgs.msg
from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, RegisterEventHandler
from launch.conditions import IfCondition, LaunchConfigurationNotEquals
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState

from launch import LaunchDescription

ARGUMENTS = (
    ("params_file", "", "parameters YAML (default: the package's config/facealign.yaml)"),
    ("mode", "fused", "fused | events | rgb"),
    ("device", "auto", "auto | cpu | cuda | cuda:N"),
    ("model", "", "checkpoint path (empty: the shipped lite weights)"),
    ("namespace", "", "node namespace"),
    ("events_topic", "/event_camera/events", "event_camera_msgs/EventPacket topic"),
    ("image_topic", "/camera/image_raw", "sensor_msgs/Image topic"),
    (
        "image_transport",
        "raw",
        "raw | compressed (sensor_msgs/CompressedImage on IMAGE_TOPIC/compressed)",
    ),
    ("camera_info_topic", "/camera/camera_info", "sensor_msgs/CameraInfo topic"),
    ("bag", "", "rosbag2 to play into the node (empty: none)"),
    ("rviz", "false", "start RViz"),
)


def generate_launch_description() -> LaunchDescription:
    """The launch description (see the module docstring)."""
    share = get_package_share_directory("facealign_ros")
    default_params = PathJoinSubstitution([share, "config", "facealign.yaml"])
    args = [
        DeclareLaunchArgument(
            name, default_value=default_params if name == "params_file" else value, description=doc
        )
        for name, value, doc in ARGUMENTS
    ]
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    node = LifecycleNode(
        package="facealign_ros",
        executable="align_node",
        name="facealign",
        namespace=cfg["namespace"],
        output="screen",
        parameters=[
            cfg["params_file"],
            {
                "mode": cfg["mode"],
                "device": cfg["device"],
                "model": cfg["model"],
                "image_transport": cfg["image_transport"],
            },
        ],
        remappings=[
            ("events", cfg["events_topic"]),
            ("image", cfg["image_topic"]),
            ("camera_info", cfg["camera_info_topic"]),
        ],
    )
    configure = EmitEvent(
        event=ChangeState(
            lifecycle_node_matcher=matches_action(node),
            transition_id=lifecycle_msgs.msg.Transition.TRANSITION_CONFIGURE,
        )
    )
    activate = RegisterEventHandler(
        OnStateTransition(
            target_lifecycle_node=node,
            goal_state="inactive",
            entities=[
                EmitEvent(
                    event=ChangeState(
                        lifecycle_node_matcher=matches_action(node),
                        transition_id=lifecycle_msgs.msg.Transition.TRANSITION_ACTIVATE,
                    )
                )
            ],
        )
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", cfg["bag"]],
        output="screen",
        condition=LaunchConfigurationNotEquals("bag", ""),
    )
    rviz = Node(package="rviz2", executable="rviz2", output="screen",
                condition=IfCondition(cfg["rviz"]))  # fmt: skip
    return LaunchDescription([*args, node, activate, configure, play, rviz])

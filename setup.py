"""One ament_python package ``vknet_ros`` that also installs with plain pip.

Every package folder is its import name: ``vknet_core``, ``vknet_export``, ``vknet_training``,
``vknet_ros``. The folders ``export/`` and ``training/`` hold only the documented command-line
entries (``python export/to_trt.py ...``), each a few lines that call the package's ``main``;
nothing imports them, so no module is ever loaded twice.
"""

from glob import glob

from setuptools import setup

PACKAGE = "vknet_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[
        "vknet_core",
        "vknet_core.model",
        "vknet_core.losses",
        "vknet_core.postprocess",
        "vknet_core.tracking",
        "vknet_core.metrics",
        "vknet_core.panoptic_io",
        "vknet_export",
        "vknet_training",
        "vknet_training.datasets",
        "vknet_ros",
    ],
    package_data={"vknet_ros": ["models/*.pt"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", glob("launch/*.launch.py")),
        ("share/" + PACKAGE + "/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="vknet developers",
    maintainer_email="vknet@example.com",
    description=(
        "Video K-Net video panoptic segmentation: PyTorch model, ONNX/TensorRT export, ROS 2 node"
    ),
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "vknet_node = vknet_ros.run_node:main",
            "vknet_demo = vknet_ros.demo:main",
            "vknet_export_onnx = vknet_export.to_onnx:main",
            "vknet_build_trt = vknet_export.to_trt:main",
        ],
    },
)

"""ament_python / pip build script for facealign_ros."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "facealign_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["msg_defs/*/msg/*.msg", "weights/*", "face/data/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "numba>=0.57",
        "rosbags>=0.11",
        "pyyaml>=6",
        "opencv-python-headless>=4.8",
        "safetensors>=0.4",
        "torch>=2.1",
    ],
    extras_require={
        "train": ["tqdm>=4.60", "matplotlib>=3.7", "tensorboard>=2.14"],
        "bench": ["expelliarmus==1.1.12", "tonic>=1.5"],
        "synth": ["moderngl>=5.8", "pillow>=9"],
        "export": ["onnx>=1.16", "onnxruntime>=1.18"],
        "dev": ["pytest>=7", "hypothesis>=6.80", "ruff==0.17.6", "onnx>=1.16", "onnxruntime>=1.18"],
    },
    zip_safe=True,
    maintainer="facealign_ros developers",
    maintainer_email="facealign-ros@users.noreply.github.com",
    description="Event-camera (+RGB) facial keypoint alignment and head pose for ROS 2 (CMFA).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "facealign = facealign_ros.cli:main",
            "align_node = facealign_ros.node:main",
        ],
    },
)

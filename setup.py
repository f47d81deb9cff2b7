"""pip install of the ROS-free part (model, inference, training) for machines without ROS.

The ROS 2 package itself is built by colcon through CMakeLists.txt (package.xml declares
ament_cmake); colcon does not use this file.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    packages=find_packages(include=["dpt_perception", "dpt_perception.*"], exclude=["dpt_perception.ros*"]),
    install_requires=requirements("runtime.txt"),
    extras_require={"test": requirements("test.txt")},
    package_data={"dpt_perception": ["data/**/*"]},
    entry_points={
        "console_scripts": [
            "dpt-train = dpt_perception.training.train:main",
            "dpt-eval = dpt_perception.training.evaluate:main",
            "dpt-export = dpt_perception.inference.export:main",
            "dpt-download-weights = dpt_perception.inference.weights:main",
        ]
    },
)

"""Point the ROS 2 wheels' exported CMake files at this interpreter's include directories.

The registry's ros-* wheels were built in a manylinux container, and the CMake config files they
export for generated message packages name that container's Python and numpy include paths.
rosidl's CMake then fails to find Python.h / numpy headers when building our messages.
Usage: python fix_ros_cmake_paths.py VENV
"""
import pathlib
import re
import sys
import sysconfig

import numpy


def main(venv: str) -> int:
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    builder = r"/opt/python/cp3\d+-cp3\d+"
    patterns = [
        (re.compile(builder + r"/lib/python3\.\d+/site-packages/numpy/_core/include"), numpy_include),
        (re.compile(builder + r"/include/python3\.\d+"), python_include),
    ]
    changed = 0
    for path in pathlib.Path(venv, "share").glob("*/cmake/*.cmake"):
        text = path.read_text()
        new = text
        for pattern, replacement in patterns:
            new = pattern.sub(replacement, new)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"[setup] rewrote include paths in {changed} CMake files", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

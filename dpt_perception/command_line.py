"""Small pieces shared by the command-line programs: how they name themselves in `--help` (by the
form they were started with) and quiet Ctrl-C while they start."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

PACKAGE = "dpt_perception"


def program_name(module: str, executable: str, argv0: str | None = None) -> str:
    """The `prog` of an argparse parser.

    `ros2 run dpt_perception EXE` when started as the installed executable (`lib/dpt_perception/EXE`
    of the colcon install, which is what `ros2 run` executes); the console script's own name for a
    pip install (`dpt-train`); else `python -m MODULE`."""
    path = Path(sys.argv[0] if argv0 is None else argv0)
    if path.name == executable and path.parent.name == PACKAGE:
        return f"ros2 run {PACKAGE} {executable}"
    if path.name.startswith("dpt-"):
        return path.name
    return f"python -m {module}"


def _exit_now(signum, frame):  # noqa: ARG001 - signal handler signature
    os._exit(0)


def exit_quietly_on_interrupt() -> None:
    """Ctrl-C from now until `restore_interrupts()` ends the process at once with status 0, without
    a KeyboardInterrupt traceback. The executables call it before importing torch and rclpy (seconds
    in which nothing needs cleaning up); their `main` restores Python's handler before `rclpy.init`,
    after which Ctrl-C is a KeyboardInterrupt that `main` handles."""
    signal.signal(signal.SIGINT, _exit_now)


def restore_interrupts() -> None:
    """Python's own Ctrl-C handling (KeyboardInterrupt) again, if `exit_quietly_on_interrupt` set it."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _exit_now:
        signal.signal(signal.SIGINT, signal.default_int_handler)

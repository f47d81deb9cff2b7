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


_EXIT_CODE = 0


def _exit_now(signum, frame):  # noqa: ARG001 - signal handler signature
    os._exit(_EXIT_CODE)


def exit_quietly_on_interrupt(code: int = 0) -> None:
    """Ctrl-C from now until `restore_interrupts()` ends the process at once with status `code`,
    without a KeyboardInterrupt traceback. The executables call it before importing torch and rclpy
    (seconds in which nothing needs cleaning up); their `main` restores Python's handler before
    `rclpy.init`, after which Ctrl-C is a KeyboardInterrupt that `main` handles."""
    global _EXIT_CODE
    _EXIT_CODE = code
    signal.signal(signal.SIGINT, _exit_now)


def restore_interrupts() -> None:
    """Python's own Ctrl-C handling (KeyboardInterrupt) again, if `exit_quietly_on_interrupt` set it."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is _exit_now:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def package_file(path: str | Path) -> Path:
    """`path` itself when it exists, else a relative path looked up in the package's share directory
    (`share/dpt_perception/` of a colcon install, where `config/` is installed, found through the
    ament index) and then in the source checkout holding this package: so the README's
    `ros2 run dpt_perception train --config config/train_synthetic.yaml` works from any directory.
    FileNotFoundError naming every place looked in."""
    path = Path(path).expanduser()
    if path.exists() or path.is_absolute():
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        return path
    roots = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

        try:
            roots.append(Path(get_package_share_directory(PACKAGE)))
        except PackageNotFoundError:
            pass
    except ImportError:  # the pip-only install: no ament index
        pass
    roots.append(Path(__file__).resolve().parents[1])  # a source checkout (or an editable install)
    for root in roots:
        if (root / path).is_file():
            return root / path
    places = ", ".join(str(p) for p in [Path.cwd() / path, *(root / path for root in roots)])
    raise FileNotFoundError(f"{path}: no such file (looked in {places})")

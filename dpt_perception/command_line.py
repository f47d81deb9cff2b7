"""How the command-line programs name themselves in `--help`: by the form they were started with."""

from __future__ import annotations

import sys
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

"""ruff (pyflakes + pycodestyle + import order + naming, the checks ament_flake8 runs) is clean."""
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed (run scripts/setup.sh)")
def test_ruff_is_clean():
    proc = subprocess.run(["ruff", "check", "--no-cache", "."], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

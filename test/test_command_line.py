"""Program names in --help follow how a program was started; shipped files are found from anywhere."""
import pytest

from dpt_perception.command_line import package_file, program_name

from conftest import REPO_ROOT


def test_program_name_follows_how_the_program_was_started():
    module = "dpt_perception.training.train"
    ros2_run = "/ws/install/dpt_perception/lib/dpt_perception/train"  # what `ros2 run` executes
    assert program_name(module, "train", ros2_run) == "ros2 run dpt_perception train"
    assert program_name(module, "train", "/usr/local/bin/dpt-train") == "dpt-train"  # pip console script
    assert program_name(module, "train", "/src/dpt_perception/training/train.py") == f"python -m {module}"
    assert program_name(module, "train", "/src/bin/train") == f"python -m {module}"


def test_package_file_finds_the_shipped_configs_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = package_file("config/train_synthetic.yaml")
    assert found.read_text() == (REPO_ROOT / "config" / "train_synthetic.yaml").read_text()
    (tmp_path / "config").mkdir()
    mine = tmp_path / "config" / "train_synthetic.yaml"
    mine.write_text("mine: true\n")  # a file here wins
    assert package_file("config/train_synthetic.yaml").resolve() == mine
    with pytest.raises(FileNotFoundError, match="no such file .looked in"):
        package_file("config/no_such.yaml")
    with pytest.raises(FileNotFoundError, match="no such file"):
        package_file(tmp_path / "absent.yaml")

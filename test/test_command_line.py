"""Program names in --help follow how a program was started."""
from dpt_perception.command_line import program_name


def test_program_name_follows_how_the_program_was_started():
    module = "dpt_perception.training.train"
    ros2_run = "/ws/install/dpt_perception/lib/dpt_perception/train"  # what `ros2 run` executes
    assert program_name(module, "train", ros2_run) == "ros2 run dpt_perception train"
    assert program_name(module, "train", "/usr/local/bin/dpt-train") == "dpt-train"  # pip console script
    assert program_name(module, "train", "/src/dpt_perception/training/train.py") == f"python -m {module}"
    assert program_name(module, "train", "/src/bin/train") == f"python -m {module}"

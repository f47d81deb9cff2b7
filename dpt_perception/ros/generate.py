"""Write the files that describe the node's parameters from their one source, `parameters._SPEC`.

    python -m dpt_perception.ros.generate          # (`make generate`) rewrite what is stale
    python -m dpt_perception.ros.generate --check  # list stale files, exit 1 if any (writes nothing)

Generated: config/dpt.yaml (every parameter with its default and description, by section), the
NODE_ARGUMENTS block of launch/dpt.launch.py (the node parameters offered as launch arguments) and
the parameter table of docs/node.md (both between marker comments, the rest of those files is
hand-written). test/test_generated_files.py fails when one is stale.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path

import yaml
from rcl_interfaces.msg import ParameterType

from dpt_perception.ros.parameters import _SPEC, GROUPS

ROOT = Path(__file__).resolve().parents[2]  # the source tree (this is a developer tool)
CONFIG = Path("config") / "dpt.yaml"
LAUNCH = Path("launch") / "dpt.launch.py"
LAUNCH_BEGIN = "# BEGIN generated from dpt_perception/ros/parameters.py by `make generate` (edit the spec)"
LAUNCH_END = "# END generated"
DOCS = Path("docs") / "node.md"
DOCS_BEGIN = (
    "<!-- parameter table: generated from dpt_perception/ros/parameters.py by `make generate`; "
    "edit the spec there -->"
)
DOCS_END = "<!-- end of the generated parameter table -->"
GENERATED = "GENERATED from dpt_perception/ros/parameters.py by `make generate`: edit the spec there"
WIDTH = 100

# ROS parameter type -> the word launch/dpt.launch.py converts an argument by.
TYPE_WORDS = {
    ParameterType.PARAMETER_BOOL: "bool",
    ParameterType.PARAMETER_INTEGER: "integer",
    ParameterType.PARAMETER_DOUBLE: "double",
    ParameterType.PARAMETER_STRING: "string",
    ParameterType.PARAMETER_BOOL_ARRAY: "bool_array",
    ParameterType.PARAMETER_INTEGER_ARRAY: "integer_array",
    ParameterType.PARAMETER_DOUBLE_ARRAY: "double_array",
    ParameterType.PARAMETER_STRING_ARRAY: "string_array",
}


def _entries():
    for name, (default, ptype, text, read_only, extra) in _SPEC.items():
        group = extra.get("group")
        if group not in GROUPS:
            raise ValueError(f"parameter {name!r}: its extra dict needs \"group\": one of {list(GROUPS)}, "
                             f"got {group!r}")
        yield name, default, ptype, text, read_only, extra


def _by_group():
    entries = list(_entries())
    for group, title in GROUPS.items():
        yield title, [e for e in entries if e[5]["group"] == group]


def yaml_value(value) -> str:
    """One-line YAML for a parameter default (flow lists, plain strings where unambiguous)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        plain = value and value.strip() == value and not any(c in value for c in ":#[]{},'\"&*!|>%@`")
        return value if plain and yaml.safe_load(value) == value else json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    raise TypeError(f"no YAML form for {value!r}")


def _bounds(extra: dict) -> str:
    lo_hi = extra.get("range") or extra.get("int_range")
    return f" Range [{lo_hi[0]!r}, {lo_hi[1]!r}]." if lo_hi else ""


def render_config() -> str:
    lines = [
        "# Parameters of dpt_node (dpt_perception): every parameter the node declares, with its default;",
        "# `ros2 param describe /dpt_node <name>` prints the same descriptions.",
        f"# {GENERATED},",
        "# not here (test/test_generated_files.py fails when this file is stale).",
        "# Use: ros2 run dpt_perception dpt_node --ros-args --params-file config/dpt.yaml",
        "#  or: ros2 launch dpt_perception dpt.launch.py params_file:=/path/to/your.yaml",
        "# Parameters marked (runtime) may be changed while the node runs (ros2 param set ...);",
        "# the others are read once at start-up.",
        "/**:",
        "  ros__parameters:",
    ]
    indent = " " * 4
    for i, (title, entries) in enumerate(_by_group()):
        if i:
            lines.append("")
        lines.append(f"{indent}# --- {title} ".ljust(WIDTH - 4, "-"))
        for name, default, _ptype, text, read_only, extra in entries:
            comment = ("" if read_only else "(runtime) ") + text + _bounds(extra)
            lines += textwrap.wrap(comment, WIDTH - 4, initial_indent=indent + "# ",
                                   subsequent_indent=indent + "# ", break_on_hyphens=False)
            lines.append(f"{indent}{name}: {yaml_value(default)}")
    text = "\n".join(lines) + "\n"
    values = yaml.safe_load(text)["/**"]["ros__parameters"]
    assert values == {name: spec[0] for name, spec in _SPEC.items()}, "YAML round trip changed a default"
    return text


def render_launch_arguments() -> str:
    """The NODE_ARGUMENTS dict of the launch file: name -> (parameter type, description)."""
    lines = ["NODE_ARGUMENTS = {"]
    for name, _default, ptype, text, _read_only, extra in _entries():
        if not extra.get("launch"):
            continue
        chunks = textwrap.wrap(text, WIDTH - 14, drop_whitespace=False, break_on_hyphens=False)
        assert "".join(chunks) == text, f"{name}: description does not survive wrapping"
        # A dynamically typed parameter (weights: one name or a list) takes the argument's text as
        # is; the node reads "[a, b]" as a list (parameters.weights_sources).
        word = "string" if extra.get("dynamic_typing") else TYPE_WORDS[ptype]
        lines += [f"    {json.dumps(name)}: (", f"        {json.dumps(word)},"]
        lines += [f"        {json.dumps(c, ensure_ascii=False)}" for c in chunks[:-1]]
        lines += [f"        {json.dumps(chunks[-1], ensure_ascii=False)},", "    ),"]
    return "\n".join(lines + ["}"])


def update_launch(source: str) -> str:
    """The launch file's text with the generated block replaced by the current one."""
    return _replace_between(source, LAUNCH_BEGIN, LAUNCH_END, render_launch_arguments(), LAUNCH)


def _markdown(text: str) -> str:
    """Plain text as a table cell: markdown's special characters escaped outside `code` spans."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        for char in "\\*<":
            parts[i] = parts[i].replace(char, "\\" + char)
    return "`".join(parts).replace("|", "\\|")


def render_docs_table() -> str:
    rows = ["| parameter | default | meaning |", "|---|---|---|"]
    for _title, entries in _by_group():
        for name, default, _ptype, text, read_only, extra in entries:
            marker = "" if read_only else " *runtime*"
            meaning = _markdown(text + _bounds(extra))
            rows.append(f"| `{name}`{marker} | `{yaml_value(default)}` | {meaning} |")
    return "\n".join(rows)


def _replace_between(text: str, begin: str, end: str, block: str, where: Path) -> str:
    if text.count(begin) != 1 or text.count(end) != 1:
        raise ValueError(f"{where} must contain the marker lines {begin!r} and {end!r} once each")
    head, rest = text.split(begin)
    _old, tail = rest.split(end)
    return f"{head}{begin}\n{block}\n{end}{tail}"


def update_docs(markdown: str) -> str:
    """`markdown` with the text between the marker comments replaced by the current table."""
    return _replace_between(markdown, DOCS_BEGIN, DOCS_END, render_docs_table(), DOCS)


def outputs(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file (path under `root`) with the text it should have."""
    return {
        CONFIG: render_config(),
        LAUNCH: update_launch((root / LAUNCH).read_text(encoding="utf-8")),
        DOCS: update_docs((root / DOCS).read_text(encoding="utf-8")),
    }


def stale(root: Path = ROOT) -> list[Path]:
    """The generated files whose text differs from what the spec gives."""
    return [path for path, text in outputs(root).items()
            if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only list stale files; exit 1 if any")
    parser.add_argument("--root", type=Path, default=ROOT, help="source tree (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (args.root / DOCS).is_file():
        parser.error(f"{args.root} is not the dpt_perception source tree (no {DOCS})")
    old = stale(args.root)
    if args.check:
        for path in old:
            print(f"stale: {path} (run `make generate`)")
        return 1 if old else 0
    for path, text in outputs(args.root).items():
        if path in old:
            (args.root / path).write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if not old:
        print("generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())

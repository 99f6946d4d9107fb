"""The README's Python examples run as written, its two set-up commands are the ones CI runs, and its record
schema and kinds tables list every field and kind."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLES = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def test_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("source", EXAMPLES, ids=[f"example-{i}" for i in range(len(EXAMPLES))])
def test_example_runs_as_written(source: str, tmp_path: pathlib.Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "200 OK" in done.stdout


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install -e '.[test]'" in README
    assert "pip install --quiet -e '.[test]'" in ci
    assert "python -m pytest" in README
    assert ci.rstrip().endswith(".venv/bin/python -m pytest")


def test_the_record_schema_table_lists_every_field() -> None:
    from aiotcp.probe import FIELD_NAMES

    table = README.split("### Record schema", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"`([a-z0-9_]+)`", "\n".join(line.split("|")[1] for line in table.splitlines())))
    assert set(FIELD_NAMES) <= listed, set(FIELD_NAMES) - listed


def test_the_kinds_table_lists_every_kind() -> None:
    from aiotcp.errors import KINDS

    table = README.split("## Error kinds", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"^\| `([a-z_]+)`", table, re.MULTILINE))
    assert set(KINDS) - {"error"} <= listed, set(KINDS) - listed

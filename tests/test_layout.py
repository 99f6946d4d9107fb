"""The layering, as the running interpreter sees it (lint-imports checks the static graph in .ci/run):
importing a lower layer loads nothing above it, and the prober's worker side never loads the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import aiotcp

_LOADED = """
import json, sys
before = set(sys.modules)
import {module}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def modules_loaded_by(module: str) -> set[str]:
    """The modules a fresh interpreter loads for ``import module``, beyond those it starts with."""
    done = subprocess.run(
        [sys.executable, "-c", _LOADED.format(module=module)], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout))


def top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_the_sans_io_parser_loads_no_io() -> None:
    loaded = top_level(modules_loaded_by("aiotcp.http11"))
    assert "h11" in loaded
    assert not loaded & {"anyio", "asyncio", "trio", "sniffio", "socket", "ssl", "select", "selectors"}, loaded


@pytest.mark.parametrize("module", ["aiotcp.errors", "aiotcp.config", "aiotcp.targets", "aiotcp.resolution"])
def test_values_load_only_the_standard_library(module: str) -> None:
    loaded = top_level(modules_loaded_by(module))
    assert not loaded & {"anyio", "h11", "httptools", "asyncio", "socket", "ssl"}, loaded


def test_the_dask_worker_side_never_loads_the_command_line() -> None:
    loaded = modules_loaded_by("aiotcp.probe.dask")
    assert "aiotcp.probe.engine" in loaded
    assert not {name for name in loaded if name == "aiotcp.cli" or name.startswith("aiotcp.cli.")}, loaded
    assert "argparse" not in loaded


def test_the_bench_workers_never_load_the_command_line() -> None:
    loaded = modules_loaded_by("aiotcp.bench.workers")
    assert not {name for name in loaded if name.startswith("aiotcp.cli")}
    assert "argparse" not in loaded


def test_the_command_line_loads_what_a_command_needs_when_it_runs() -> None:
    # Every `aiotcp probe` starts faster without the server, the load generator, Dask and the --workers code.
    loaded = modules_loaded_by("aiotcp.cli")
    lazy = ("aiotcp.serve", "aiotcp.bench", "aiotcp.probe.dask", "aiotcp.probe.workers")
    assert not {name for name in loaded if name.startswith(lazy)}, loaded


def test_import_aiotcp_is_light_and_its_names_load_on_first_use() -> None:
    loaded = modules_loaded_by("aiotcp")
    assert "aiotcp.client" not in loaded
    assert "anyio" not in top_level(loaded)


def test_every_exported_name_resolves() -> None:
    for name in aiotcp.__all__:
        assert getattr(aiotcp, name) is not None, name
    assert sorted(aiotcp.__all__) == sorted([*aiotcp._EXPORTS, "__version__"])
    with pytest.raises(AttributeError, match="no attribute 'Timeout'"):
        aiotcp.Timeout  # noqa: B018 - renamed TimedOut: one letter from Timeouts was one too few

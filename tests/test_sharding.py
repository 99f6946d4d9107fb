"""``--shard I/N``: N runs over the same list probe disjoint sets of targets whose union is the list, by a
hash that is the same in every process, on every machine, in every version."""

from __future__ import annotations

import collections
import hashlib
import json
import os
import pathlib
import subprocess
import sys
from typing import Any

import anyio
import pytest

from aiotcp.cli import main
from aiotcp.probe import Job, iter_jobs
from aiotcp.probe.sharding import Shard, in_shard, parse_shard, select, shard_key, shard_of
from aiotcp.serve import TargetServer, refused_port

MIXED = [
    "# comment",
    "",
    "example.com",
    "Example.COM:80",
    "http://example.com/a?b",
    "https://example.com",
    "[::1]:8080",
    "http://[2001:db8::1]/",
    "bücher.example:443",
    "127.0.0.0/29:8080",
    "198.51.100.0/30",
    "not a target!",
    "not a target!",  # the same invalid line twice: both in one shard
    "http://[::1/",
    "example.com",  # a duplicate target: two jobs, two records, one shard
]


def jobs_of(lines: list[str], ports: tuple[int, ...] = (80, 8000)) -> list[Job]:
    async def collect() -> list[Job]:
        return [job async for job in iter_jobs(lines, ports=ports)]

    return anyio.run(collect)


def test_parse_shard() -> None:
    assert parse_shard("0/3") == Shard(0, 3)
    assert parse_shard("2/3") == Shard(2, 3)
    assert str(parse_shard("11/12")) == "11/12"


@pytest.mark.parametrize("text", ["3/3", "1/0", "-1/3", "01/3", "1/03", "1/", "/3", "1 /3", "x/3", "1/3/4", ""])
def test_parse_shard_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)


def test_shard_validates_itself() -> None:
    with pytest.raises(ValueError, match=r"shard 3/3: need 0 <= I < N"):
        Shard(3, 3)
    with pytest.raises(ValueError, match="need 0 <= I < N"):
        Shard(True, 2)
    with pytest.raises(ValueError, match="at least 1"):
        shard_of(jobs_of(["example.com"])[0], 0)


def test_the_key_is_the_normalized_host_and_port() -> None:
    keys = {(job.text, shard_key(job)) for job in jobs_of(MIXED)}
    assert keys == {
        ("example.com", "example.com:80"),
        ("example.com", "example.com:8000"),
        ("Example.COM:80", "example.com:80"),
        ("http://example.com/a?b", "example.com:80"),
        ("https://example.com", "example.com:443"),
        ("[::1]:8080", "[::1]:8080"),
        ("http://[2001:db8::1]/", "[2001:db8::1]:80"),
        ("bücher.example:443", "xn--bcher-kva.example:443"),
        *{("127.0.0.0/29:8080", f"127.0.0.{i}:8080") for i in range(1, 7)},
        *{("198.51.100.0/30", f"198.51.100.{i}:{port}") for i in (1, 2) for port in (80, 8000)},
        ("not a target!", "not a target!"),
        ("http://[::1/", "http://[::1/"),
    }
    # Without --ports, a line that gives no port is keyed by its host alone.
    assert [shard_key(job) for job in jobs_of(["example.com"], ports=())] == ["example.com"]


def test_the_hash_is_pinned() -> None:
    """blake2b (8-byte digest, big-endian) of the UTF-8 key, mod N: other tools and older versions of aiotcp
    must split a list the same way, so these values must never change."""
    job = jobs_of(["http://example.com/"])[0]
    digest = hashlib.blake2b(b"example.com:80", digest_size=8).digest()
    assert shard_of(job, 1000) == int.from_bytes(digest, "big") % 1000 == 953
    pinned = {
        "example.com:8000": (0, 0, 328),
        "https://example.com": (1, 6, 861),
        "[::1]:8080": (1, 1, 310),
        "bücher.example:443": (1, 1, 191),
        "not a target!": (2, 1, 943),
    }
    for text, expected in pinned.items():
        (job,) = jobs_of([text], ports=())
        assert (shard_of(job, 3), shard_of(job, 7), shard_of(job, 1000)) == expected, text


def test_three_shards_are_disjoint_and_cover_the_list() -> None:
    jobs = jobs_of(MIXED)
    shards = [{job.seq for job in jobs if in_shard(job, index, 3)} for index in range(3)]
    assert all(shards), "each shard has targets"
    assert sum(len(shard) for shard in shards) == len(jobs)  # disjoint
    assert set().union(*shards) == {job.seq for job in jobs}
    for job in jobs:  # exactly one shard includes each job
        assert [index for index in range(3) if Shard(index, 3).includes(job)] == [shard_of(job, 3)]
    by_key: collections.defaultdict[str, set[int]] = collections.defaultdict(set)  # one key, one shard
    for job in jobs:
        by_key[shard_key(job)].add(shard_of(job, 3))
    assert all(len(found) == 1 for found in by_key.values())


def test_select_keeps_the_numbering_and_balances() -> None:
    lines = [f"10.{i // 250}.{i % 250}.1:80" for i in range(3000)]

    async def collect(shard: Shard | None) -> list[Job]:
        return [job async for job in select(iter_jobs(lines), shard)]

    everything = anyio.run(collect, None)
    parts = [anyio.run(collect, Shard(index, 3)) for index in range(3)]
    assert sorted(job.seq for part in parts for job in part) == [job.seq for job in everything]
    assert all(job.line == job.seq + 1 for part in parts for job in part)
    assert all(850 <= len(part) <= 1150 for part in parts), [len(part) for part in parts]


def test_same_shards_in_every_process() -> None:
    """Python's str hash is randomized per process; the shard must not be."""
    script = (
        "import anyio, json, sys\n"
        "from aiotcp.probe import iter_jobs\n"
        "from aiotcp.probe.sharding import shard_of\n"
        "async def main():\n"
        "    return [shard_of(job, 5) async for job in iter_jobs(json.loads(sys.argv[1]), ports=(80, 8000))]\n"
        "print(json.dumps(anyio.run(main)))\n"
    )
    here = [shard_of(job, 5) for job in jobs_of(MIXED)]
    for seed in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-c", script, json.dumps(MIXED)],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == here


# -- the command ---------------------------------------------------------------------------------------------


def _records(path: pathlib.Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _identity(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["line"], record["host"], record["port"], record["input"])


def test_cli_shards_are_disjoint_and_their_union_is_the_whole_run(
    shared_server: TargetServer, tmp_path: pathlib.Path
) -> None:
    with refused_port() as dead:
        lines = [
            *(f"http://127.0.0.1:{shared_server.port}/status/{200 + i}" for i in range(30)),
            *(f"127.0.0.{i}" for i in range(1, 6)),  # probed on both --ports
            f"127.0.0.0/29:{dead}",
            "not a target!",
            "# comment",
        ]
        targets = tmp_path / "targets.txt"
        targets.write_text("\n".join(lines) + "\n", encoding="utf-8")
        common = [str(targets), "-q", "-t", "5", "-p", f"{shared_server.port},{dead}"]
        assert main(["probe", *common, "-o", str(tmp_path / "all.jsonl")]) == 0
        for index in range(3):
            assert main(["probe", *common, "--shard", f"{index}/3", "-o", str(tmp_path / f"{index}.jsonl")]) == 0
    whole = {_identity(record): record for record in _records(tmp_path / "all.jsonl")}
    assert len(whole) == 30 + 5 * 2 + 6 + 1
    shards = [[_identity(record) for record in _records(tmp_path / f"{index}.jsonl")] for index in range(3)]
    assert all(shards)
    assert sorted(key for shard in shards for key in shard) == sorted(whole)  # disjoint, and nothing missing


def test_cli_journal_belongs_to_one_shard(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("not a target!\n", encoding="utf-8")
    journal = str(tmp_path / "journal")
    out = str(tmp_path / "out.jsonl")
    assert main(["probe", str(targets), "-q", "--shard", "0/2", "--resume", journal, "-o", out]) == 0
    assert main(["probe", str(targets), "-q", "--shard", "0/2", "--resume", journal, "-o", out]) == 0
    assert main(["probe", str(targets), "-q", "--shard", "1/2", "--resume", journal, "-o", out]) == 2
    assert "another run" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["3/3", "1/0", "x"])
def test_cli_rejects_a_bad_shard(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["probe", "-", "--shard", value])
    assert exit_info.value.code == 2
    assert "--shard" in capsys.readouterr().err

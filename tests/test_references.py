"""The shared reference lakes (tests/references.py): one build per key across processes, nothing
left by a failed build. No Spark: the builds here write small files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from references import FOLDER, builds, cache_dir, reference_lake

HERE = Path(__file__).resolve().parent

CHILD = """
import json, sys, time
from pathlib import Path
from references import reference_lake

root, key = Path(sys.argv[1]), sys.argv[2]

def build(folder):
    (root / "started").write_text("")
    while not (root / "go").exists():  # the test lets the build finish once the other waits
        time.sleep(0.02)
    (folder / "data.txt").write_text(key)
    return {"built_by": sys.argv[3]}

folder, value = reference_lake(root, key, build)
print(json.dumps({"folder": str(folder), "value": value, "data": (folder / "data.txt").read_text()}))
"""


def child(root: Path, key: str, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), key, name], env=env, stdout=subprocess.PIPE, text=True
    )


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 60  # a safety net for a hung child, not a measurement
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def blocked_on_a_lock(pid: int) -> bool:
    """Whether process ``pid`` waits for a lock (``/proc/locks`` lists waiters with ``->``)."""
    return any(
        line.split()[1] == "->" and line.split()[5] == str(pid)
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 5
    )


def test_two_processes_asking_for_the_same_key_build_it_once(tmp_path):
    first = child(tmp_path, "same-key", "first")
    wait_for((tmp_path / "started").exists, "the first build to start")
    second = child(tmp_path, "same-key", "second")
    wait_for(lambda: blocked_on_a_lock(second.pid), "the second process to wait on the lock")
    assert not (tmp_path / "same-key").exists()  # not there while it is being built
    (tmp_path / "go").write_text("")
    outputs = [json.loads(p.communicate(timeout=60)[0]) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0]

    assert builds(tmp_path) == ["same-key"]
    assert (
        outputs[0]
        == outputs[1]
        == {
            "folder": str(tmp_path / "same-key"),
            "value": {"built_by": "first"},  # the second got the first one's pickled value
            "data": "same-key",
        }
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "builds.log",
        "go",
        "same-key",
        "same-key.lock",
        "started",
        "uses.log",
    ]
    assert len((tmp_path / "uses.log").read_text().splitlines()) == 2


def test_a_failed_build_leaves_nothing_and_the_next_caller_builds(tmp_path):
    def failing(folder: Path):
        (folder / "half.txt").write_text("half")
        raise RuntimeError("the reference run failed")

    with pytest.raises(RuntimeError, match="the reference run failed"):
        reference_lake(tmp_path, "k", failing)
    assert not (tmp_path / "k").exists()
    assert not list(tmp_path.glob("k.building-*"))
    assert builds(tmp_path) == []

    calls = []

    def good(folder: Path):
        calls.append(folder)
        (folder / "lake.txt").write_text("whole")
        return ["states"]

    folder, value = reference_lake(tmp_path, "k", good)
    assert (folder, value) == (tmp_path / "k", ["states"])
    assert (folder / "lake.txt").read_text() == "whole"
    assert not (folder / "half.txt").exists()
    assert reference_lake(tmp_path, "k", good) == (folder, ["states"])
    assert len(calls) == 1
    assert builds(tmp_path) == ["k"]


def test_different_keys_build_separately_and_a_killed_build_is_cleared(tmp_path):
    stale = tmp_path / "b.building-999999"  # what a build killed mid-way left
    stale.mkdir()
    (stale / "junk").write_text("")

    def build(name):
        def write(folder: Path):
            (folder / "name").write_text(name)
            return name.upper()

        return write

    a = reference_lake(tmp_path, "a", build("a"))
    b = reference_lake(tmp_path, "b", build("b"))
    assert a == (tmp_path / "a", "A")
    assert b == (tmp_path / "b", "B")
    assert (tmp_path / "a" / "name").read_text() == "a"
    assert (tmp_path / "b" / "name").read_text() == "b"
    assert not stale.exists()
    assert reference_lake(tmp_path, "a", build("other")) == a  # cached: not built again
    assert builds(tmp_path) == ["a", "b"]


def test_a_key_that_is_not_a_plain_name_is_refused(tmp_path):
    for key in ("../x", "a/b", "", "A b"):
        with pytest.raises(ValueError, match="reference key"):
            reference_lake(tmp_path, key, lambda folder: None)
    assert list(tmp_path.iterdir()) == []


class Factory:
    """What cache_dir needs of pytest's TempPathFactory: the base temporary folder."""

    def __init__(self, base: Path):
        self.base = base

    def getbasetemp(self) -> Path:
        return self.base


def test_the_cache_is_the_workers_common_folder_under_xdist(tmp_path, monkeypatch):
    worker = tmp_path / "pytest-7" / "popen-gw1"
    worker.mkdir(parents=True)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert cache_dir(Factory(worker)) == tmp_path / "pytest-7" / FOLDER
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    assert cache_dir(Factory(worker)) == worker / FOLDER
    assert (tmp_path / "pytest-7" / FOLDER).is_dir()

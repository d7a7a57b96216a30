"""The split of the Spark server's CPU among test files (the suite's end line)."""

import json
import os

import cpu_share


def test_each_second_is_shared_among_the_tests_running_then(tmp_path, monkeypatch):
    monkeypatch.setenv(cpu_share.LOG_ENV, str(tmp_path))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    cpu_share.log_interval("tests/test_a.py::test_one", 100.0, 102.0)
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    cpu_share.log_interval("tests/test_b.py::test_two[x]", 101.0, 104.0)
    assert json.loads((tmp_path / "intervals-gw1.jsonl").read_text())["file"] == "test_b.py"

    sampler = cpu_share.Sampler(os.getpid(), tmp_path)
    sampler._stop.set()
    sampler._thread.join()
    # server CPU 10 s at start-up, then 2, 4, 6 and 8 s in the four seconds after 100
    sampler.samples = [
        (100.0, 10.0),
        (101.0, 12.0),
        (102.0, 16.0),
        (103.0, 22.0),
        (104.0, 30.0),
        (105.0, 31.0),
    ]
    shares = sampler.by_file()
    assert shares == {
        "(server start-up)": 10.0,
        "test_a.py": 2.0 + 4.0 / 2,  # alone in 100-101, with test_b in 101-102
        "test_b.py": 4.0 / 2 + 6.0 + 8.0,
        "(between tests)": 1.0,
    }


def test_cpu_seconds_of_a_gone_process_is_none():
    assert cpu_share.cpu_seconds(os.getpid()) > 0
    assert cpu_share.cpu_seconds(2**22 + 12345) is None

"""What a test does when something it needs from the machine is missing.

Locally it skips, saying what is missing. Under ``CI=true`` (``.ci/run`` sets it) it fails: CI must
install and start everything the tests need, so a missing prerequisite is a broken CI set-up, not
a test to leave out. That includes the real source data beside the repository (``shared_data``).
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing(reason: str) -> NoReturn:
    """Skip the test for this missing prerequisite, or fail it under ``CI=true``."""
    __tracebackhide__ = True  # report the caller's line, not this one
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing prerequisite fails the run)", pytrace=False)
    pytest.skip(reason)

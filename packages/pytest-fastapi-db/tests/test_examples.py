"""The example projects (examples/): apps of other shapes, configured only through the kit's
public options, each run as its own user would run it: serially, with `-n 2`, in random order,
on the suite's test database (SQLite in memory, or PostgreSQL in the PostgreSQL run)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
SUITE_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "")
MODES = {
    "serial": ["-p", "no:randomly"],
    "xdist": ["-n", "2"],
    "random": ["-p", "randomly"],
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("example", sorted(path.name for path in EXAMPLES.iterdir()))
def test_example_project(example: str, mode: str) -> None:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")
    }
    environment["PYTHONPATH"] = str(EXAMPLES / example)
    if SUITE_DATABASE_URL:
        environment["TEST_DATABASE_URL"] = SUITE_DATABASE_URL
    result = subprocess.run(  # noqa: S603  (our own interpreter, our own example)
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *MODES[mode]],
        cwd=EXAMPLES / example,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout.splitlines()[-1]

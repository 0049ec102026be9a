"""Idle memory of the server as a deployer installs it: `pip install .` into a fresh venv
(no test or benchmark packages, which a server process would import too: httpx loads `rich`
and `pygments` for its command line wherever they are installed), then `resource-api serve`
on SQLite with nothing set but its data directory, one list request, and the process's RSS.

    .venv/bin/python -m bench.idle_bench [--runs 3]

Prints JSON: each run's RSS in MiB and their median.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.servers import running_server, server_rss_mib

PROJECT = Path(__file__).resolve().parent.parent


def install(venv: Path) -> Path:
    """A fresh venv holding the project as `pip install .` makes it; its `resource-api`."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, str(PROJECT)], check=True, capture_output=True, timeout=600)
    return venv / "bin" / "resource-api"


def idle_rss(command: Path, data_dir: Path) -> float:
    """The server's RSS, in MiB, after it has answered one list; nothing set but DATA_DIR."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["DATA_DIR"] = str(data_dir)
    subprocess.run([str(command), "migrate"], env=env, check=True, capture_output=True)
    with running_server(env, program=[str(command)]) as server:
        answer = httpx.get(f"{server.url}/api/v1/resources", timeout=10)
        assert answer.status_code == 200, answer.text
        time.sleep(1)  # settled
        return server_rss_mib(server.pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        command = install(Path(scratch) / "venv")
        runs = [idle_rss(command, Path(scratch) / f"data{run}") for run in range(args.runs)]
    print(json.dumps({"rss_mib": runs, "median_mib": statistics.median(runs)}))


if __name__ == "__main__":
    main()

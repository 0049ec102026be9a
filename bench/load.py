"""Load from another process: wrk where it is installed (Debian's `wrk`), else a bounded Python
driver; the server pinned to the first core and the load to the second, where there are two.
Each run reports req/s, p50/p99, errors, server CPU per request and RSS."""

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from bench.parser_bench import cpu_seconds
from tests.servers import server_rss_mib

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass
class Run:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_request: float
    rss_mib: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: dict | list | None = None
    headers: tuple[tuple[str, str], ...] = ()


# Where there are two cores: the server on one, whatever loads it on the other.
SERVER_CORE, LOAD_CORE = 0, 1
SPARE_CORE = (os.cpu_count() or 1) > 1


def pin(pid: int, core: int) -> None:
    """Keep a process (0: this one) on one core, where there are two."""
    if SPARE_CORE:
        os.sched_setaffinity(pid, {core})


def _wrk_script(request: Request) -> str:
    body = json.dumps(json.dumps(request.body)) if request.body is not None else '""'
    headers = "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in request.headers)
    return (
        f'wrk.method = "{request.method}"\nwrk.body = {body}\n'
        f'wrk.headers["Content-Type"] = "application/json"\n{headers}'
    )


def _milliseconds(text: str) -> float:
    number, unit = _found(r"([\d.]+)(us|ms|s)", text, whole=True)
    return float(number) * UNITS[unit]


def _found(pattern: str, text: str, whole: bool = False) -> tuple[str, ...]:
    match = re.fullmatch(pattern, text) if whole else re.search(pattern, text)
    assert match is not None, f"{pattern!r} not in {text!r}"
    return match.groups()


WRK_ERRORS = r"(?:Non-2xx or 3xx responses|connect|read|write|timeout):? (\d+)"


def _wrk(base: str, request: Request, seconds: float, connections: int) -> tuple[int, dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_wrk_script(request))
    duration = f"-d{max(1, round(seconds))}s"
    command = ["wrk", "-t1", f"-c{connections}", duration, "--timeout", "10s", "--latency"]
    if SPARE_CORE:
        command = ["taskset", "-c", str(LOAD_CORE), *command]
    command += ["-s", script.name, base + request.path]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink()
    done = int(_found(r"(\d+) requests in", output)[0])
    if not done:
        return 0, {}  # nothing answered in time
    return done, {
        "requests_per_second": float(_found(r"Requests/sec:\s+([\d.]+)", output)[0]),
        "p50_ms": _milliseconds(_found(r"Distribution\s+50%\s+(\S+)", output)[0]),
        "p99_ms": _milliseconds(_found(r"\n\s+99%\s+(\S+)", output)[0]),
        "errors": sum(int(n) for n in re.findall(WRK_ERRORS, output)),
    }


async def _python_driver(
    base: str, request: Request, seconds: float, connections: int
) -> tuple[int, dict]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def one_client(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = await client.request(request.method, request.path, json=request.body)
                errors += response.status_code >= 300
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - started) * 1000)

    limits = httpx.Limits(max_connections=connections)
    headers = dict(request.headers)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=10
    ) as client:
        started = time.monotonic()
        await asyncio.gather(*(one_client(client) for _ in range(connections)))
        elapsed = time.monotonic() - started
    if not latencies:
        return 0, {}
    latencies.sort()
    return len(latencies), {
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1],
        "errors": errors,
    }


def measure(base: str, pid: int, request: Request, seconds: float, connections: int) -> Run:
    if shutil.which("wrk"):
        _wrk(base, request, 1, connections)  # warm-up
        before = cpu_seconds(pid)
        done, numbers = _wrk(base, request, seconds, connections)
    else:
        before = cpu_seconds(pid)
        done, numbers = asyncio.run(_python_driver(base, request, seconds, connections))
    if done < connections:  # fewer answers than clients: the rest never came, it hung
        numbers = {"requests_per_second": 0.0, "p50_ms": 0.0, "p99_ms": 0.0}
        numbers["errors"] = connections - done
        done = 0
    cpu = (cpu_seconds(pid) - before) / done * 1e6 if done else 0.0
    return Run(cpu_us_per_request=cpu, rss_mib=server_rss_mib(pid), **numbers)

"""`make bench`: our server against two baselines serving the same rows, in the same run, on
SQLite and (with BENCH_POSTGRES_URL) PostgreSQL; then the fan-out and million-row benchmarks,
idle memory, the last recorded soak (bench/soak.json) and the test kit's isolation. Writes
bench/RESULTS.md and bench/results.json.

    .venv/bin/python -m bench.run [--seconds 4] [--concurrency 8 64] [--quick]

Baselines (bench/baselines/): the ceiling, a bare ASGI app on the driver; and the tutorial
app, FastAPI and the SQLAlchemy ORM as their tutorials write them. Neither checks tokens or
limits, so ours does more work per request; the ratios say what that costs.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.http_bench import UNLIMITED, bench_database
from bench.load import SERVER_CORE, Request, Run, measure, pin
from bench.soak_bench import RECORD as SOAK_RECORD
from tests.servers import (
    Server,
    register_and_log_in,
    run_cli,
    running_asgi_app,
    running_server,
    server_env,
)

HERE = Path(__file__).parent
SERVERS = ("ours", "ceiling", "tutorial")
ROWS = 1000


BULK_ITEMS = [
    {"name": f"bulk {n}", "description": "made in bulk", "metadata": {"n": n, "batch": "bench"}}
    for n in range(1000)
]
# A bulk request holds the write for a while: a few at once say how steady it is; more would
# only queue (and grow the table for nothing).
BULK_CONCURRENCY = (1, 4)


def scenarios(token_headers: tuple[tuple[str, str], ...]) -> dict[str, Request]:
    """Bulk last: the rows it adds must not change what the reads before it measure."""
    return {
        "list (skip=0&limit=10, counted)": Request("GET", "/api/v1/resources?skip=0&limit=10"),
        "read one": Request("GET", "/api/v1/resources/500"),
        "create": Request("POST", "/api/v1/resources", {"name": "bench"}, token_headers),
        "update": Request("PATCH", "/api/v1/resources/7", {"name": "bench"}, token_headers),
        "bulk 1000": Request("POST", "/api/v1/resources/bulk", BULK_ITEMS, token_headers),
    }


BASELINE_APPS = {
    "ceiling": "bench.baselines.ceiling:app",
    "tutorial": "bench.baselines.tutorial:app",
}


def run_database(kind: str, args: argparse.Namespace) -> dict[str, dict[str, dict]]:
    """Every scenario on every server, at every concurrency: {scenario: {c: {server: Run}}}.
    A server that answers nothing in a run (the tutorial app's pool deadlocks under load) is
    recorded as such and started afresh for the next."""
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        url = bench_database(Path(data_dir), "run", postgres=kind == "postgresql")
        env = server_env(Path(data_dir), url, ACCESS_LOG="false", **UNLIMITED)
        assert run_cli(env, "migrate").returncode == 0
        starts = {
            "ours": lambda: running_server(env),
            **{
                name: (lambda app=app: running_asgi_app(app, {**env, "DATABASE_URL": url}))
                for name, app in BASELINE_APPS.items()
            },
        }
        stacks = {name: ExitStack() for name in starts}
        servers: dict[str, Server] = {}

        def start(name: str) -> None:
            stacks[name].close()
            servers[name] = stacks[name].enter_context(starts[name]())
            pin(servers[name].pid, SERVER_CORE)

        try:
            for name in starts:
                start(name)
            headers = seed(servers["ours"])
            for scenario, request in scenarios(tuple(headers.items())).items():
                bulk = request.path.endswith("/bulk")
                for connections in BULK_CONCURRENCY if bulk else args.concurrency:
                    for name, server in list(servers.items()):
                        run = measure(server.url, server.pid, request, args.seconds, connections)
                        cell = results.setdefault(scenario, {}).setdefault(str(connections), {})
                        cell[name] = run.as_dict()
                        print(
                            f"{kind:10} {scenario:32} c={connections:<4} {name:9}"
                            f" {run.requests_per_second:8.0f} req/s  p99 {run.p99_ms:8.1f} ms"
                            f"  {run.cpu_us_per_request:6.0f} µs CPU  errors {run.errors}",
                            flush=True,
                        )
                        if not run.requests_per_second:
                            start(name)  # hung: a fresh one for the next run
        finally:
            for stack in stacks.values():
                stack.close()
    return results


def seed(ours: Server) -> dict[str, str]:
    """ROWS resources through the API; the bench user's bearer headers."""
    headers = register_and_log_in(ours.url, "bench")
    for start in range(0, ROWS, 500):
        items = [{"name": f"seed {start + n}", "metadata": {"n": n}} for n in range(500)]
        api = f"{ours.url}/api/v1/resources/bulk"
        assert httpx.post(api, json=items, headers=headers, timeout=60).status_code == 201
    return headers


def table(kind: str, results: dict[str, dict[str, dict]]) -> list[str]:
    lines = [
        f"### {kind}",
        "",
        "| scenario | c | ours req/s | p50 / p99 ms | errors | CPU µs/req | RSS MiB"
        " | ÷ ceiling (req/s; CPU) | ÷ tutorial (req/s; CPU) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, by_concurrency in results.items():
        for connections, runs in by_concurrency.items():
            ours, ceiling, tutorial = (Run(**runs[server]) for server in SERVERS)

            def ratios(base: Run, ours: Run = ours) -> str:
                if not base.requests_per_second or base.errors:
                    return f"failed ({base.errors} errors)"  # it hung or timed out
                speed = ours.requests_per_second / base.requests_per_second
                cpu = ours.cpu_us_per_request / base.cpu_us_per_request
                return f"{speed:.2f}; {cpu:.2f}"

            lines.append(
                f"| {name} | {connections} | {ours.requests_per_second:.0f} |"
                f" {ours.p50_ms:.1f} / {ours.p99_ms:.1f} | {ours.errors} |"
                f" {ours.cpu_us_per_request:.0f} | {ours.rss_mib:.0f} | {ratios(ceiling)} |"
                f" {ratios(tutorial)} |"
            )
    return [*lines, ""]


def other_benchmark(module: str, *arguments: str, postgres: bool = False) -> str:
    """Another benchmark's printed result, run as its own process, on SQLite or PostgreSQL."""
    env = dict(os.environ)
    if not postgres:
        env.pop("BENCH_POSTGRES_URL", None)
    command = [sys.executable, "-m", module, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True, env=env)
    return done.stdout.strip()


def memory_and_tests() -> list[str]:
    """Idle memory of a production install, the last recorded soak, and the kit's isolation."""
    idle = json.loads(other_benchmark("bench.idle_bench", "--runs", "3"))
    runs = ", ".join(f"{rss:.1f}" for rss in idle["rss_mib"])
    idle_line = f"{idle['median_mib']:.1f} MiB (median of {runs}; `bench.idle_bench`)"
    lines = ["### Memory", "", f"- Idle RSS of `pip install .` after one list: {idle_line}."]
    if SOAK_RECORD.exists():
        soak = json.loads(SOAK_RECORD.read_text())
        lines.append(
            f"- Over a long mixed load (`bench.soak_bench --record`, {soak['database']}, run on"
            f" {soak['date']}; its ten minutes do not fit in this command's ten): {soak['report']}."
        )
    isolation = other_benchmark("bench.isolation_bench", postgres=True)
    title = "### Per-test isolation: pytest-fastapi-db against the seed's create_all/drop_all"
    return [*lines, "", title, "", "```", isolation, "```", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--quick", action="store_true", help="skip fan-out and a million rows")
    args = parser.parse_args()
    kinds = ["sqlite", *(["postgresql"] if os.environ.get("BENCH_POSTGRES_URL") else [])]
    results = {kind: run_database(kind, args) for kind in kinds}
    report = [
        "# Benchmark results",
        "",
        f"`make bench` on {datetime.now(UTC):%Y-%m-%d}, {os.cpu_count()} cores; the server on one,"
        " the load on the other; each ratio is ours over a baseline measured in the same run."
        ' "failed": the baseline hung (fewer answers than clients). Which targets of issue 10'
        " these meet: bench/README.md.",
        "",
    ]
    for kind, by_scenario in results.items():
        report += table(kind, by_scenario)
    if not args.quick:
        fanout = other_benchmark("bench.fanout_bench", "--subscribers", "1000", "--seconds", "3")
        # After its JSON, bench.fanout_bench prints the result and its profile.
        report += ["### Fan-out to 1000 subscribers (SQLite)", "", fanout.split("\n\n", 1)[1], ""]
        for kind in kinds:
            scale = other_benchmark(
                "bench.scale_bench", "--requests", "100", postgres=kind == "postgresql"
            )
            title = f"### A million resources against a thousand ({kind})"
            report += [title, "", "```", scale, "```", ""]
        report += memory_and_tests()
    (HERE / "RESULTS.md").write_text("\n".join(report))
    (HERE / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main()

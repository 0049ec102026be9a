"""Per-test cost of test isolation: pytest-fastapi-db's rolled-back transaction against the
seed's `create_all`/`drop_all` per test, on the same schema, in the same run.

Each way runs the same test body; the body alone (committed, on a schema made once, nothing
undone) is measured too, so that what each way of isolating adds is its time less the body's.

    .venv/bin/python -m bench.isolation_bench [--tests 200]

SQLite in memory always; PostgreSQL too when BENCH_POSTGRES_URL names a server (for example
postgresql+psycopg://postgres@127.0.0.1:5432/test; the benchmark uses `<name>_bench`).
"""

import argparse
import os
import time
from collections.abc import Callable

from pytest_fastapi_db.databases import build_test_engine, ensure_database
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.database import Base
from app.models import Resource, User


def _a_test(session: Session, n: int) -> None:
    """What a typical test does: a user, a resource, a commit, a read."""
    user = User(email=f"u{n}@example.com", username=f"u{n}")
    session.add(user)
    session.flush()
    session.add(Resource(name="r", owner_id=user.id))
    session.commit()
    assert session.query(Resource).filter_by(owner_id=user.id).count() == 1


def seed_style(engine: Engine, n: int) -> None:
    Base.metadata.create_all(engine)
    session = Session(bind=engine)
    try:
        _a_test(session, n)
    finally:
        session.close()
        Base.metadata.drop_all(engine)


def kit_style(engine: Engine, n: int) -> None:
    with engine.connect() as connection:
        outer = connection.begin()
        session = Session(bind=connection, join_transaction_mode="create_savepoint")
        _a_test(session, n)
        session.close()
        outer.rollback()


def bare(engine: Engine, n: int) -> None:
    """The body with no isolation at all: what every way pays anyway."""
    with Session(bind=engine) as session:
        _a_test(session, n)


def per_test_ms(run: Callable[[Engine, int], None], engine: Engine, tests: int) -> float:
    run(engine, -1)  # warm up: connections, compiled statements
    started = time.perf_counter()
    for n in range(tests):
        run(engine, n)
    return (time.perf_counter() - started) / tests * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tests", type=int, default=200)
    args = parser.parse_args()

    targets = {"SQLite (memory)": make_url("sqlite://")}
    if postgres := os.environ.get("BENCH_POSTGRES_URL"):
        base = make_url(postgres)
        targets["PostgreSQL"] = ensure_database(base.set(database=f"{base.database}_bench"))

    print(
        f"{'database':18} {'seed ms/test':>13} {'kit ms/test':>12} {'body alone':>11}"
        f" {'isolation: kit / seed':>22}"
    )
    for name, url in targets.items():
        engine = build_test_engine(url)
        Base.metadata.drop_all(engine)
        seed = per_test_ms(seed_style, engine, args.tests)
        Base.metadata.create_all(engine)  # the kit makes the schema once per run
        kit = per_test_ms(kit_style, engine, args.tests)
        body = per_test_ms(bare, engine, args.tests)
        Base.metadata.drop_all(engine)
        engine.dispose()
        share = (kit - body) / (seed - body)
        print(f"{name:18} {seed:13.2f} {kit:12.2f} {body:11.2f} {share:22.2f}")


if __name__ == "__main__":
    main()

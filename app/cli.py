"""`resource-api`: serve, migrate, create-user, demo-upstream."""

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from app.problems import plain_message
from app.settings import get_settings

LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]
# Drivers that come with an extra: a URL that needs one names the extra to install.
EXTRAS = {"psycopg": "postgres", "redis": "redis"}


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _workers_problem(workers: int) -> str | None:
    if workers > 1 and not get_settings().broker_url:
        return (
            f"--workers {workers} needs BROKER_URL (redis://…): without it each worker's live "
            "updates reach only its own WebSocket subscribers"
        )
    return None


def _schema_problem() -> str | None:
    """Why the server must not start, in one line: a database it cannot reach, or a schema
    behind the code (every request would fail while the server looked healthy)."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.database import get_engine
    from app.migrations import schema_is_current

    try:
        with get_engine().connect() as connection:
            current = schema_is_current(connection)
    except SQLAlchemyError as exc:
        return _unreachable(exc)
    if not current:
        return f"the database schema at {_database()} is behind: run resource-api migrate"
    return None


def _database() -> str:
    """The database URL, its password masked."""
    from sqlalchemy.engine import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)


def _unreachable(exc: BaseException) -> str:
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    return f"cannot reach the database at {_database()}: {reason}"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.logs import logging_config
    from app.metrics import shared_by_workers
    from app.server import uvicorn_options

    problem = _workers_problem(args.workers) or _schema_problem()
    if problem is not None:
        print(f"resource-api: {problem}", file=sys.stderr)
        return 2

    settings = get_settings()
    several = args.workers > 1 and settings.metrics_enabled
    with shared_by_workers() if several else contextlib.nullcontext():
        uvicorn.run(
            "app.main:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=args.log_level,
            log_config=logging_config(settings.effective_log_format, args.log_level),
            access_log=False,  # ours (app.logs.log_access) carries the request id and duration
            **uvicorn_options(settings),
        )
    return 0


def _demo_upstream(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run("app.demo_upstream:app", host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _migrate(_args: argparse.Namespace) -> int:
    from app.migrations import upgrade_to_head

    upgrade_to_head()
    print(f"database at head: {_database()}")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password (again): "):
            raise SystemExit("passwords do not match")
        return password
    return sys.stdin.readline().rstrip("\n")


def _create_user(args: argparse.Namespace) -> int:
    from app.auth import hash_password
    from app.database import get_session_factory
    from app.errors import Conflict
    from app.schemas import UserCreate
    from app.services import users
    from app.unit_of_work import UnitOfWork

    try:
        data = UserCreate(email=args.email, username=args.username, password=_read_password())
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(map(str, error["loc"]))
            print(f"{where}: {plain_message(error['msg'])}", file=sys.stderr)
        return 2
    with get_session_factory()() as session:
        uow = UnitOfWork(session)
        try:
            user = users.register(uow, data, hash_password(data.password), is_admin=args.admin)
        except Conflict as exc:
            print(exc.detail, file=sys.stderr)
            return 1
        uow.commit()
        role = "admin" if user.is_admin else "user"
        print(f"created {role} {user.id} ({user.username})")
    return 0


def _listen_options(command: argparse.ArgumentParser, default_port: int, port_help: str) -> None:
    command.add_argument(
        "--host", default=os.environ.get("HOST", "127.0.0.1"), help="address to listen on ($HOST)"
    )
    command.add_argument("--port", type=int, default=default_port, help=port_help)
    command.add_argument(
        "--log-level", default="info", choices=LOG_LEVELS, help="the server's log level"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resource-api", description=__doc__)
    parser.add_argument(
        "--debug", action="store_true", help="show a traceback instead of a one-line error"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    helpful = argparse.ArgumentDefaultsHelpFormatter
    serve = commands.add_parser(
        "serve",
        help="run the HTTP server (settings come from the environment; see the README)",
        formatter_class=helpful,
    )
    _listen_options(serve, int(os.environ.get("PORT", "8000")), "port to listen on ($PORT)")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="server processes; more than one needs BROKER_URL, so that live updates reach "
        "every worker's subscribers",
    )
    serve.set_defaults(handler=_serve)

    upstream = commands.add_parser(
        "demo-upstream",
        help="run a stand-in external service for external-data "
        "(EXTERNAL_API_URL=http://127.0.0.1:8001)",
        formatter_class=helpful,
    )
    _listen_options(upstream, 8001, "port to listen on")
    upstream.set_defaults(handler=_demo_upstream)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest")
    migrate.set_defaults(handler=_migrate)

    create_user = commands.add_parser(
        "create-user", help="add a user; the password is asked for, or read from stdin"
    )
    create_user.add_argument("--email", required=True, help="the user's email (lower-cased)")
    create_user.add_argument(
        "--username", required=True, help="letters, digits, '_', '.' and '-'; case-sensitive"
    )
    create_user.add_argument(
        "--admin",
        action="store_true",
        help="an admin, who may deactivate users and delete any resource",
    )
    create_user.set_defaults(handler=_create_user)
    return parser


def _settings_problems(exc: ValidationError) -> list[str]:
    """One line per setting that is wrong, naming it as the environment does; never its
    value (it may be a key or a password)."""
    problems = []
    for error in exc.errors():
        setting = "_".join(str(part) for part in error["loc"]).upper()
        message = plain_message(error["msg"])
        problems.append(f"{setting}: {message}" if setting else message)
    return problems


def _problems(exc: Exception) -> list[str] | None:
    """What to tell the user, in a line each, about an error a command met; None for one
    that is not theirs to fix (a bug: its traceback says more)."""
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, ValidationError):
        return _settings_problems(exc)
    if isinstance(exc, ModuleNotFoundError) and exc.name in EXTRAS:
        extra = EXTRAS[exc.name]
        return [f"{exc.name} is not installed: pip install 'resource-api[{extra}]'"]
    if isinstance(exc, OperationalError):
        return [_unreachable(exc)]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except Exception as exc:
        problems = None if args.debug else _problems(exc)
        if problems is None:
            raise
        for problem in problems:
            print(f"resource-api: {problem}", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    raise SystemExit(main())

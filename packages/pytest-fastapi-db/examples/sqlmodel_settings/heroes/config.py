import os

from sqlalchemy.engine import URL


def database_url() -> URL:
    """Assembled from parts, as the template does (POSTGRES_SERVER, POSTGRES_DB, …)."""
    port = os.environ.get("DB_PORT")
    return URL.create(
        os.environ.get("DB_SCHEME", "postgresql+psycopg"),
        username=os.environ.get("DB_USER") or None,
        password=os.environ.get("DB_PASSWORD") or None,
        host=os.environ.get("DB_HOST") or None,
        port=int(port) if port else None,
        database=os.environ.get("DB_NAME") or None,
    )

"""An example async app: asyncpg (or aiosqlite), `async_sessionmaker`, `AsyncSession`."""

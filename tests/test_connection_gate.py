"""The connection gate's queue: slots go to waiters in the order they came, each waits its
own `timeout` and no longer, and a waiter that leaves (cancelled) never keeps a slot; and the
pool behind it keeps every connection the gate lets be used at once."""

import asyncio
import threading

import pytest
from pytest_fastapi_db.blocker import DatabaseBlocker
from sqlalchemy import event

from app.connection_gate import ConnectionGate, ConnectionsExhausted
from app.database import pooled_engine
from app.settings import Settings


async def waiting(gate: ConnectionGate, served: list[str], name: str) -> None:
    async with gate.slot():
        served.append(name)
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_waiters_are_served_in_the_order_they_came() -> None:
    gate = ConnectionGate(capacity=1, timeout=5)
    served: list[str] = []
    async with gate.slot():
        queue = []
        for name in "abcde":
            queue.append(asyncio.create_task(waiting(gate, served, name)))
            await asyncio.sleep(0)
    await asyncio.gather(*queue)
    assert served == list("abcde")
    assert gate.in_use == 0


@pytest.mark.asyncio
async def test_each_waiter_gives_up_after_its_own_timeout() -> None:
    gate = ConnectionGate(capacity=1, timeout=0.3)
    loop = asyncio.get_running_loop()
    served: list[str] = []
    async with gate.slot():
        started = loop.time()
        queue = []
        for n in range(3):  # at 0, 0.1 and 0.2 s: due to give up at 0.3, 0.4 and 0.5 s
            queue.append(asyncio.create_task(waiting(gate, served, str(n))))
            await asyncio.sleep(0.1)
        for waiter, deadline in zip(queue[:2], (0.3, 0.4), strict=True):
            with pytest.raises(ConnectionsExhausted):
                await waiter
            assert loop.time() - started < deadline + 0.07  # its own deadline, no later
        assert not queue[2].done()  # the last still has its time
    await asyncio.wait_for(queue[2], 1)  # and is served by the slot given back
    assert served == ["2"]
    assert gate.in_use == 0


@pytest.mark.asyncio
async def test_a_waiter_cancelled_in_the_queue_passes_its_turn_on() -> None:
    gate = ConnectionGate(capacity=1, timeout=5)
    served: list[str] = []
    async with gate.slot():
        gone = asyncio.create_task(waiting(gate, served, "gone"))
        await asyncio.sleep(0)
        stays = asyncio.create_task(waiting(gate, served, "stays"))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
    await asyncio.wait_for(stays, 1)
    assert served == ["stays"]
    assert gate.in_use == 0


@pytest.mark.asyncio
async def test_a_waiter_handed_a_slot_then_cancelled_gives_it_back() -> None:
    """The slot is handed over when it is given back; the waiter may be cancelled before it
    runs again. It must not take the slot with it."""
    gate = ConnectionGate(capacity=1, timeout=5)
    async with gate.slot():
        handed = asyncio.create_task(gate.slot().__aenter__())
        await asyncio.sleep(0)
    handed.cancel()  # the slot is its already; it has not run since
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert gate.in_use == 0
    async with asyncio.timeout(0.5), gate.slot():  # free at once
        assert gate.in_use == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("pool", "opened"),
    [
        ({}, 10),  # the defaults: ten kept, each opened once
        # Five kept and five overflow: the overflow, closed when given back to a full pool, is
        # opened again by the next burst (over and over under steady load).
        ({"db_pool_size": 5, "db_max_overflow": 5}, 15),
    ],
)
async def test_connections_opened_for_one_burst_serve_the_next(
    scratch_database_url: str, db_blocker: DatabaseBlocker, pool: dict[str, int], opened: int
) -> None:
    settings = Settings(database_url=scratch_database_url, **pool)
    engine = pooled_engine(settings)
    connects = []
    event.listen(engine, "connect", lambda *_: connects.append(1))
    gate = ConnectionGate(settings.db_connection_capacity, timeout=10)
    all_holding = threading.Barrier(settings.db_connection_capacity, timeout=10)

    def hold_a_connection() -> None:
        connection = engine.raw_connection()  # from the pool, in no transaction
        try:
            all_holding.wait()
        finally:
            connection.close()  # back to the pool

    try:
        with db_blocker.unblocked():
            for _burst in range(2):
                await asyncio.gather(
                    *(gate.run(hold_a_connection) for _ in range(settings.db_connection_capacity))
                )
    finally:
        gate.close()
        engine.dispose()
    assert settings.db_connection_capacity == 10
    assert len(connects) == opened

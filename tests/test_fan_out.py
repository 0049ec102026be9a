"""The fan-out's own rules, below the socket: frames built once and written whole, passes
paced so they never crowd out the requests, and a subscriber that falls behind dropped.

Over real sockets, the same path runs in test_live_updates.py and test_live_update_limits.py
(uvicorn there offers the frame writer; the TestClient does not, and gets queued events)."""

import asyncio
import contextlib
import time

import pytest
from prometheus_client import REGISTRY
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from app.events.broker import (
    FAN_OUT_PAUSE,
    PASS_SMOOTHING,
    SUBSCRIBER_BUFFER_BYTES,
    InProcessBroker,
)
from app.events.frames import frame_writer, text_frame
from app.events.types import Event


class RecordingWriter:
    """A connection that takes frames: keeps them, and holds as many unsent bytes as told."""

    def __init__(self, write_seconds: float = 0.0) -> None:
        self.writes: list[bytes] = []
        self.unsent = 0
        self.write_seconds = write_seconds

    def write_frames(self, frames: bytes) -> None:
        time.sleep(self.write_seconds)  # a slow socket write, on the loop, as the real one is
        self.writes.append(frames)

    def buffered_bytes(self) -> int:
        return self.unsent


def parse_frames(data: bytes) -> list[Frame]:
    """Frames as a client parses them (websockets' own parser, unmasked server frames)."""
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    while reader.buffer:
        with pytest.raises(StopIteration) as done:  # whole: parsed without asking for more
            next(Frame.parse(reader.read_exact, mask=False))
        frames.append(done.value.value)
    return frames


async def written(writer: RecordingWriter, count: int, within: float = 2.0) -> None:
    """Until `writer` has had `count` writes (a pass may wait out the last one's pause)."""
    deadline = time.monotonic() + within
    while len(writer.writes) < count:
        assert time.monotonic() < deadline, f"{len(writer.writes)} writes, not {count}"
        await asyncio.sleep(0.002)


def created(resource_id: int, description: str = "") -> Event:
    return Event("resource.created", {"id": resource_id, "description": description})


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 200_000])
def test_a_text_frame_is_what_a_client_parses_back(size: int) -> None:
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte: the length is in bytes
    (frame,) = parse_frames(text_frame(text))
    assert (frame.opcode, frame.fin, frame.data.decode()) == (Opcode.TEXT, True, text)


def test_an_event_frame_carries_its_text() -> None:
    event = created(7)
    (frame,) = parse_frames(event.frame)
    assert frame.data.decode() == event.text


def test_the_frame_writer_is_found_only_where_the_server_offers_it() -> None:
    writer = RecordingWriter()
    offered = {"extensions": {"resource_api.frame_writer": {"writer": writer}}}
    assert frame_writer(offered) is writer
    assert frame_writer({"extensions": {"websocket.http.response": {}}}) is None
    assert frame_writer({}) is None


@pytest.mark.asyncio
async def test_one_pass_writes_every_subscriber_the_same_frames_once() -> None:
    broker = InProcessBroker()
    writers = [RecordingWriter() for _ in range(3)]
    async with contextlib.AsyncExitStack() as subscribed:
        for writer in writers:
            await subscribed.enter_async_context(broker.subscribe(writer=writer))
        events = [created(1), created(2)]
        await broker.publish(events[:1])
        await broker.publish(events[1:])  # before the pass: goes with it
        await asyncio.sleep(0)
    assert all(writer.writes == [events[0].frame + events[1].frame] for writer in writers)
    assert writers[0].writes[0] is writers[1].writes[0]  # built once, for all


@pytest.mark.asyncio
async def test_after_a_slow_pass_the_next_waits_and_takes_what_came_meanwhile() -> None:
    broker = InProcessBroker()
    writer = RecordingWriter(write_seconds=0.02)
    async with broker.subscribe(writer=writer):
        await broker.publish([created(1)])
        await asyncio.sleep(0)
        assert len(writer.writes) == 1
        paused_from = time.monotonic()
        await broker.publish([created(2)])
        await broker.publish([created(3)])
        await asyncio.sleep(0.01)
        assert len(writer.writes) == 1  # still pausing: FAN_OUT_PAUSE times 20 ms
        deadline = time.monotonic() + 5
        while len(writer.writes) == 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        paused = time.monotonic() - paused_from
    assert writer.writes[1] == created(2).frame + created(3).frame
    assert paused >= FAN_OUT_PAUSE * 0.02 * 0.9


@pytest.mark.asyncio
async def test_one_slow_pass_among_quick_ones_pauses_the_next_by_the_smoothed_cost() -> None:
    """A pass four times slower than the ones before (a collection, a burst) pauses the next
    for FAN_OUT_PAUSE times the passes' smoothed cost, not its own: 50 ms, not 200."""
    broker = InProcessBroker()
    writer = RecordingWriter(write_seconds=0.01)
    async with broker.subscribe(writer=writer):
        for resource_id in range(1, 4):  # passes of 10 ms
            await broker.publish([created(resource_id)])
            await written(writer, resource_id)
        writer.write_seconds = 0.04
        await broker.publish([created(4)])
        await written(writer, 4)
        paused_from = time.monotonic()
        writer.write_seconds = 0.0
        await broker.publish([created(5)])
        await written(writer, 5)
        paused = time.monotonic() - paused_from
    smoothed = 0.01 + PASS_SMOOTHING * (0.04 - 0.01)
    assert FAN_OUT_PAUSE * smoothed * 0.8 <= paused < FAN_OUT_PAUSE * 0.04 * 0.7


@pytest.mark.asyncio
async def test_each_pass_is_counted_with_the_time_it_held_the_loop() -> None:
    """What an operator sees of the fan-out's cost (`fan_out_pass_seconds`): one observation
    per pass, however many subscribers and events, and its time."""

    def passes() -> tuple[float, float]:
        count = REGISTRY.get_sample_value("fan_out_pass_seconds_count") or 0.0
        return count, REGISTRY.get_sample_value("fan_out_pass_seconds_sum") or 0.0

    broker = InProcessBroker()
    count_before, seconds_before = passes()
    await broker.publish([created(1)])  # nobody subscribed: no pass
    assert passes() == (count_before, seconds_before)
    slow, quick = RecordingWriter(write_seconds=0.02), RecordingWriter()
    async with broker.subscribe(writer=slow), broker.subscribe(writer=quick):
        await broker.publish([created(2), created(3)])
        await written(quick, 1)
    count, seconds = passes()
    assert count == count_before + 1
    assert 0.02 <= seconds - seconds_before < 1


@pytest.mark.asyncio
async def test_after_a_quick_pass_the_next_follows_within_moments() -> None:
    broker = InProcessBroker()
    writer = RecordingWriter()
    async with broker.subscribe(writer=writer):
        for resource_id in range(1, 4):
            await broker.publish([created(resource_id)])
            await written(writer, resource_id, within=0.5)
    assert writer.writes == [created(n).frame for n in range(1, 4)]


@pytest.mark.asyncio
async def test_a_subscriber_whose_socket_holds_too_much_is_dropped() -> None:
    def lost() -> float:
        sample = REGISTRY.get_sample_value("events_lost_total", {"reason": "subscriber_overflow"})
        return sample or 0.0

    broker = InProcessBroker()
    slow, keeping_up = RecordingWriter(), RecordingWriter()
    lost_before = lost()
    async with broker.subscribe(writer=slow) as dropped, broker.subscribe(writer=keeping_up):
        slow.unsent = SUBSCRIBER_BUFFER_BYTES  # at the limit: still written to
        await broker.publish([created(1)])
        await asyncio.sleep(0)
        slow.unsent = SUBSCRIBER_BUFFER_BYTES + 1
        await broker.publish([created(2), created(3)])
        await asyncio.wait_for(dropped.overflowed(), 1)
        slow.unsent = 0  # caught up, too late: dropped is dropped
        await broker.publish([created(4)])
        await written(keeping_up, 3)
    assert slow.writes == [created(1).frame]
    assert len(keeping_up.writes) == 3
    assert lost() == lost_before + 2

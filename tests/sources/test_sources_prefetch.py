"""The prefetch thread: order, bounded read-ahead, errors, prompt stop, exact positions."""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from css_rs.errors import InputError
from css_rs.sources import Chunk, Prefetcher, SyntheticSource
from css_rs.sources.base import Cursor
from hf_server import Fault, HubServer, text_rows, texts_of
from source_helpers import FAST_HTTP, read_all, rows_source


class Events:
    """One event per produced item, so tests wait for the producer instead of sleeping."""

    def __init__(self) -> None:
        self.produced: dict[int, threading.Event] = {}
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def event(self, index: int) -> threading.Event:
        with self.lock:
            return self.produced.setdefault(index, threading.Event())

    def count(self) -> int:
        with self.lock:
            return sum(e.is_set() for e in self.produced.values())

    def numbers(self, limit: int | None = None) -> Iterator[int]:
        index = 0
        try:
            while limit is None or index < limit:
                self.event(index).set()
                yield index
                index += 1
        finally:
            self.closed.set()


def test_items_arrive_in_order() -> None:
    events = Events()
    assert list(Prefetcher(lambda: events.numbers(50), depth=3)) == list(range(50))


def test_read_ahead_is_bounded() -> None:
    events = Events()
    depth = 2
    with Prefetcher(lambda: events.numbers(), depth=depth) as prefetcher:
        # depth items queued plus one in the producer's hand, blocked on the full queue.
        assert events.event(depth).wait(5)
        assert not events.event(depth + 1).wait(0.2)
        for consumed in range(1, 20):
            next(prefetcher)
            assert events.count() <= consumed + depth + 1


def test_errors_are_reraised_unchanged_after_the_items_before_them() -> None:
    failure = InputError("the third item is bad")

    def failing() -> Iterator[int]:
        yield 1
        yield 2
        raise failure

    received = []
    with pytest.raises(InputError) as caught:
        for item in Prefetcher(failing):
            received.append(item)
    assert caught.value is failure
    assert received == [1, 2]


def test_close_stops_the_thread_and_closes_the_iterator() -> None:
    events = Events()
    prefetcher = Prefetcher(lambda: events.numbers(), depth=2)
    assert next(prefetcher) == 0
    prefetcher.close()
    assert events.closed.wait(2)
    prefetcher.thread.join(2)
    assert not prefetcher.thread.is_alive()
    with pytest.raises(StopIteration):
        next(prefetcher)


def test_invalid_depth() -> None:
    with pytest.raises(ValueError, match="prefetch depth = 0 is invalid"):
        Prefetcher(lambda: iter([1]), depth=0)


def prefetch_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("css-rs-prefetch")}


def assert_threads_end(before: set[threading.Thread], within: float = 2.0) -> None:
    """Every prefetch thread started since ``before`` ends within ``within`` seconds."""
    for thread in prefetch_threads() - before:
        thread.join(within)
    assert prefetch_threads() - before == set()


def test_keyboard_interrupt_in_the_consumer_stops_the_thread() -> None:
    before = prefetch_threads()
    source = SyntheticSource(10_000, batch_size=10)
    with pytest.raises(KeyboardInterrupt):
        for _batch in source.iter_batches(prefetch=3):
            raise KeyboardInterrupt
    assert_threads_end(before)
    assert source.position["document"] == 10


def test_break_stops_the_thread_and_resume_continues_exactly() -> None:
    before = prefetch_threads()
    source = SyntheticSource(95, batch_size=10, max_doc_length=0)
    received: list[str] = []
    for batch in source.iter_batches(prefetch=4):
        received += batch.documents
        if len(received) == 30:
            break
    assert_threads_end(before)
    received += read_all(source, prefetch=4)  # the same source continues at its position
    assert received == read_all(SyntheticSource(95, batch_size=10, max_doc_length=0))


class ObservedSource(SyntheticSource):
    """A synthetic source that signals each chunk the (prefetch) reader produced."""

    def __init__(self, events: Events, **options: object) -> None:
        self.events = events
        super().__init__(**options)  # type: ignore[arg-type]

    def _read(self, cursor: Cursor) -> Iterator[Chunk]:
        for index, chunk in enumerate(super()._read(cursor)):
            yield chunk
            self.events.event(index).set()


def test_position_is_that_of_the_batch_held_not_of_the_read_ahead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("css_rs.sources.synthetic.GENERATE_AT_ONCE", 5)
    events = Events()
    source = ObservedSource(events, num_documents=100, batch_size=5)
    iterator = source.iter_batches(prefetch=3)
    first = next(iterator)
    assert events.event(3).wait(5)  # the thread has read well past the first batch
    assert (
        source.position
        == first.position
        == {
            "source": "synthetic",
            "document": 5,
            "batches": 1,
            "skipped": 0,
        }
    )
    second = next(iterator)
    assert source.position == second.position and second.position["document"] == 10
    iterator.close()
    assert source.position == second.position


def test_errors_of_a_network_source_cross_the_thread(hub: HubServer) -> None:
    hub.add_dataset("org/data", {("default", "train"): text_rows(5)})
    with pytest.raises(InputError, match="split 'nope' does not exist"):
        read_all(rows_source(hub, "org/data", split="nope"), prefetch=2)


def test_closing_during_a_long_backoff_is_prompt(hub: HubServer) -> None:
    rows = text_rows(200)
    hub.add_dataset("org/data", {("default", "train"): rows})
    patient = replace(FAST_HTTP, backoff_factor=30.0, backoff_max=30.0)
    source = rows_source(hub, "org/data", batch_size=10, http=patient)
    before = prefetch_threads()
    iterator = source.iter_batches(prefetch=2)
    assert next(iterator).documents == texts_of(rows)[:10]
    # Pages 2 and 3 queued, page 4 in the thread's hand: it waits for a free slot.
    assert hub.wait_for_requests("/rows", 4)
    hub.faults.schedule("/rows", *[Fault.truncated_json()] * 20)
    assert next(iterator).documents == texts_of(rows)[10:20]  # frees a slot: the thread reads on
    assert hub.wait_for_requests("/rows", 5)  # ...page 5 has a bad body: it backs off 30 s
    started = time.monotonic()
    iterator.close()
    assert_threads_end(before, within=3)
    assert time.monotonic() - started < 3
    assert source.position["offset"] == 20
    hub.faults.clear()
    assert read_all(source) == texts_of(rows)[20:]  # waits are normal again after a close


def test_ctrl_c_during_a_hung_request_does_not_hang(hub: HubServer) -> None:
    rows = text_rows(40)
    hub.add_dataset("org/data", {("default", "train"): rows})
    patient = replace(FAST_HTTP, read_timeout=30.0)
    source = rows_source(hub, "org/data", batch_size=10, http=patient)
    hub.faults.schedule("/rows", Fault.slow(30.0))
    interrupted_at: list[float] = []

    def press_ctrl_c() -> None:
        if hub.wait_for_requests("/rows", 1):
            interrupted_at.append(time.monotonic())
            _thread.interrupt_main()

    helper = threading.Thread(target=press_ctrl_c, daemon=True)
    helper.start()
    # The consumer waits for its first batch while the thread is stuck in the request.
    with pytest.raises(KeyboardInterrupt):
        read_all(source, prefetch=2)
    assert interrupted_at and time.monotonic() - interrupted_at[0] < 2
    assert source.position["offset"] == 0
    helper.join(1)

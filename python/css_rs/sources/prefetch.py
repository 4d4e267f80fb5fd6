"""Run an iterator in a background thread, a few items ahead of its consumer.

``Prefetcher(make_iterator, depth)`` is itself an iterator. A daemon thread builds the iterator
with ``make_iterator()`` (so generators start, run and close in that thread) and puts its items
on a queue of ``depth`` items; the consumer takes them in order.

- **Errors** raised by the iterator in the thread are re-raised in the consumer, the same
  exception object, after the items produced before it.
- **Stopping**: ``close()`` (also called by ``with`` and when a consuming generator is closed,
  e.g. on ``break`` or ``KeyboardInterrupt``) sets a stop event; the thread notices it within
  ``poll_seconds`` of its next queue operation and closes its iterator. Queue operations on both
  sides use timeouts, so neither side can block forever on the other. The thread is a daemon: one
  stuck inside a long network call cannot keep the process alive.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Iterator
from typing import Any, Callable, Generic, Optional, TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = "item", "end", "error"
_thread_numbers = itertools.count(1)


class Prefetcher(Generic[T]):
    """Iterates ``make_iterator()`` in a background thread, up to ``depth`` items ahead."""

    def __init__(
        self,
        make_iterator: Callable[[], Iterator[T]],
        depth: int = 2,
        *,
        poll_seconds: float = 0.05,
        join_seconds: float = 1.0,
        on_stop: Optional[Callable[[], None]] = None,
    ) -> None:
        if depth < 1:
            raise ValueError(f"prefetch depth = {depth} is invalid: must be an integer >= 1")
        self._make_iterator = make_iterator
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._poll = poll_seconds
        self._join = join_seconds
        self._on_stop = on_stop
        self._finished = False
        self.thread = threading.Thread(
            target=self._run, name=f"css-rs-prefetch-{next(_thread_numbers)}", daemon=True
        )
        self.thread.start()

    # --- producer side (background thread) -------------------------------------------------
    def _run(self) -> None:
        iterator: Optional[Iterator[T]] = None
        try:
            iterator = self._make_iterator()
            for item in iterator:
                if not self._offer((_ITEM, item)):
                    return
            self._offer((_END, None))
        except BaseException as e:  # handed to the consumer, which re-raises it
            self._offer((_ERROR, e))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def _offer(self, message: tuple[str, Any]) -> bool:
        """Puts ``message`` on the queue unless stopped first; True when it was put."""
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=self._poll)
                return True
            except queue.Full:
                continue
        return False

    # --- consumer side -------------------------------------------------------------------
    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        kind, value = self._take()
        if kind == _ITEM:
            return value
        self._finished = True
        self.close()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def _take(self) -> tuple[str, Any]:
        while True:
            try:
                return self._queue.get(timeout=self._poll)
            except queue.Empty:
                if not self.thread.is_alive() and self._queue.empty():
                    # Only possible if the thread was killed from outside; never hang on it.
                    raise RuntimeError("the prefetch thread ended without a result") from None

    def close(self) -> None:
        """Stops the thread (promptly, see module doc) and waits briefly for it to end."""
        self._finished = True
        self._stop.set()
        if self._on_stop is not None:
            self._on_stop()
        if self.thread is not threading.current_thread():
            self.thread.join(self._join)

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

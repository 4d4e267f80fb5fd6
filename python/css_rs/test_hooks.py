"""Hold points for the test suite, kept out of the pipeline's code.

The suite kills and interrupts real ``css-rs train`` processes at exactly known moments; the
process must then say where it is and wait, which only the process itself can do. So the
mechanism ships, switched on only by ``CSS_RS_TEST_HOLD`` / ``CSS_RS_TEST_STEP_SECONDS``, and
the pipeline only calls ``hooks.reached(event)`` and reads ``hooks.step_seconds``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Optional

# How long one training step lasts between checks for Ctrl+C and checkpoints (the engine
# releases the GIL for this long).
DEFAULT_STEP_SECONDS = 0.5


class TestHooks:
    """Deterministic interruption points for the test suite (not a user feature).

    ``CSS_RS_TEST_HOLD=EVENT:N`` makes the process print ``[test-hold] EVENT N`` on stderr at
    the N-th occurrence of EVENT and then wait forever, so a test can send SIGINT or SIGKILL at
    an exactly known moment instead of sleeping and hoping. Events: ``batch`` (a batch was
    cached and counted), ``checkpoint`` (sidecars written, manifest not yet), ``convert`` (a
    chunk was encoded), ``step`` (a training step ended), ``saved`` (model written, checkpoint
    not yet deleted), and ``any`` (any of these). ``CSS_RS_TEST_STEP_SECONDS`` shortens training
    steps so that small test corpora still take many steps.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self, hold: Optional[tuple[str, int]] = None, step_seconds: float = DEFAULT_STEP_SECONDS
    ):
        self.hold = hold
        self.step_seconds = step_seconds
        self.counts: dict[str, int] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TestHooks:
        hold = None
        spec = environ.get("CSS_RS_TEST_HOLD", "")
        if spec:
            event, _, count = spec.partition(":")
            hold = (event, int(count or "1"))
        step = float(environ.get("CSS_RS_TEST_STEP_SECONDS") or DEFAULT_STEP_SECONDS)
        return cls(hold, step)

    def reached(self, event: str) -> None:
        if self.hold is None:
            return
        for key in (event, "any"):
            self.counts[key] = self.counts.get(key, 0) + 1
            if self.hold == (key, self.counts[key]):
                print(f"[test-hold] {event} {self.counts[key]}", file=sys.stderr, flush=True)
                while True:  # until the test's signal arrives
                    time.sleep(3600)

"""A rollout: the pending targets in a canary group, then waves, `parallel` at a time.

The canary runs first, alone with its own targets; if any of them fails nothing else runs (it is
what a canary is for). Then each wave in turn. With on_error=stop, a failure lets the targets
already running finish and starts no other; with on_error=continue every target is tried.
SIGTERM or SIGINT stops the rollout the same way, and each running worker is sent the signal:
the runner cancels its statement on the server and releases that target's lock.
"""

import queue
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..authoring.drift import DRIFT_SAYS
from .report import (
    AT_HEAD,
    DONE,
    DRIFTED,
    FAILED,
    INTERRUPTED,
    NOT_RUN,
    UNREADABLE,
    UPGRADED,
    Outcome,
)
from .status import Found
from .targets import Target
from .workers import Worker, job_for


@dataclass(frozen=True)
class Policy:
    parallel: int = 4
    canary: int = 1
    wave: int = 0  # targets per wave after the canary; 0: all the rest in one
    stop_on_error: bool = True


def waves(pending: list[Target], policy: Policy) -> list[tuple[str, list[Target]]]:
    """The groups in rollout order, each with its name in the report."""
    groups: list[tuple[str, list[Target]]] = []
    rest = pending
    if policy.canary and len(pending) > policy.canary:
        groups.append(("canary", pending[: policy.canary]))
        rest = pending[policy.canary :]
    size = policy.wave or len(rest) or 1
    for number, start in enumerate(range(0, len(rest), size), 1):
        groups.append((f"wave {number}", rest[start : start + size]))
    return groups


def outcome_of(command: str, error: str | None) -> str:
    if command == "upgrade":
        return FAILED if error else UPGRADED
    if error is None:
        return AT_HEAD
    return DRIFTED if error.startswith(DRIFT_SAYS) else UNREADABLE


@dataclass
class Rollout:
    package: str
    command: str  # "upgrade", or "check" (fleet status --drift)
    heads: tuple[str, ...]  # the scripts' heads: where an upgrade that ran stands
    policy: Policy
    told: Callable[[Outcome], None]  # called as each target ends
    stopping: threading.Event = field(default_factory=threading.Event)
    signals: list[int] = field(default_factory=list)
    _idle: "queue.Queue[Worker]" = field(default_factory=queue.Queue)
    _all: list[Worker] = field(default_factory=list)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def run(self, pending: list[Target], found: dict[Target, Found]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self._stopped_by_signals(), ThreadPoolExecutor(self.policy.parallel) as pool:
            try:
                for name, group in waves(pending, self.policy):
                    if self.stopping.is_set():
                        outcomes += [self._not_run(t, found, name) for t in group]
                        continue
                    outcomes += pool.map(lambda t, n=name: self._one(t, found, n), group)
            finally:
                for worker in self._all:
                    worker.close()
        return outcomes

    def _one(self, target: Target, found: dict[Target, Found], wave: str) -> Outcome:
        if self.stopping.is_set():
            return self._not_run(target, found, wave)
        worker = self._worker()
        result = worker.run(job_for(target, self.command))
        before = found[target].heads
        if result is None:  # the worker exited: a signal, or a crash
            status = worker.close()
            why = (
                f"stopped by {signal.Signals(self.signals[0]).name}"
                if self.signals
                else f"the worker process exited with status {status}"
            )
            outcome = Outcome(target.label, INTERRUPTED, before, None, 0.0, why, wave)
        else:
            self._idle.put(worker)
            error = result["error"]
            if self.command == "check":
                after = before
            elif error is None:
                after = self.heads
            else:
                after = tuple(result["after"]) if result["after"] is not None else None
            outcome = Outcome(
                target.label,
                outcome_of(self.command, error),
                before,
                after,
                result["seconds"],
                error,
                wave,
            )
        if outcome.outcome not in DONE and (wave == "canary" or self.policy.stop_on_error):
            self.stopping.set()  # the targets running finish; no other starts
        self.told(outcome)
        return outcome

    def _not_run(self, target: Target, found: dict[Target, Found], wave: str) -> Outcome:
        heads = found[target].heads
        return Outcome(target.label, NOT_RUN, heads, heads, 0.0, None, wave)

    def _worker(self) -> Worker:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            worker = Worker(self.package)
            with self._guard:
                self._all.append(worker)
            return worker

    @contextmanager
    def _stopped_by_signals(self) -> Iterator[None]:
        def handle(signum: int, _frame: object) -> None:
            self.signals.append(signum)
            self.stopping.set()
            with self._guard:
                for worker in self._all:
                    worker.signal(signum)

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

"""The server's clock and where its requests come from: real threads on ``perf_counter``, or a simulation.

The serving loop (``bench.serving.server``) asks a ``RequestSource`` for the next request with a
deadline and times batches on a ``Clock``. ``ThreadedSource`` is the real thing: a load-generator
thread sleeps until each scheduled arrival and puts the request in a queue, apart from the serving
loop, so a server that is busy cannot delay the arrivals it will be charged for.
``SimulatedSource`` delivers the same schedule on a ``VirtualClock`` that a simulated model advances
by its service time: the same loop, deterministic and instant, which is how the tests check
queueing, batching limits and the peak search against a server whose capacity is known.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Request:
    """One request: its index, scheduled arrival and actual issue time (server-clock seconds from the load's start)."""

    request_id: int
    arrival_s: float
    issued_s: float = math.nan


class Clock(Protocol):
    def now(self) -> float: ...


class RequestSource(Protocol):
    """The queue the server takes requests from."""

    def get(self, deadline_s: float) -> Request | None:
        """The next queued request, waiting for one until ``deadline_s`` (None: none came by then)."""
        ...

    def exhausted(self) -> bool:
        """Every scheduled request has been handed out."""
        ...

    def pending(self) -> list[Request]:
        """Requests issued but never taken (the server stopped first): dropped."""
        ...

    def capacity(self) -> int:
        """How many requests it issues at most (a closed loop: an estimate; the log grows past it)."""
        ...


class RealClock:
    """Seconds since ``start`` on ``perf_counter``."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self.start


class VirtualClock:
    """Simulated time: it moves only when told (a simulated model's service time, a wait for an arrival)."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def advance_to(self, t: float) -> None:
        self.t = max(self.t, t)

    def advance(self, dt: float) -> None:
        self.t += dt


class SimulatedSource:
    """The schedule delivered on a virtual clock: a request is in the queue from its arrival on."""

    def __init__(self, arrivals: np.ndarray, clock: VirtualClock) -> None:
        self.arrivals = arrivals
        self.clock = clock
        self.next = 0

    def get(self, deadline_s: float) -> Request | None:
        if self.next >= len(self.arrivals):
            return None
        arrival = float(self.arrivals[self.next])
        if arrival > max(deadline_s, self.clock.now()):  # not yet arrived, and not by the deadline
            if math.isfinite(deadline_s):
                self.clock.advance_to(deadline_s)
            return None
        self.clock.advance_to(arrival)
        request = Request(self.next, arrival, arrival)
        self.next += 1
        return request

    def exhausted(self) -> bool:
        return self.next >= len(self.arrivals)

    def capacity(self) -> int:
        return len(self.arrivals)

    def pending(self) -> list[Request]:
        # what has arrived by now but was never taken; later arrivals were never issued, so they are dropped too
        return [Request(i, float(a), float(a)) for i, a in enumerate(self.arrivals) if i >= self.next]


class ThreadedSource:
    """A load-generator thread issuing the schedule in real time into a queue the serving thread reads.

    The generator sleeps until each arrival (a coarse ``sleep`` then a short spin: ``time.sleep`` alone
    oversleeps by up to a millisecond or more) and records the issue time beside the schedule; a
    request issued late is still charged from its scheduled time.
    """

    SPIN_S = 0.0005  # the last half millisecond before an arrival is spun, not slept

    def __init__(self, arrivals: np.ndarray, clock: RealClock) -> None:
        self.arrivals = arrivals
        self.clock = clock
        self.queue: queue.Queue[Request] = queue.Queue()
        self.stop = threading.Event()
        self.issued = 0
        self.thread = threading.Thread(target=self._generate, name="genbench-load", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=5)

    def _generate(self) -> None:
        for i, arrival in enumerate(self.arrivals):
            while not self.stop.is_set():
                wait = float(arrival) - self.clock.now()
                if wait <= 0:
                    break
                if wait > self.SPIN_S:
                    self.stop.wait(wait - self.SPIN_S)
            if self.stop.is_set():
                return
            self.queue.put(Request(i, float(arrival), self.clock.now()))
            self.issued = i + 1

    def get(self, deadline_s: float) -> Request | None:
        while True:
            remaining = deadline_s - self.clock.now()
            try:
                if remaining <= 0:
                    return self.queue.get_nowait()
                return self.queue.get(timeout=min(remaining, 0.05))
            except queue.Empty:
                if remaining <= 0 or self.exhausted():
                    return None

    def exhausted(self) -> bool:
        return self.issued >= len(self.arrivals) and self.queue.empty()

    def capacity(self) -> int:
        return len(self.arrivals)

    def pending(self) -> list[Request]:
        self.close()  # the generator stops first: a request put while the queue drains would be lost
        left: list[Request] = []
        while True:
            try:
                left.append(self.queue.get_nowait())
            except queue.Empty:
                break
        issued = {r.request_id for r in left}
        never = [
            Request(i, float(a)) for i, a in enumerate(self.arrivals) if i >= self.issued and i not in issued
        ]
        return left + never


class ClosedLoopSource:
    """Single-stream as a source: the next request arrives the moment the server asks, until ``end_s``.

    A soak of the single-stream scenario runs through the same loop and monitor as a server
    soak; its latency is then the call's own time (arrival = issue = when the last call ended).
    """

    def __init__(self, clock: Clock, end_s: float, expected: int = 1024) -> None:
        self.clock = clock
        self.end_s = end_s
        self.expected = expected  # calls the loop expects to make (the log is sized for 1.5x)
        self.next = 0

    def get(self, deadline_s: float) -> Request | None:
        now = self.clock.now()
        if now >= self.end_s:
            return None
        request = Request(self.next, now, now)
        self.next += 1
        return request

    def exhausted(self) -> bool:
        return self.clock.now() >= self.end_s

    def pending(self) -> list[Request]:
        return []

    def capacity(self) -> int:
        return int(1.5 * self.expected) + 16

"""Fake host clock and asynchronous GPU for testing timers and the stopping rule on CPU."""

from __future__ import annotations


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


class FakeGpu:
    """An asynchronous device: kernels queue on the device timeline; the host returns at once.

    ``synchronize`` blocks the host until the queue drains and costs ``sync_cost_s`` of host time
    on top, like cudaDeviceSynchronize's own overhead.
    """

    def __init__(self, clock: FakeClock, sync_cost_s: float) -> None:
        self.clock = clock
        self.sync_cost_s = sync_cost_s
        self.busy_until = 0.0

    def launch(self, kernel_s: float) -> None:
        self.busy_until = max(self.busy_until, self.clock.t) + kernel_s
        self.clock.advance(5e-6)  # launch overhead on the host

    def synchronize(self) -> None:
        self.clock.t = max(self.clock.t, self.busy_until) + self.sync_cost_s

    def make_event(self) -> FakeEvent:
        return FakeEvent(self)


class FakeEvent:
    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.when: float | None = None

    def record(self) -> None:  # an event completes when the queue reaches it
        self.when = max(self.gpu.busy_until, self.gpu.clock.t)

    def synchronize(self) -> None:
        assert self.when is not None
        self.gpu.clock.t = max(self.gpu.clock.t, self.when) + self.gpu.sync_cost_s

    def elapsed_time(self, end: FakeEvent) -> float:
        assert self.when is not None and end.when is not None
        return (end.when - self.when) * 1e3

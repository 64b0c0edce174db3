"""Step clocks: the arithmetic of a host clock, and the one-synchronize rule of device events, on CPU."""

from __future__ import annotations

import pytest

from bench.core.device import Device
from bench.measure.step_clock import EventStepClock, HostStepClock, step_clock_for
from tests.bench.measure.fakes import FakeClock


class RecordingEvent:
    """A device event that logs what is asked of it; it "completes" at the fake device time of its record."""

    def __init__(self, device: FakeDevice, index: int) -> None:
        self.device = device
        self.index = index
        self.when: float | None = None

    def record(self) -> None:
        self.when = self.device.now_ms
        self.device.log.append(("record", self.index))

    def synchronize(self) -> None:
        self.device.log.append(("synchronize", self.index))

    def elapsed_time(self, end: RecordingEvent) -> float:
        assert self.when is not None and end.when is not None, "elapsed_time on an unrecorded event"
        return end.when - self.when


class FakeDevice:
    """Device time in ms that the test advances, and the log of every event call."""

    def __init__(self) -> None:
        self.now_ms = 0.0
        self.log: list[tuple[str, int]] = []
        self.made = 0

    def make_event(self) -> RecordingEvent:
        self.made += 1
        return RecordingEvent(self, self.made - 1)

    def synchronizes(self) -> list[int]:
        return [i for what, i in self.log if what == "synchronize"]


def test_host_step_clock_gives_ms_from_start_to_each_mark() -> None:
    clock = FakeClock()
    syncs: list[float] = []
    steps = HostStepClock(clock=clock, synchronize=lambda: syncs.append(clock.t))
    clock.advance(7.0)  # time before start does not count
    steps.start()
    for seconds in (0.002, 0.003, 0.0005):
        clock.advance(seconds)
        steps.mark()
    assert steps.times_ms() == pytest.approx([2.0, 5.0, 5.5])
    assert len(syncs) == 4  # start and every mark wait for the device (a no-op on CPU)


def test_host_step_clock_starts_afresh_each_loop() -> None:
    clock = FakeClock()
    steps = HostStepClock(clock=clock)
    steps.start()
    clock.advance(0.010)
    steps.mark()
    steps.start()
    clock.advance(0.001)
    steps.mark()
    assert steps.times_ms() == pytest.approx([1.0])


def test_event_step_clock_synchronizes_once_on_the_last_event() -> None:
    device = FakeDevice()
    steps = EventStepClock(device.make_event)
    device.now_ms = 100.0
    steps.start()
    for ms in (4.0, 1.5, 2.5):
        device.now_ms += ms
        steps.mark()
    assert device.synchronizes() == []  # mark() never waits
    assert steps.times_ms() == pytest.approx([4.0, 5.5, 8.0])  # elapsed from the first event
    assert device.synchronizes() == [3]  # once, on the last of the loop's 4 events
    assert [what for what, _ in device.log].count("record") == 4


def test_event_step_clock_reuses_its_events_across_loops() -> None:
    device = FakeDevice()
    steps = EventStepClock(device.make_event)
    steps.start()
    for _ in range(3):
        device.now_ms += 1.0
        steps.mark()
    assert steps.times_ms() == pytest.approx([1.0, 2.0, 3.0])
    assert device.made == 4
    device.log.clear()
    device.now_ms = 50.0
    steps.start()  # a shorter loop: the first events are reused, none made
    for _ in range(2):
        device.now_ms += 2.0
        steps.mark()
    assert device.made == 4
    assert steps.times_ms() == pytest.approx([2.0, 4.0])  # not the stale third event of the first loop
    assert device.synchronizes() == [2]
    assert [i for what, i in device.log if what == "record"] == [0, 1, 2]
    device.log.clear()
    steps.start()  # a longer loop makes only the events it lacks
    for _ in range(5):
        device.now_ms += 1.0
        steps.mark()
    assert device.made == 6
    assert steps.times_ms() == pytest.approx([1.0, 2.0, 3.0, 4.0, 5.0])
    assert device.synchronizes() == [5]


def test_event_step_clock_without_a_mark_reads_nothing_and_waits_for_nothing() -> None:
    device = FakeDevice()
    steps = EventStepClock(device.make_event)
    steps.start()
    assert steps.times_ms() == []
    assert device.synchronizes() == []


def test_a_cpu_device_gets_the_host_clock() -> None:
    assert isinstance(step_clock_for(Device("cpu")), HostStepClock)

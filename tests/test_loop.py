"""Pieces of the training loop that need no Ray: the data-wait clock."""

from __future__ import annotations

import time

from avs.train.loop import WaitClock


def slow_items(count: int, delay: float):
    for item in range(count):
        time.sleep(delay)
        yield item


def test_wait_clock_counts_the_wait_for_items_not_the_work_on_them():
    clock = WaitClock()
    seen = []
    for item in clock.timed(slow_items(3, delay=0.05)):
        seen.append(item)
        time.sleep(0.1)  # the consumer's own work: not waiting
    assert seen == [0, 1, 2]
    assert 0.15 <= clock.seconds < 0.25


def test_wait_clock_keeps_counting_across_iterables_and_stops_on_exhaustion():
    clock = WaitClock()
    assert list(clock.timed([])) == []
    assert list(clock.timed(slow_items(2, delay=0.02))) == [0, 1]
    assert 0.04 <= clock.seconds < 0.2

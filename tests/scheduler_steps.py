"""Counting scheduler passes: how tests see that a task yields as often as it should."""

from __future__ import annotations

from collections import Counter

import trio
from trio.lowlevel import Task


class StepCounter(trio.abc.Instrument):
    """Counts how many times each task was scheduled (its steps)."""

    def __init__(self) -> None:
        self.steps: Counter[Task] = Counter()

    def before_task_step(self, task: Task) -> None:
        self.steps[task] += 1

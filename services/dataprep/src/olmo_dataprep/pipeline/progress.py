"""Per-stage timings (seconds and documents, reported in ``logs/timings-worker*.json`` and by
the benchmark) and the progress bars of a run."""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


class StageTimer:
    """Seconds and documents per stage name, summed over a worker's run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.docs: Counter[str] = Counter()

    @contextmanager
    def stage(self, name: str, docs: int = 1) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.docs[name] += docs


def progress_bar(total: int | None, desc: str, unit: str, quiet: bool) -> tqdm:
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=True,
        disable=quiet,
        file=sys.stderr,
        dynamic_ncols=True,
        mininterval=0.5,
    )

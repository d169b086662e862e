"""Resident memory of this process while something runs (Linux ``/proc/self/statm``).

``ru_maxrss`` is a high-water mark over the whole process life: a benchmark that builds large
inputs first reports their peak, not that of what it measures. :class:`RssSampler` samples the
current resident set on a background thread for as long as its ``with`` block runs.
"""

from __future__ import annotations

import resource
import threading
from types import TracebackType

_STATM = "/proc/self/statm"


def current_rss_mb() -> float | None:
    """Resident set size now, MiB; None where ``/proc/self/statm`` does not exist."""
    try:
        with open(_STATM, encoding="ascii") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize() / 2**20


class RssSampler:
    """``with RssSampler() as s: ...`` -> ``s.peak_mb``: the largest RSS seen inside, MiB.

    Sampled every ``period_s`` (and at the start and end of the block), so a spike shorter than
    the period can be missed; ``peak_mb`` is None without ``/proc``.

    Args:
        period_s: sampling period, seconds.
    """

    def __init__(self, period_s: float = 0.01) -> None:
        self.period_s = float(period_s)
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        rss = current_rss_mb()
        if rss is not None and (self.peak_mb is None or rss > self.peak_mb):
            self.peak_mb = rss

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

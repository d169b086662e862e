"""Latest-only scheduling: one thread answers the newest ready target whenever woken.

Callbacks call :meth:`LatestOnlyWorker.notify` after storing an input; the thread runs
:meth:`~facealign_ros.pipeline.core.Pipeline.try_step` until nothing is ready and hands each
result to ``on_result`` (e.g. the node's publisher). Inputs that arrive while it works replace
older ones, which the pipeline counts as ``stale``: latency stays bounded under overload.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from facealign_ros.pipeline.core import Pipeline
from facealign_ros.pipeline.result import FaceResult

LOG = logging.getLogger(__name__)


class LatestOnlyWorker:
    """A daemon thread driving a :class:`Pipeline`.

    Args:
        pipeline: the pipeline.
        on_result: called (in the worker thread) with every result; exceptions are logged.
        idle_s: wake-up period without notifications (lets waiting targets time out).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        on_result: Callable[[FaceResult], None],
        idle_s: float = 0.005,
    ) -> None:
        self.pipeline = pipeline
        self.on_result = on_result
        self.idle_s = float(idle_s)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the thread (no-op if running)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="facealign-worker", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Wake the worker: a new input was stored."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait for it (at most ``timeout_s``)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.idle_s)
            self._wake.clear()
            while not self._stop.is_set():
                result = self.pipeline.try_step()
                if result is None:
                    break
                try:
                    self.on_result(result)
                except Exception:  # noqa: BLE001 - a failing consumer must not stop the worker
                    LOG.exception("result consumer failed")

"""ElasticPool: threads that start on demand, are reused while idle and exit after a quiet period."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["ElasticPool"]

log = logging.getLogger(__name__)


class ElasticPool:
    """Run callables in worker threads: an idle worker takes the job, or a new one starts.

    Unlike a fixed pool, no job ever waits behind a long-running one (up to ``max_workers``, after
    which jobs queue). Used for oneway calls (ONEWAY_THREADED): each starts at once, like its own thread,
    without paying a thread start per call.

    With ``spawn_delay`` > 0 a job that finds no idle worker is queued for the busy workers instead of
    starting a thread at once, and a supervisor thread (alive while jobs wait) starts another worker
    whenever no worker has started a job for ``spawn_delay`` seconds: a burst of short jobs is then run
    by a few workers instead of a thread per job, and a job still waits at most about two
    ``spawn_delay`` behind long-running ones.
    """

    def __init__(self, name: str, max_workers: int = 1024, idle_timeout: float = 5.0, spawn_delay: float = 0.0) -> None:
        self.name = name
        self.max_workers = max_workers
        self.idle_timeout = idle_timeout
        self.spawn_delay = spawn_delay
        self._jobs: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._idle = 0
        self._workers = 0
        self._started = 0  # jobs taken by workers so far (the supervisor's measure of progress)
        self._supervised = False
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` soon in a worker thread; exceptions are logged, never raised here."""
        with self._cond:
            if self._closed:
                raise RuntimeError("pool is closed")
            self._jobs.append((fn, args))
            if self._idle > len(self._jobs) - 1:
                self._cond.notify()
                return
            if self._workers >= self.max_workers:
                return
            if self.spawn_delay > 0 and self._workers:  # let the busy workers take it, under supervision
                if self._supervised:
                    return
                self._supervised = True
                target = self._supervise
            else:
                self._workers += 1
                target = self._work
        threading.Thread(target=target, name=f"{self.name}-{self._workers}", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    if self._closed:
                        self._workers -= 1
                        return
                    self._idle += 1
                    woke = self._cond.wait(self.idle_timeout)
                    self._idle -= 1
                    if not woke and not self._jobs:
                        self._workers -= 1
                        return
                fn, args = self._jobs.popleft()
                self._started += 1
            try:
                fn(*args)
            except Exception:
                log.exception("uncaught exception in %s worker", self.name)

    def _supervise(self) -> None:
        """While jobs wait: start a worker whenever no job was started for ``spawn_delay`` seconds."""
        seen = -1
        while True:
            time.sleep(self.spawn_delay)
            with self._cond:
                if self._closed or not self._jobs:
                    self._supervised = False
                    return
                stalled = self._started == seen and not self._idle and self._workers < self.max_workers
                seen = self._started
                if not stalled:
                    continue
                self._workers += 1
            threading.Thread(target=self._work, name=f"{self.name}-{self._workers}", daemon=True).start()

    @property
    def workers(self) -> int:
        """Threads currently alive in the pool."""
        return self._workers

    def close(self) -> None:
        """Let workers exit once the queue is empty; submitted jobs still run."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


#: Threads running a call of a server type that lets other calls in while this one waits for a remote
#: reply (the multiplex server): thread ident -> its gate, an object with ``yield_during(fn, *args)``.
#: A proxy about to make a (two-way) remote call from such a thread runs it through the gate.
call_gates: dict[int, Any] = {}

"""ElasticPool: jobs never wait behind long-running ones for good; with spawn_delay a burst reuses workers."""

from __future__ import annotations

import threading

import pytest

from pyroplug.core.workers import ElasticPool


@pytest.mark.parametrize("spawn_delay", [0.0, 0.02])
def test_a_job_does_not_wait_behind_a_long_running_one(spawn_delay: float) -> None:
    pool = ElasticPool("test-pool", spawn_delay=spawn_delay)
    release = threading.Event()
    done = threading.Event()
    try:
        pool.submit(release.wait, 30)  # a long-running job holds its worker
        pool.submit(done.set)
        assert done.wait(10), "the second job waited behind the long-running one"
    finally:
        release.set()
        pool.close()


def test_chained_jobs_that_wait_for_each_other_all_run() -> None:
    """Each job waits for the next one: every one of them needs a worker of its own eventually."""
    pool = ElasticPool("test-pool", spawn_delay=0.01)
    events = [threading.Event() for _ in range(6)]
    try:
        for following in events[1:]:
            pool.submit(following.wait, 30)
        pool.submit(events[-1].set)
        assert events[-1].wait(10)
        assert pool.workers <= len(events)
    finally:
        for event in events:
            event.set()
        pool.close()


def test_a_burst_of_short_jobs_reuses_workers() -> None:
    pool = ElasticPool("test-pool", spawn_delay=0.05)
    count = 500
    lock = threading.Lock()
    finished = threading.Event()
    ran = [0]

    def job() -> None:
        with lock:
            ran[0] += 1
            if ran[0] == count:
                finished.set()

    try:
        for _ in range(count):
            pool.submit(job)
        assert finished.wait(30)
        assert pool.workers < count // 5  # a thread per job without spawn_delay
    finally:
        pool.close()


def test_submit_after_close_raises() -> None:
    pool = ElasticPool("test-pool", spawn_delay=0.02)
    pool.close()
    with pytest.raises(RuntimeError):
        pool.submit(print)

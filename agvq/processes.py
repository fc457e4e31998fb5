"""Worker processes that never outlive the stage: a process pool whose workers exit when their parent dies, and
that an interrupted stage (Ctrl-C, SIGTERM, an error) stops at once instead of running the queued tasks.

Workers ignore SIGINT and take the default SIGTERM action (the parent handles both and stops them), and a
watchdog thread in each worker exits it within a fraction of a second once its parent is gone (``kill -9`` of the
stage), so no worker is left blocked on a queue nobody will fill.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

PARENT_POLL_S = 0.2
"""How often a worker checks that its parent is alive."""


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(PARENT_POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(parent: int, initializer, initargs) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="agvq-parent-watch").start()
    if initializer is not None:
        initializer(*initargs)


def _stop_workers(pool: ProcessPoolExecutor, timeout: float = 30.0) -> None:
    """Cancel what is queued, terminate the running workers and wait for them (Python >= 3.14 has a method)."""
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(timeout)


@contextlib.contextmanager
def worker_pool(workers: int, initializer=None, initargs=(), mp_context=None):
    """A ProcessPoolExecutor of ``workers`` processes tied to this one: on success it is shut down normally; on any
    exception (including KeyboardInterrupt and a SIGTERM turned into one) the queued tasks are cancelled and the
    workers terminated before the exception goes on, so the caller's clean-up runs after the workers are gone."""
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp_context, initializer=_init_worker,
                               initargs=(os.getpid(), initializer, tuple(initargs)))
    try:
        yield pool
    except BaseException:
        _stop_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)

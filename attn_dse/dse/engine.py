"""Where a sweep's chunks run: in this process, on a local process pool, or on a Dask cluster.

A sweep is a map over independent chunks and a reduce of what each returns (counts, its
Pareto set, its best rows, rows for figures; `evaluate.Reduce`). A chunk writes its own rows
as a Parquet part, so points never travel back to the caller, and results are taken in
chunk order, so the reduce — and every file — is the same for one process, N processes or a
cluster. At most `window` chunks are in flight, so memory stays bounded however large the
sweep.
"""
from __future__ import annotations

import collections
import functools
import os

from attn_dse.errors import AttnDseError

SMALL = 200_000  # sweeps up to this many points run in this process: starting workers costs more


class Serial:
    """Every chunk in this process, one after another."""
    name = "serial"
    workers = 1

    def map(self, fn, job, tasks):
        keep_freed_memory()
        for t in tasks:
            yield fn(job, t)


class _Submitting:
    """Chunks submitted to an executor, at most `window` in flight, results in chunk order."""

    def map(self, fn, job, tasks):
        """fn(job, task) for each task (fn importable by name: it runs in other processes)."""
        pending: collections.deque = collections.deque()
        try:
            for t in tasks:
                pending.append(self._submit(fn, job, t))
                if len(pending) >= self.window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # interrupted or done: nothing more is started
            for f in pending:
                f.cancel()
            self._close()


class Pool(_Submitting):
    """A local pool of worker processes (spawned: no state shared with this one)."""
    name = "processes"

    def __init__(self, workers: int):
        import concurrent.futures
        import multiprocessing
        self.workers, self.window = workers, 2 * workers
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_setup)

    def _submit(self, fn, job, task):
        return self._pool.submit(fn, job, task)

    def _close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


class Dask(_Submitting):
    """An existing Dask cluster, reached through its scheduler (`dask scheduler`, a
    dask-jobqueue SLURMCluster, or a LocalCluster). Workers write parts to the output
    directory, so it must be on a filesystem they share."""
    name = "dask"

    def __init__(self, address: str, timeout_s: float = 10):
        try:
            from distributed import Client
        except ImportError:
            raise AttnDseError("--scheduler needs dask.distributed, which is not installed",
                               fix="pip install 'dask[distributed]'") from None
        try:
            self._client = Client(address, timeout=timeout_s, set_as_default=False)
        except (OSError, TimeoutError) as e:
            raise AttnDseError(f"cannot reach the Dask scheduler at {address!r} ({type(e).__name__})",
                               fix="start one (`dask scheduler`, then `dask worker ADDRESS` on each node) "
                                   "and pass its address, e.g. --scheduler tcp://10.0.0.1:8786") from None
        self.workers = max(1, sum(w.get("nthreads", 1) for w in self._client.scheduler_info()["workers"].values()))
        self.window = 2 * self.workers

    def _submit(self, fn, job, task):
        return self._client.submit(_run_on_dask, fn, job, task, pure=False)

    def _close(self):
        self._client.close()


def _one_thread():
    """A worker is one of many on the machine: Arrow's own thread pool (one thread per core by
    default) would oversubscribe the cores (measured: a 2-worker Dask sweep ran at 0.4x the pool)."""
    import pyarrow
    pyarrow.set_cpu_count(1)


@functools.cache
def keep_freed_memory():
    """Let glibc keep the memory a chunk frees for the next chunk instead of returning it to the
    system: a chunk allocates thousands of 50 000-row temporaries, and when each is mapped and
    unmapped afresh the kernel zeroes its pages again (measured at 1e6 points, one process: 304 k
    page faults and 0.8-1.1 s of system time on 3.9 s of user time; kept: 60 k and 0.2 s, 20% less
    wall time). Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 for its workers, the opposite.
    Peak memory is unchanged (it is the largest chunk's); elsewhere than glibc this does nothing."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: arrays up to 32 MB come from the heap
    mallopt(M_TRIM_THRESHOLD, 1 << 30)   # free memory at the heap's top is kept up to 1 GB


def _worker_setup():
    import signal
    _one_thread()
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent stops the sweep


def _run_on_dask(fn, job, task):
    _one_thread()
    keep_freed_memory()
    return fn(job, task)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_engine(workers: int | None = None, scheduler: str | None = None, points: int | None = None):
    """The engine for a sweep: Dask at `scheduler`; else `workers` processes (default: the
    cores), except that a sweep of at most SMALL points without an explicit `workers` runs here."""
    if scheduler:
        return Dask(scheduler)
    if workers is None:
        workers = cores() if points is None or points > SMALL else 1
    return Serial() if workers <= 1 else Pool(workers)

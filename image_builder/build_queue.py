"""A bounded queue of builds: at most ``concurrency`` at once, each with a timeout, cancellable.

The queue knows nothing of catalogs or builders: it runs ``run(key, log)`` for each submitted
key and calls ``fail(key, log, message)`` when a build times out, is cancelled or crashes.
Every build has a ``BuildLog`` that readers follow while it runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from .build_log import BuildLog

Run = Callable[[int, BuildLog], Awaitable[None]]
Fail = Callable[[int, BuildLog, str], Awaitable[None]]
log = logging.getLogger(__name__)


class QueueFull(Exception):
    """Too many builds are waiting; try again later."""


class BuildQueue:
    def __init__(
        self,
        run: Run,
        fail: Fail,
        *,
        concurrency: int = 1,
        timeout: float = 1800,
        max_pending: int = 100,
    ) -> None:
        self._run = run
        self._fail = fail
        self._slots = asyncio.Semaphore(concurrency)
        self.timeout = timeout
        self.max_pending = max_pending
        self.logs: dict[int, BuildLog] = {}
        self._tasks: dict[int, asyncio.Task] = {}

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def submit(self, key: int) -> BuildLog:
        """Queue build ``key`` (once; a key already queued keeps its place) and return its log."""
        if key in self._tasks:
            return self.logs[key]
        if len(self._tasks) >= self.max_pending:
            raise QueueFull(f"{len(self._tasks)} builds are waiting already; try again later")
        build_log = self.logs[key] = BuildLog()
        task = asyncio.get_running_loop().create_task(self._job(key, build_log))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))
        return build_log

    def cancel(self, key: int) -> bool:
        """Stop build ``key`` whether it waits or runs; False when it is not in the queue."""
        task = self._tasks.get(key)
        if task is None:
            return False
        task.cancel()
        return True

    def log_of(self, key: int) -> BuildLog | None:
        return self.logs.get(key)

    async def _job(self, key: int, build_log: BuildLog) -> None:
        try:
            async with self._slots:
                build_log.status = "building"
                async with asyncio.timeout(self.timeout):
                    await self._run(key, build_log)
        except TimeoutError:
            await self._stop(key, build_log, f"the build took longer than {self.timeout:g} s")
        except asyncio.CancelledError:
            await self._stop(key, build_log, "the build was cancelled")
        except Exception as error:  # a bug: record it on the build rather than lose it
            log.exception("build %s crashed", key)
            await self._stop(key, build_log, f"the builder crashed: {error!r}")
        finally:
            build_log.finished = True
            # Keep finished logs for late readers, but not forever.
            if len(self.logs) > 4 * self.max_pending:
                for old in [k for k, v in self.logs.items() if v.finished][: self.max_pending]:
                    self.logs.pop(old, None)

    async def _stop(self, key: int, build_log: BuildLog, message: str) -> None:
        build_log.line(f"Stopped: {message}")
        await asyncio.shield(self._fail(key, build_log, message))

    async def close(self) -> None:
        """Cancel everything and wait for it to wind down."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

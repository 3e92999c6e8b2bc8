"""The build queue: bounded concurrency, timeouts and cancellation, with tiny failing doubles."""

from __future__ import annotations

import asyncio

from kioskhub.image_builder.build_queue import BuildQueue, QueueFull


class Recorder:
    """Runs builds that sleep; records the most that ran at once and how each ended."""

    def __init__(self, seconds: float = 0.05):
        self.seconds = seconds
        self.running = 0
        self.most = 0
        self.failed: dict[int, str] = {}
        self.done: list[int] = []

    async def run(self, key, log):
        self.running += 1
        self.most = max(self.most, self.running)
        log.progress(50, "sleeping")
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.running -= 1
        log.finish("ready")
        self.done.append(key)

    async def fail(self, key, log, message):
        self.failed[key] = message


class CrashingBuild(Recorder):
    async def run(self, key, log):
        raise RuntimeError("boom")


def run(coro):
    return asyncio.run(coro)


def test_concurrency_is_bounded():
    async def scenario():
        recorder = Recorder()
        queue = BuildQueue(recorder.run, recorder.fail, concurrency=2, timeout=5)
        logs = [queue.submit(key) for key in range(5)]
        while queue.pending:
            await asyncio.sleep(0.01)
        return recorder, logs

    recorder, logs = run(scenario())
    assert recorder.most == 2
    assert sorted(recorder.done) == [0, 1, 2, 3, 4]
    assert all(log.finished and log.percent == 100 for log in logs)


def test_timeout_fails_the_build():
    async def scenario():
        recorder = Recorder(seconds=5)
        queue = BuildQueue(recorder.run, recorder.fail, timeout=0.1)
        log = queue.submit(1)
        while queue.pending:
            await asyncio.sleep(0.01)
        return recorder, log

    recorder, log = run(scenario())
    assert recorder.failed == {1: "the build took longer than 0.1 s"}
    assert log.lines[-1] == "Stopped: the build took longer than 0.1 s"


def test_cancel_a_running_and_a_waiting_build():
    async def scenario():
        recorder = Recorder(seconds=5)
        queue = BuildQueue(recorder.run, recorder.fail, concurrency=1, timeout=10)
        queue.submit(1)
        queue.submit(2)
        await asyncio.sleep(0.05)
        assert queue.cancel(2) and queue.cancel(1)
        assert not queue.cancel(99)
        while queue.pending:
            await asyncio.sleep(0.01)
        return recorder

    recorder = run(scenario())
    assert recorder.failed == {1: "the build was cancelled", 2: "the build was cancelled"}
    assert recorder.running == 0


def test_a_crash_is_recorded_and_the_queue_is_bounded():
    async def scenario():
        recorder = CrashingBuild()
        queue = BuildQueue(recorder.run, recorder.fail, max_pending=1)
        queue.submit(1)
        assert queue.submit(1) is queue.log_of(1)  # already queued: same build
        try:
            queue.submit(2)
        except QueueFull as error:
            refused = str(error)
        while queue.pending:
            await asyncio.sleep(0.01)
        return recorder, refused

    recorder, refused = run(scenario())
    assert recorder.failed == {1: "the builder crashed: RuntimeError('boom')"}
    assert "1 builds are waiting" in refused

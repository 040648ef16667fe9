"""Run guard checks off the event loop, batching the checks of concurrent requests into one call."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import anyio.to_thread

from bastion.guard import Verdict

Item = str | tuple[str, str]  # a prompt, or (prompt, response)


class GuardBatcher:
    """Queue check items; `workers` background tasks each take everything queued and run one
    `guard.check_batch` in a thread. While a batch runs, new items pile up and form the next batch,
    so batches grow with load and a lone request is not delayed by a collection window."""

    def __init__(self, guard: Any, max_batch: int = 64, workers: int = 1) -> None:
        self.guard = guard
        self.max_batch = max_batch
        self.workers = workers
        self._q: asyncio.Queue[tuple[list[Item], asyncio.Future]] | None = None
        self._tasks: list[asyncio.Task] = []
        self._limiter = anyio.CapacityLimiter(workers)

    def _ensure_started(self) -> asyncio.Queue:
        if self._q is None or not self._tasks or all(t.done() for t in self._tasks):
            self._q = asyncio.Queue()
            self._tasks = [asyncio.create_task(self._worker(), name=f"bastion-guard-{i}")
                           for i in range(self.workers)]
        return self._q

    async def check(self, items: list[Item]) -> list[Verdict]:
        if not items:
            return []
        q = self._ensure_started()
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        await q.put((items, fut))
        return await fut

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []
        self._q = None

    async def _worker(self) -> None:
        assert self._q is not None
        q = self._q
        while True:
            batch = [await q.get()]
            size = len(batch[0][0])
            while size < self.max_batch and not q.empty():
                nxt = q.get_nowait()
                batch.append(nxt)
                size += len(nxt[0])
            batch = [(items, fut) for items, fut in batch if not fut.done()]  # cancelled requests
            if not batch:
                continue
            flat = [it for items, _ in batch for it in items]
            try:
                verdicts = await anyio.to_thread.run_sync(self.guard.check_batch, flat, limiter=self._limiter)
            except Exception as e:  # noqa: BLE001 - delivered to every waiting request
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            i = 0
            for items, fut in batch:
                if not fut.done():
                    fut.set_result(verdicts[i: i + len(items)])
                i += len(items)

"""Async access to a Guard for many concurrent attempts: calls are micro-batched and run in one worker thread.

The guard model is CPU-bound; scoring single texts from many coroutines would serialise anyway, so a
worker collects whatever requests are waiting and scores them with one vectorised call.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bastion.guard import Guard, Verdict


class GuardService:
    """`await svc.check_prompt(text)` / `await svc.check_response(prompt, reply)`, batched."""

    def __init__(self, guard: Guard, max_batch: int = 32) -> None:
        self.guard = guard
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[str, tuple[str, ...], asyncio.Future[Verdict]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-guard")
        self.calls = 0
        self.batches = 0

    @property
    def version(self) -> str:
        return self.guard.model_version

    async def check_prompt(self, text: str) -> Verdict:
        return await self._submit("prompt", (text,))

    async def check_response(self, prompt: str, response: str) -> Verdict:
        return await self._submit("response", (prompt, response))

    async def _submit(self, kind: str, args: tuple[str, ...]) -> Verdict:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run())
        fut: asyncio.Future[Verdict] = loop.create_future()
        assert self._queue is not None
        self._queue.put_nowait((kind, args, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        q = self._queue
        while True:
            batch = [await q.get()]
            await asyncio.sleep(0)  # let coroutines that are ready enqueue their checks too
            while not q.empty() and len(batch) < self.max_batch:
                batch.append(q.get_nowait())
            live = [b for b in batch if not b[2].done()]
            if not live:
                continue
            try:
                results = await asyncio.get_running_loop().run_in_executor(self._pool, self._score, live)
            except Exception as e:  # noqa: BLE001 - handed to every waiter
                for _, _, fut in live:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, _, fut), v in zip(live, results, strict=False):
                if not fut.done():
                    fut.set_result(v)

    def _score(self, batch: list[tuple[str, tuple[str, ...], Any]]) -> list[Verdict]:
        self.batches += 1
        self.calls += len(batch)
        out: list[Verdict | None] = [None] * len(batch)
        p_idx = [i for i, b in enumerate(batch) if b[0] == "prompt"]
        r_idx = [i for i, b in enumerate(batch) if b[0] == "response"]
        if p_idx:
            for i, v in zip(p_idx, self.guard.check_prompts([batch[i][1][0] for i in p_idx]), strict=False):
                out[i] = v
        if r_idx:
            vs = self.guard.check_responses([batch[i][1][0] for i in r_idx], [batch[i][1][1] for i in r_idx])
            for i, v in zip(r_idx, vs, strict=False):
                out[i] = v
        return out  # type: ignore[return-value]

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._worker = None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def compact_verdict(v: Verdict) -> dict[str, Any]:
    """The parts of a verdict worth storing per attempt (model version and thresholds live on the run)."""
    d: dict[str, Any] = {"unsafe": v.unsafe, "score": v.score, "categories": list(v.categories)}
    if v.attack is not None:
        d["attack"] = v.attack
        d["attack_score"] = v.attack_score
    if v.refusal is not None:
        d["refusal"] = v.refusal
        d["refusal_score"] = v.refusal_score
    if v.obfuscation:
        d["obfuscation"] = list(v.obfuscation)
    return d

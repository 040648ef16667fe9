"""A scripted OpenAI-compatible chat-completions server for tests (real HTTP on 127.0.0.1).

Usage::

    from tests.fakellm import FakeLLM, FakeReply

    def script(req: dict) -> str | FakeReply:
        last = req["messages"][-1]["content"]
        if "bread" in last:
            return "Mix flour and water."
        return FakeReply("I can't help with that.")

    with FakeLLM(script) as llm:                 # or the pytest fixture: llm = fake_llm(script)
        client = openai.OpenAI(base_url=llm.base_url, api_key="x")
        client.chat.completions.create(model="fake", messages=[...])
        assert llm.requests[0]["messages"][-1]["content"] == ...

Endpoints
    ``POST /v1/chat/completions``  non-streaming, or SSE (``"stream": true``): ``data: {chunk}`` lines ending
                                   with ``data: [DONE]``; ``stream_options.include_usage`` adds a usage chunk.
                                   ``"logprobs": true`` (+ ``top_logprobs: k``) returns per-token logprobs.
    ``GET /v1/models``             lists ``models`` (default ``["fake-model"]``).

The script
    ``script(request_json) -> str | FakeReply``. Instead of a callable you may pass a plain string or a
    FakeReply (always that reply) or a list (replies in order; the last one repeats). A script that raises gives a 500 whose message
    holds the exception, and the exception is kept in ``server.errors``.

``FakeReply`` fields
    ``text``       the assistant message.
    ``logprobs``   ``None`` (when logprobs are requested, one entry per whitespace-delimited token with logprob
                   -0.1 is generated) or a list of ``(token, logprob, {top_token: logprob})``.
    ``status``     HTTP status; non-200 returns an OpenAI-style ``{"error": {...}}`` body with ``text`` as the
                   message (use 429 / 500 / 401 to exercise retries and errors).
    ``delay``      seconds to wait before answering (for timeouts); for streams, before the first chunk.
    ``malformed``  return a 200 whose body is not valid JSON (streams: a broken ``data:`` line).
    ``chunks``     explicit streaming pieces (default: the text split into words, whitespace kept).
    ``headers``    extra response headers (e.g. ``{"retry-after": "0"}``; 429/5xx default to ``retry-after-ms: 1``).
    ``finish_reason`` default ``"stop"``.
    ``chunk_delay`` seconds to wait between streamed chunks (slow streams, client disconnects).
    ``usage``      override the usage dict (default: whitespace token counts).

Other knobs: ``FakeLLM(script, api_key="k")`` answers 401 unless ``Authorization: Bearer k`` is sent;
``server.requests`` is every received chat request (JSON), ``server.calls`` their count, ``server.reset()``
clears both. ``server.streams_aborted`` counts streams whose client went away before the end.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

LogprobEntry = tuple[str, float, dict[str, float]]


@dataclass
class FakeReply:
    """A scripted reply; see the module docstring."""

    text: str = ""
    logprobs: list[LogprobEntry] | None = None
    status: int = 200
    delay: float = 0.0
    malformed: bool = False
    chunks: list[str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None
    chunk_delay: float = 0.0


Script = Callable[[dict[str, Any]], "str | FakeReply"] | str | FakeReply | Sequence["str | FakeReply"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error"}


def _tokens(text: str) -> list[str]:
    """Whitespace-preserving word pieces: 'a b' -> ['a', ' b']."""
    return re.findall(r"\s*\S+|\s+", text) or ([text] if text else [])


def _lp_entry(tok: str, lp: float, top: dict[str, float]) -> dict[str, Any]:
    return {
        "token": tok, "logprob": lp, "bytes": list(tok.encode()),
        "top_logprobs": [{"token": t, "logprob": v, "bytes": list(t.encode())} for t, v in top.items()],
    }


class FakeLLM:
    """Scripted OpenAI-compatible server running uvicorn in a background thread on a free port."""

    def __init__(self, script: Script = "OK", *, models: Sequence[str] = ("fake-model",),
                 api_key: str | None = None, host: str = "127.0.0.1") -> None:
        self.script = script
        self.models = list(models)
        self.api_key = api_key
        self.host = host
        self.requests: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.streams_aborted = 0
        self._seq_index = 0
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port: int = 0
        self.app = self._build_app()

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def calls(self) -> int:
        return len(self.requests)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.errors.clear()
            self._seq_index = 0

    def start(self) -> FakeLLM:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        config = uvicorn.Config(self.app, log_level="error", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"fakellm-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fakellm server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- behaviour -------------------------------------------------------------------------------
    def _reply_for(self, req: dict[str, Any]) -> FakeReply:
        s = self.script
        if isinstance(s, (str, FakeReply)):
            r: str | FakeReply = s
        elif callable(s):
            r = s(req)
        else:
            with self._lock:
                i = min(self._seq_index, len(s) - 1)
                self._seq_index += 1
            r = s[i]
        if isinstance(r, str):
            return FakeReply(r)
        if not isinstance(r, FakeReply):
            raise TypeError(f"script returned {type(r).__name__}, expected str or FakeReply")
        return r

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        def auth_error(request: Request) -> Response | None:
            if self.api_key is None:
                return None
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return JSONResponse({"error": {"message": "Incorrect API key provided", "type":
                                               "authentication_error", "code": "invalid_api_key"}},
                                    status_code=401)
            return None

        @app.get("/v1/models")
        async def models(request: Request) -> Response:
            if (err := auth_error(request)) is not None:
                return err
            return JSONResponse({"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fakellm"} for m in self.models]})

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            if (err := auth_error(request)) is not None:
                return err
            try:
                req = json.loads(await request.body())
            except ValueError:
                return JSONResponse({"error": {"message": "request body is not JSON", "type":
                                               "invalid_request_error"}}, status_code=400)
            with self._lock:
                self.requests.append(req)
            try:
                reply = self._reply_for(req)
            except Exception as e:  # noqa: BLE001 - surfaced to the test through the 500 and .errors
                self.errors.append(e)
                return JSONResponse({"error": {"message": f"script error: {e!r}", "type": "server_error"}},
                                    status_code=500)
            if reply.delay:
                try:
                    await asyncio.sleep(reply.delay)
                except asyncio.CancelledError:  # the client gave up (timeout) or the server is stopping
                    return Response(status_code=499)
            if reply.status != 200:
                headers = {"retry-after-ms": "1"} if reply.status == 429 or reply.status >= 500 else {}
                headers.update(reply.headers)
                return JSONResponse(
                    {"error": {"message": reply.text or f"scripted HTTP {reply.status}",
                               "type": _ERROR_TYPES.get(reply.status, "server_error"), "code": None}},
                    status_code=reply.status, headers=headers)
            if req.get("stream"):
                return StreamingResponse(self._stream(req, reply), media_type="text/event-stream",
                                         headers=reply.headers)
            if reply.malformed:
                return PlainTextResponse('{"id": "chatcmpl-broken", "choices": [', headers=reply.headers,
                                         media_type="application/json")
            return JSONResponse(self._completion(req, reply), headers=reply.headers)

        return app

    # ---- response bodies ---------------------------------------------------------------------
    @staticmethod
    def _usage(req: dict[str, Any], reply: FakeReply) -> dict[str, int]:
        if reply.usage is not None:
            return reply.usage
        prompt = sum(len(str(m.get("content") or "").split()) for m in req.get("messages", []))
        completion = len(reply.text.split())
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @staticmethod
    def _logprob_entries(req: dict[str, Any], reply: FakeReply, pieces: list[str]) -> list[dict[str, Any]]:
        k = int(req.get("top_logprobs") or 0)
        if reply.logprobs is not None:
            return [_lp_entry(t, lp, dict(list(top.items())[:k]) if k else {}) for t, lp, top in reply.logprobs]
        out = []
        for tok in pieces:
            top = {tok: -0.1}
            for j in range(1, k):
                top[f"<alt{j}>"] = -2.0 - j
            out.append(_lp_entry(tok, -0.1, top if k else {}))
        return out

    def _completion(self, req: dict[str, Any], reply: FakeReply) -> dict[str, Any]:
        logprobs = None
        if req.get("logprobs"):
            logprobs = {"content": self._logprob_entries(req, reply, _tokens(reply.text))}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": req.get("model", self.models[0] if self.models else "fake-model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                         "logprobs": logprobs, "finish_reason": reply.finish_reason}],
            "usage": self._usage(req, reply),
        }

    async def _stream(self, req: dict[str, Any], reply: FakeReply):
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        model = req.get("model", "fake-model")
        created = int(time.time())
        pieces = reply.chunks if reply.chunks is not None else _tokens(reply.text)
        lps = self._logprob_entries(req, reply, pieces) if req.get("logprobs") else None

        def chunk(delta: dict[str, Any], finish: str | None = None, lp: Any = None, **extra: Any) -> str:
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish}], **extra}
            return f"data: {json.dumps(body)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        if reply.malformed:
            yield 'data: {"id": "broken", "choices": [\n\n'
            return
        try:
            for i, piece in enumerate(pieces):
                lp = None
                if lps is not None and i < len(lps):
                    lp = {"content": [lps[i]]}
                yield chunk({"content": piece}, lp=lp)
                await asyncio.sleep(reply.chunk_delay)
        except BaseException:  # client disconnected: cancelled or closed mid-stream
            with self._lock:
                self.streams_aborted += 1
            raise
        yield chunk({}, finish=reply.finish_reason)
        if (req.get("stream_options") or {}).get("include_usage"):
            body = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": self._usage(req, reply)}
            yield f"data: {json.dumps(body)}\n\n"
        yield "data: [DONE]\n\n"


# ---- handy scripts ------------------------------------------------------------------------------
def last_user(req: dict[str, Any]) -> str:
    """The content of the last user message of a request."""
    for m in reversed(req.get("messages", [])):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):  # content parts
                return " ".join(p.get("text", "") for p in c if isinstance(p, dict))
            return str(c or "")
    return ""


def echo(req: dict[str, Any]) -> str:
    """Script that answers with the last user message."""
    return last_user(req)


__all__ = ["FakeLLM", "FakeReply", "echo", "last_user"]


def closed_port() -> int:
    """A local port with nothing listening on it (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

"""Load test for the guarded gateway: N concurrent streaming clients against a loopback upstream.

    python benchmarks/gateway_load.py --clients 100 --requests 5
    python benchmarks/gateway_load.py --clients 50 --stub-ms 10     # without the trained model

Runs the same load twice, straight at the upstream and through the gateway, and reports the time to first
token (TTFT) and end-to-end latency of both, the difference (the gateway's added latency), requests per second,
errors, and the server-side "added TTFT" histogram (first upstream token -> its release after a check).
Every stream carries a placeholder marker in ~10% of replies when the stub guard is used; the script
checks that no marker and no text after it ever reaches a client ("leaks"), and that every content chunk
the clients got went through a check ("unchecked").

The upstream and the gateway run in their own processes; the clients run here. All share this machine's CPUs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

MARKER = "[REDACTED-HARMFUL-STEP]"


# Benign prose for the upstream's replies (real text, so the guard does the work it does in production).
_PROSE = (
    "Sourdough starts with a starter, a mix of flour and water that wild yeast slowly ferments. "
    "Feed it twice a day at room temperature and it will bubble and rise within a week. "
    "Mix the dough with strong bread flour, salt and water, then let it rest for an hour. "
    "Stretch and fold the dough every half hour to build strength without heavy kneading. "
    "After the bulk rise, shape a tight round loaf and leave it in a floured basket overnight. "
    "Bake it in a very hot covered pot so the steam gives the crust a glossy finish. "
    "Remove the lid after twenty minutes and bake until the crust is deep brown. "
    "Let the bread cool for at least an hour before slicing, or the crumb turns gummy. "
    "If the loaf spreads flat, the dough was probably under-proofed or the starter was weak. "
    "Whole wheat flour absorbs more water, so add a little extra when you swap it in. "
    "A kitchen scale makes the recipe repeatable, since cups of flour vary a lot in weight. "
    "Keep a small jar of starter in the fridge between bakes and feed it once a week. "
).split()


def _reply(i: int, tokens: int, harmful: bool) -> list[str]:
    words = [_PROSE[(i * 7 + j) % len(_PROSE)] for j in range(tokens)]
    if harmful:
        words[tokens // 2] = MARKER
    return [(" " if j else "") + w for j, w in enumerate(words)]


# ---- child processes ---------------------------------------------------------------------------
def run_upstream(tokens: int, delay_ms: float) -> None:
    from tests.fakellm import FakeLLM, FakeReply

    def script(req: dict) -> FakeReply:
        last = req["messages"][-1]["content"]
        harmful = "harm" in last
        i = int(last.rsplit(" ", 1)[-1]) if last.rsplit(" ", 1)[-1].isdigit() else 0
        return FakeReply(chunks=_reply(i, tokens, harmful), chunk_delay=delay_ms / 1000)

    llm = FakeLLM(script).start()
    print(llm.port, flush=True)
    sys.stdin.read()  # run until the parent closes stdin
    llm.stop()


def run_gateway(upstream: str, stub_ms: float | None, audit: str, holdback: str, guarded: bool = True) -> None:
    import numpy as np
    import uvicorn

    from bastion.gateway import GatewayConfig, create_app
    from bastion.guard import Guard
    from bastion.models import GuardModel, PromptScores, ResponseScores

    class StubModel(GuardModel):
        """Stands in for the trained model: fixed time per batch call, flags the marker."""

        version = f"stub-{stub_ms}ms"

        def _s(self, texts):
            time.sleep((stub_ms or 0) / 1000)
            harm = np.array([0.99 if MARKER in t else 0.01 for t in texts], dtype=np.float32)
            cats = np.zeros((len(texts), 14), dtype=np.float32)
            cats[:, 0] = harm
            return harm, cats

        def score_prompts(self, texts):
            h, c = self._s(texts)
            return PromptScores(h, np.zeros(len(texts)), c, np.ones(len(texts)))

        def score_responses(self, prompts, responses):
            h, c = self._s(responses)
            return ResponseScores(h, np.zeros(len(responses)), c, np.ones(len(responses)))

    guard = Guard(model=StubModel()) if stub_ms is not None else Guard()
    policy = Path(audit + ".policy.yaml")
    if guarded:
        policy.write_text(f"streaming: {{holdback: {holdback}}}\n")
    else:  # the same proxy with every check off: its latency is the baseline the guard's overhead is taken from
        policy.write_text("checks: {input: false, conversation: false, session: false, attack: false, output: false}\n"
                          "code_shield: off\n")
    app = create_app(GatewayConfig(upstream=upstream, audit_path=Path(audit), rate_limit_per_minute=0,
                                   policy_path=policy, policy_poll_s=0), guard=guard)
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    cfg = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    uvicorn.Server(cfg).run(sockets=[sock])


# ---- load ---------------------------------------------------------------------------------------
async def one(client, url: str, i: int, harmful: bool) -> dict:
    body = {"model": "fake-model", "stream": True,
            "messages": [{"role": "user", "content": ("harm " if harmful else "") + f"request {i}"}]}
    t0 = time.perf_counter()
    ttft = None
    text = ""
    chunks = 0
    finish = None
    rail = None  # the rail that refused ("input" or "output"), when one did
    try:
        async with client.stream("POST", url + "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return {"error": f"http {r.status_code}"}
            async for line in r.aiter_lines():
                if not line.startswith("data: {"):
                    continue
                d = json.loads(line[6:])
                if "error" in d:
                    return {"error": d["error"].get("code")}
                ch = (d.get("choices") or [{}])[0]
                piece = (ch.get("delta") or {}).get("content") or ""
                if ch.get("finish_reason"):
                    finish = ch["finish_reason"]
                    if finish == "content_filter":
                        rail = (d.get("bastion") or {}).get("rail")
                        if rail == "input":  # the request was refused: what came before is the gateway's refusal
                            chunks, text = 0, ""
                        continue  # the refusal text is the gateway's, not the model's
                if piece:
                    chunks += 1
                    text += piece
                    if ttft is None:
                        ttft = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001
        return {"error": type(e).__name__}
    return {"ttft": ttft, "total": time.perf_counter() - t0, "text": text, "chunks": chunks, "finish": finish,
            "harmful": harmful, "rail": rail}


async def load(url: str, clients: int, requests: int, harmful_every: int) -> tuple[list[dict], float]:
    import httpx

    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def worker(w: int) -> list[dict]:
            out = []
            for k in range(requests):
                i = w * requests + k
                out.append(await one(client, url, i, harmful_every > 0 and i % harmful_every == 0))
            return out

        t0 = time.perf_counter()
        res = await asyncio.gather(*(worker(w) for w in range(clients)))
        return [r for rs in res for r in rs], time.perf_counter() - t0


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(name: str, res: list[dict], wall: float) -> dict:
    ok = [r for r in res if "error" not in r]
    ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
    tot = [r["total"] for r in ok]
    return {"name": name, "requests": len(res), "errors": len(res) - len(ok), "rps": len(res) / wall,
            "ttft_p50": pct(ttft, 50), "ttft_p95": pct(ttft, 95), "ttft_p99": pct(ttft, 99),
            "total_p50": pct(tot, 50), "total_p95": pct(tot, 95), "total_p99": pct(tot, 99)}


def hist_quantile(metrics: str, name: str, q: float, label: str = "") -> float:
    """Upper bucket bound holding quantile q of a histogram (optionally only lines containing `label`)."""
    buckets = []
    for line in metrics.splitlines():
        if line.startswith(name + "_bucket") and label in line:
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    total = buckets[-1][1]
    for le, n in buckets:
        if n >= q * total:
            return le
    return float("inf")


def metric_value(metrics: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(prefix))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--requests", type=int, default=5, help="streaming requests per client")
    ap.add_argument("--tokens", type=int, default=40, help="chunks per upstream reply")
    ap.add_argument("--token-delay-ms", type=float, default=30.0, help="upstream delay between chunks")
    ap.add_argument("--stub-ms", type=float, default=None,
                    help="use a stub guard model taking this long per batch (default: the trained model)")
    ap.add_argument("--harmful-every", type=int, default=10, help="every k-th request carries the marker (stub)")
    ap.add_argument("--holdback", choices=["sentence", "word", "none"], default="sentence",
                    help="streaming.holdback of the gateway policy")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.stub_ms is None and not (ROOT / "src/bastion/models/default/manifest.json").exists():
        sys.exit("the trained guard model is missing; pass --stub-ms MS to use a stub")
    harmful_every = args.harmful_every if args.stub_ms is not None else 0

    me = [sys.executable, __file__]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "src"),
                                                                     os.environ.get("PYTHONPATH")]))}
    up = subprocess.Popen(me + ["_upstream", str(args.tokens), str(args.token_delay_ms)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True, env=env)
    up_url = f"http://127.0.0.1:{up.stdout.readline().strip()}"
    audit = tempfile.mktemp(suffix=".db")
    procs = []

    def start_gateway(guarded: bool) -> str:
        p = subprocess.Popen(me + ["_gateway", up_url + "/v1", str(args.stub_ms), audit + ("" if guarded else "-proxy"),
                                   args.holdback, "guarded" if guarded else "proxy"], stdout=subprocess.PIPE,
                             text=True, env=env)
        procs.append(p)
        url = f"http://127.0.0.1:{p.stdout.readline().strip()}"
        import httpx

        for _ in range(300):
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        return url

    try:
        import httpx

        gw_url = start_gateway(True)
        px_url = start_gateway(False)
        for url in (gw_url, px_url, up_url):  # warm-up
            asyncio.run(load(url, 4, 2, 0))
        before = httpx.get(gw_url + "/metrics").text
        direct, dwall = asyncio.run(load(up_url, args.clients, args.requests, 0))
        proxied, pwall = asyncio.run(load(px_url, args.clients, args.requests, 0))
        guarded, gwall = asyncio.run(load(gw_url, args.clients, args.requests, harmful_every))
        metrics = httpx.get(gw_url + "/metrics").text
    finally:
        for p in procs:
            p.terminate()
        up.stdin.close()
        up.wait(10)
        for p in procs:
            p.wait(10)
        for base in (audit, audit + "-proxy"):
            for suffix in ("", "-wal", "-shm", ".policy.yaml"):
                with __import__("contextlib").suppress(OSError):
                    os.unlink(base + suffix)

    d, g = summary("direct", direct, dwall), summary("gateway", guarded, gwall)
    px = summary("proxy", proxied, pwall)
    ok = [r for r in guarded if "error" not in r]
    leaks = sum(1 for r in ok if MARKER in r["text"] or (r["harmful"] and f"word{args.tokens - 1}" in r["text"]))
    blocked = sum(1 for r in ok if r["finish"] == "content_filter")
    blocked_input = sum(1 for r in ok if r["finish"] == "content_filter" and r["rail"] == "input")
    released = metric_value(metrics, 'bastion_stream_chunks_total{outcome="released"}') - metric_value(
        before, 'bastion_stream_chunks_total{outcome="released"}')
    client_chunks = sum(r["chunks"] for r in ok)
    out = {
        "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "clients": args.clients,
        "requests_per_client": args.requests, "tokens": args.tokens, "token_delay_ms": args.token_delay_ms,
        "guard": f"stub {args.stub_ms} ms/batch" if args.stub_ms is not None else "trained model",
        "holdback": args.holdback,
        "direct": d, "proxy (checks off)": px, "gateway": g,
        # The guard's overhead: the guarded gateway against the same proxy with every check off.
        "guard_overhead_total_p50_ms": (g["total_p50"] - px["total_p50"]) * 1000,
        "guard_overhead_total_p99_ms": (g["total_p99"] - px["total_p99"]) * 1000,
        "guard_overhead_ttft_p50_ms": (g["ttft_p50"] - px["ttft_p50"]) * 1000,
        "added_ttft_p50_ms": (g["ttft_p50"] - d["ttft_p50"]) * 1000,
        "added_ttft_p95_ms": (g["ttft_p95"] - d["ttft_p95"]) * 1000,
        "added_ttft_p99_ms": (g["ttft_p99"] - d["ttft_p99"]) * 1000,
        "added_total_p50_ms": (g["total_p50"] - d["total_p50"]) * 1000,
        "added_total_p99_ms": (g["total_p99"] - d["total_p99"]) * 1000,
        "server_added_ttft_p50_le_ms": hist_quantile(metrics, "bastion_stream_added_ttft_seconds", 0.5) * 1000,
        "server_added_ttft_p95_le_ms": hist_quantile(metrics, "bastion_stream_added_ttft_seconds", 0.95) * 1000,
        "guard_check_p50_le_ms": hist_quantile(metrics, "bastion_guard_seconds", 0.5, 'rail="output"') * 1000,
        "harmful_streams": sum(1 for r in ok if r["harmful"]), "blocked_streams": blocked,
        "blocked_at_input": blocked_input, "leaks": leaks,
        "client_content_chunks": client_chunks, "checked_released_chunks": int(released),
        "unchecked_chunks": max(0, client_chunks - int(released)),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['date']}  {out['cpus']} CPUs  {args.clients} clients x {args.requests} streams, "
          f"{args.tokens} chunks @ {args.token_delay_ms} ms, guard: {out['guard']}, holdback: {args.holdback}")
    for s in (d, px, g):
        print(f"  {s['name']:18s} rps {s['rps']:7.1f}  errors {s['errors']}  TTFT p50/p95/p99 "
              f"{s['ttft_p50'] * 1000:6.1f}/{s['ttft_p95'] * 1000:6.1f}/{s['ttft_p99'] * 1000:6.1f} ms  total p50/p99 "
              f"{s['total_p50'] * 1000:6.1f}/{s['total_p99'] * 1000:6.1f} ms")
    print(f"  added TTFT p50/p95/p99: {out['added_ttft_p50_ms']:.1f} / {out['added_ttft_p95_ms']:.1f} / "
          f"{out['added_ttft_p99_ms']:.1f} ms; added total p50/p99: {out['added_total_p50_ms']:.1f} / "
          f"{out['added_total_p99_ms']:.1f} ms")
    print(f"  guard overhead (gateway vs the same proxy with checks off): total p50/p99 "
          f"{out['guard_overhead_total_p50_ms']:.1f} / {out['guard_overhead_total_p99_ms']:.1f} ms, "
          f"TTFT p50 {out['guard_overhead_ttft_p50_ms']:.1f} ms")
    print(f"  server-side added TTFT p50 <= {out['server_added_ttft_p50_le_ms']:g} ms, p95 <= "
          f"{out['server_added_ttft_p95_le_ms']:g} ms; output check p50 <= {out['guard_check_p50_le_ms']:g} ms")
    print(f"  harmful streams {out['harmful_streams']}, blocked {blocked} ({blocked_input} at input), leaks {leaks}; "
          f"client chunks {client_chunks}, checked+released {int(released)}, unchecked {out['unchecked_chunks']}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_upstream":
        run_upstream(int(sys.argv[2]), float(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_gateway":
        run_gateway(sys.argv[2], None if sys.argv[3] == "None" else float(sys.argv[3]), sys.argv[4], sys.argv[5],
                    guarded=sys.argv[6] == "guarded")
    else:
        main()

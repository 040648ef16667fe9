"""`bastion serve` (the guarded gateway), `bastion audit verify|show` and `bastion keys add|list`."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

err = Console(stderr=True)


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _audit_key(env: str) -> bytes | None:
    v = os.environ.get(env)
    return v.encode("utf-8") if v else None


def serve(
    upstream: str = typer.Option(..., help="Upstream OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    policy: Path | None = typer.Option(None, help="Policy YAML (default: the shipped policy). Reloaded on "
                                                  "SIGHUP or when the file changes."),
    keys: Path | None = typer.Option(None, help="Client keys file (hashed), made with `bastion keys add`."),
    upstream_key_env: str = typer.Option("BASTION_UPSTREAM_API_KEY", help="Env var holding the upstream API key."),
    audit: Path | None = typer.Option(Path("bastion_audit.db"), help="Audit log (SQLite)."),
    no_audit: bool = typer.Option(False, "--no-audit", help="Do not write an audit log."),
    audit_content: bool = typer.Option(False, help="Also store checked content in the audit log (hashes always)."),
    audit_key_env: str = typer.Option("BASTION_AUDIT_KEY", help="Env var with an HMAC key for the audit chain."),
    max_body: int = typer.Option(1_000_000, help="Largest accepted request body, in bytes (413 above)."),
    rate_limit: float = typer.Option(600.0, help="Requests per minute per key (per address without keys); 0: off."),
    upstream_timeout: float = typer.Option(60.0, help="Seconds to wait for the upstream (504 after)."),
    model: Path | None = typer.Option(None, help="Guard model directory (default: the embedded model)."),
    threads: int | None = typer.Option(None, help="Guard inference threads."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback address without client keys."),
    revise_model: str | None = typer.Option(None, help="Model that revises flagged responses under the "
                                            "constitution; enables the policy action `revise`."),
    revise_base_url: str | None = typer.Option(None, help="OpenAI-compatible base URL of the revise model "
                                               "(default: the upstream, with the upstream key)."),
    revise_key_env: str = typer.Option("BASTION_REVISE_API_KEY", help="Env var holding the revise endpoint's API "
                                       "key when --revise-base-url is given."),
    constitution: str | None = typer.Option(None, help="Constitution file for revisions (YAML, Bastion JSON or "
                                            "llm-swarm JSON; default: the shipped one). Needs --revise-model."),
    revise_timeout: float = typer.Option(60.0, help="Seconds one revision may take before the reply is refused."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Run the guarded OpenAI-compatible gateway in front of an upstream model."""
    from bastion.gateway import GatewayConfig, check_bind, create_app
    from bastion.gateway.keys import KeysError, KeyStore
    from bastion.gateway.server import serve_forever
    from bastion.guard.policy import PolicyError

    if not upstream.startswith(("http://", "https://")):
        _fail(f"--upstream must be an http(s) URL, got {upstream!r}")
    try:
        store = KeyStore.load(keys) if keys else KeyStore()
    except KeysError as e:
        _fail(str(e))
    if keys and not store:
        _fail(f"{keys}: no keys in the file (add one with `bastion keys add ID --keys {keys}`)")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1] as in a URL
    try:
        check_bind(host, store, insecure)
    except ValueError as e:
        _fail(str(e))
    upstream_api_key = os.environ.get(upstream_key_env) or None
    if revise_timeout <= 0:
        _fail("--revise-timeout must be > 0")
    reviser = _build_reviser(revise_model, revise_base_url, constitution, upstream, upstream_api_key,
                             revise_key_env, revise_timeout)
    config = GatewayConfig(
        upstream=upstream, upstream_api_key=upstream_api_key, host=host,
        policy_path=policy, keys_path=keys, audit_path=None if no_audit else audit, audit_content=audit_content,
        audit_key=_audit_key(audit_key_env), max_body_bytes=max_body, rate_limit_per_minute=rate_limit,
        upstream_timeout_s=upstream_timeout, revise_timeout_s=revise_timeout,
    )
    try:
        from bastion.guard import Guard

        guard = Guard(model=model, threads=threads)
    except Exception as e:  # noqa: BLE001 - one clear line, not a traceback
        _fail(f"cannot load the guard model: {e}", 1)
    try:
        app = create_app(config, guard=guard, keys=store, reviser=reviser)
    except PolicyError as e:
        _fail(str(e))
    revising = f", revise with {revise_model}" if reviser is not None else ""
    shown = f"[{host}]" if ":" in host else host
    err.print(f"bastion gateway on http://{escape(shown)}:{port}/v1 -> {upstream} "
              f"({len(store)} client key(s), policy {app.state.gateway.policies.policy.digest}{revising})",
              highlight=False)
    serve_forever(app, host, port, log_level=log_level)


def _build_reviser(model: str | None, base_url: str | None, constitution: str | None, upstream: str,
                   upstream_key: str | None, key_env: str, timeout: float):
    """`Reviser(LLMClient(base_url, model), load_constitution(...))` from the serve options, or None."""
    if model is None:
        if base_url or constitution:
            _fail("--revise-base-url and --constitution need --revise-model (the model that writes revisions)")
        return None
    from bastion.constitution import ConstitutionError, Reviser, load_constitution
    from bastion.llm import LLMClient

    if base_url is not None and not base_url.startswith(("http://", "https://")):
        _fail(f"--revise-base-url must be an http(s) URL, got {base_url!r}")
    try:
        const = load_constitution(constitution)
    except (ConstitutionError, OSError) as e:
        _fail(f"cannot load the constitution: {e}")
    # The upstream key only ever goes to the upstream; another endpoint gets its own key.
    key = upstream_key if base_url is None else os.environ.get(key_env) or None
    client = LLMClient(base_url or upstream, model, api_key=key or "unused", timeout=timeout, max_retries=1)
    return Reviser(client, const)


audit_app = typer.Typer(help="Inspect and verify the gateway's audit log.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage the gateway's client API keys (stored hashed).", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    path: Path = typer.Argument(Path("bastion_audit.db"), help="Audit log (SQLite)."),
    audit_key_env: str = typer.Option("BASTION_AUDIT_KEY", help="Env var with the chain's HMAC key, if one was used."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check the hash chain: exit 0 if intact, 1 if rows were edited or deleted."""
    from bastion.gateway.audit import verify

    if not path.exists():
        _fail(f"{path}: no such audit log")
    res = verify(path, key=_audit_key(audit_key_env))
    if as_json:
        typer.echo(json.dumps({"ok": res.ok, "rows": res.rows, "problems": res.problems}))
    elif res.ok:
        typer.echo(f"OK: {res.rows} rows, hash chain intact")
    else:
        typer.echo(f"TAMPERED: {len(res.problems)} problem(s) in {res.rows} rows")
        for p in res.problems:
            typer.echo(f"  - {p}")
    raise typer.Exit(0 if res.ok else 1)


@audit_app.command("show")
def audit_show(
    path: Path = typer.Argument(Path("bastion_audit.db"), help="Audit log (SQLite)."),
    limit: int = typer.Option(20, help="Rows to show (latest first)."),
    action: str | None = typer.Option(None, help="Only rows with this action (block, flag, ...)."),
) -> None:
    """Show the latest decisions."""
    if not path.exists():
        _fail(f"{path}: no such audit log")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    q = "SELECT seq, ts, key_id, rail, action, categories, latency_ms, content_sha256 FROM audit"
    args: list = []
    if action:
        q += " WHERE action = ?"
        args.append(action)
    rows = con.execute(q + " ORDER BY seq DESC LIMIT ?", [*args, limit]).fetchall()
    con.close()
    t = Table("seq", "time", "key", "rail", "action", "categories", "ms", "sha256")
    for r in rows:
        t.add_row(str(r[0]), r[1], r[2] or "-", r[3], r[4], ",".join(json.loads(r[5])) or "-",
                  "-" if r[6] is None else f"{r[6]:.1f}", r[7][:12])
    Console().print(t)


@keys_app.command("add")
def keys_add(
    key_id: str = typer.Argument(..., help="A name for the key (used in the audit log and per-key policies)."),
    keys: Path = typer.Option(Path("bastion_keys.yaml"), help="Keys file (created 0600)."),
    rate_limit: float | None = typer.Option(None, help="Requests per minute for this key."),
) -> None:
    """Create a client key; it is printed once and only its SHA-256 is stored."""
    from bastion.gateway.keys import KeysError, add_key

    try:
        key = add_key(keys, key_id, rate_limit)
    except KeysError as e:
        _fail(str(e))
    err.print(f"added key {key_id!r} to {keys}; it is shown only now:", highlight=False)
    typer.echo(key)


@keys_app.command("list")
def keys_list(keys: Path = typer.Option(Path("bastion_keys.yaml"), help="Keys file.")) -> None:
    """List key ids (never the keys)."""
    from bastion.gateway.keys import KeysError, KeyStore

    if not keys.exists():
        _fail(f"no keys file at {keys} (create one with `bastion keys add ID --keys {keys}`)")
    try:
        for k in KeyStore.load(keys).ids:
            typer.echo(k)
    except KeysError as e:
        _fail(str(e))


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("serve")(serve)
    app.add_typer(audit_app, name="audit")
    app.add_typer(keys_app, name="keys")

"""SL-CAI training data: TRL `messages` SFT records and revision-vs-original DPO pairs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

Message = dict[str, Any]


def last_user(messages: list[Message]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return ""


def redteam_items_from_run(run_id: str, db: str | None = None) -> list[dict[str, Any]]:
    """Successful attacks of a stored red-team run as `{id, prompt, messages, response, category, source}`
    (the conversation that was sent and the target's harmful reply)."""
    from bastion.store import Store

    with Store(db) as store:
        store.get_run(run_id)  # raises StoreError naming the run when it does not exist
        attempts = store.attempts(run_id, benign=False, include_errors=False)
    out = []
    for a in attempts:
        if not a.success or not a.reply:
            continue
        msgs = [{"role": m["role"], "content": m["content"]} for m in a.prompt
                if m.get("role") in ("system", "user", "assistant")]
        out.append({"id": f"{run_id}:{a.key}", "prompt": last_user(msgs) or a.seed_text, "messages": msgs,
                    "response": a.reply, "category": a.category, "source": "redteam",
                    "technique": a.technique})
    return out


def _conversation(rec: dict[str, Any]) -> list[Message]:
    msgs = rec.get("messages")
    if isinstance(msgs, list) and msgs:
        return [{"role": m["role"], "content": m["content"]} for m in msgs]
    return [{"role": "user", "content": rec["prompt"]}]


def sft_from_revision(rec: dict[str, Any], system: str | None = None) -> dict[str, Any]:
    """A `revise` output record -> SFT example on the final revision."""
    msgs = ([{"role": "system", "content": system}] if system else []) + _conversation(rec)
    return {"messages": msgs + [{"role": "assistant", "content": rec["final"]}],
            "source": rec.get("source") or "cai-revision"}


def sft_from_helpful(rec: dict[str, Any], system: str | None = None) -> dict[str, Any]:
    """A helpfulness `{prompt, response}` (or `{messages}` ending in an assistant turn) -> SFT example."""
    if "response" in rec:
        msgs = _conversation(rec) + [{"role": "assistant", "content": rec["response"]}]
    else:
        msgs = _conversation(rec)
    if system:
        msgs = [{"role": "system", "content": system}] + msgs
    return {"messages": msgs, "source": "helpful"}


def dpo_pairs(revisions: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Revision-vs-original preference pairs: chosen = final revision, rejected = initial response.
    Labelled `pair_type: revision_vs_original` so they are never mistaken for AI-feedback labels."""
    for rec in revisions:
        if rec.get("final") is None or rec.get("final") == rec.get("initial"):
            continue
        yield {"prompt": rec["prompt"], "chosen": rec["final"], "rejected": rec["initial"],
               "pair_type": "revision_vs_original", "source": "cai-revision",
               "principle_ids": [s["principle_id"] for s in rec.get("revisions", [])],
               "model": rec.get("model"), "seed": rec.get("seed")}

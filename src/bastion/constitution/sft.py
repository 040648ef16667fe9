"""SL-CAI training data: TRL SFT records (`messages`, or prompt-completion when an attack scripted assistant
turns) and revision-vs-original DPO pairs."""

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

    with Store(db, readonly=True) as store:  # a mistyped --db must not create an empty database
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


def conversation(rec: dict[str, Any]) -> list[Message]:
    """The conversation before the response: the record's `messages` (every turn, system messages first),
    or its `prompt` as a single user turn."""
    msgs = rec.get("messages")
    if isinstance(msgs, list) and msgs and all(isinstance(m, dict) and "role" in m and "content" in m for m in msgs):
        conv = [{"role": m["role"], "content": m["content"]} for m in msgs]
        return [m for m in conv if m["role"] == "system"] + [m for m in conv if m["role"] != "system"]
    return [{"role": "user", "content": rec["prompt"]}]


_conversation = conversation  # older name


def preference(rec: dict[str, Any], msgs: list[Message], chosen: str, rejected: str) -> dict[str, Any]:
    """`prompt`/`chosen`/`rejected` in TRL's preference formats: standard (three strings) when the prompt is
    a single user turn, conversational (prompt: the list of messages; chosen/rejected: a one-element list
    with the assistant message) when there are several turns or a system message."""
    if len(msgs) > 1:
        return {"prompt": msgs, "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    return {"prompt": rec["prompt"], "chosen": chosen, "rejected": rejected}


def _with_system(msgs: list[Message], system: str | None) -> list[Message]:
    """`system` prepended, unless the conversation already has its own system message (kept as it is)."""
    if not system or any(m.get("role") == "system" for m in msgs):
        return msgs
    return [{"role": "system", "content": system}] + msgs


def sft_from_revision(rec: dict[str, Any], system: str | None = None) -> dict[str, Any]:
    """A `revise` output record -> SFT example on the final revision: `messages` (the conversation, then the
    revision as the assistant turn). When the conversation holds assistant turns of its own (the scripted replies
    of a many-shot or multi-turn attack, often compliant), TRL's conversational prompt-completion format instead,
    `{prompt: conversation, completion: [revision]}`, so only the revision is a training target."""
    conv = _with_system(conversation(rec), system)
    final = {"role": "assistant", "content": rec["final"]}
    out: dict[str, Any]
    if any(m["role"] == "assistant" for m in conv):
        out = {"prompt": conv, "completion": [final]}
    else:
        out = {"messages": conv + [final]}
    out["source"] = rec.get("source") or "cai-revision"
    if rec.get("technique"):
        out["technique"] = rec["technique"]
    return out


def sft_from_helpful(rec: dict[str, Any], system: str | None = None) -> dict[str, Any]:
    """A helpfulness `{prompt, response}` (or `{messages}` ending in an assistant turn) -> SFT example."""
    if "response" in rec:
        msgs = conversation(rec) + [{"role": "assistant", "content": rec["response"]}]
    else:
        msgs = conversation(rec)
    return {"messages": _with_system(msgs, system), "source": "helpful"}


def as_prompt_completion(example: dict[str, Any]) -> dict[str, Any]:
    """A `messages` SFT example in TRL's conversational prompt-completion format (the last assistant turn is
    the completion); other examples unchanged."""
    msgs = example.get("messages")
    if not isinstance(msgs, list) or not msgs or msgs[-1].get("role") != "assistant":
        return example
    rest = {k: v for k, v in example.items() if k != "messages"}
    return {"prompt": msgs[:-1], "completion": [msgs[-1]], **rest}


def uniform_sft(examples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One format for the whole file (TRL reads a dataset's format from its columns): prompt-completion for
    every example when any example needs it, else `messages` as built."""
    if any("completion" in ex for ex in examples):
        return [as_prompt_completion(ex) for ex in examples]
    return examples


def dpo_pairs(revisions: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Revision-vs-original preference pairs: chosen = final revision, rejected = initial response, in TRL's
    standard format for a single-turn prompt and its conversational format otherwise (see `preference`).
    Labelled `pair_type: revision_vs_original` so they are never mistaken for AI-feedback labels."""
    for rec in revisions:
        if rec.get("final") is None or rec.get("final") == rec.get("initial"):
            continue
        yield {**preference(rec, conversation(rec), rec["final"], rec["initial"]),
               "pair_type": "revision_vs_original", "source": "cai-revision",
               "principle_ids": [s["principle_id"] for s in rec.get("revisions", [])],
               "model": rec.get("model"), "seed": rec.get("seed")}

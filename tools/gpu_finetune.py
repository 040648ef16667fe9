"""Continue fine-tuning the guard encoder on a borrowed GPU machine that cannot install Bastion.

`bastion train --continue-from DIR --device cuda` does the same job where Bastion installs. This tool is for a GPU
machine that has torch, transformers, numpy, pyyaml and onnx but not Bastion's own dependencies nor the datasets,
and that can send back only a few tens of megabytes: it fine-tunes several schedules in one call and sends back the
best two encoders as int8-per-row weights (23 MB each), chosen by their jointly trained heads on the calibration and
validation windows. The CPU then exports and refits the chosen one as any build.

    # here (needs the train extra and the datasets): the fine-tuning windows, exactly as `bastion train` builds them
    python tools/gpu_finetune.py pack --data ../shared/datasets --out .dev/windows.npz
    # there (repository checkout with .dev/ carried; nothing else installed):
    python tools/gpu_finetune.py run --windows .dev/windows.npz --out "$OUT" --variants 2:13,1:13,3:13,2:14
    # here again: export slot A (or B), then refit the heads, tier 1 and thresholds
    python tools/gpu_finetune.py unpack --weights RETURNED_DIR --slot A --out /tmp/model
    bastion train --heads-only --data ../shared/datasets --out /tmp/model

A variant `E:S` is E full passes with seed S, continued from the model given with `--from` (default: the embedded
one) at the `--continue-from` learning rates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FROM = ROOT / "src" / "bastion" / "models" / "default"


def _import_training_code() -> None:
    """Make `bastion.train.finetune` importable without running `bastion/__init__.py` (which needs the runtime
    dependencies a bare GPU machine lacks); the fine-tuning code itself needs only numpy, yaml, torch, transformers."""
    if "bastion" not in sys.modules:
        pkg = types.ModuleType("bastion")
        pkg.__path__ = [str(ROOT / "src" / "bastion")]
        sys.modules["bastion"] = pkg


def _pack_items(items: list, prefix: str, out: dict, flags: np.ndarray | None = None) -> None:
    lens = np.array([len(i[0]) for i in items], dtype=np.int64)
    out[prefix + "ids"] = np.concatenate([np.asarray(i[0], dtype=np.uint16) for i in items])
    out[prefix + "off"] = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    out[prefix + "task"] = np.array([i[1] for i in items], dtype=np.int8)
    out[prefix + "label"] = np.array([i[2] for i in items], dtype=np.int8)
    out[prefix + "cat"] = np.array([i[3] for i in items], dtype=np.int8)
    out[prefix + "flag"] = np.zeros(len(items), dtype=np.int8) if flags is None else flags


def _unpack_items(z, prefix: str) -> tuple[list[list[int]], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    ids, off = z[prefix + "ids"].astype(np.int64), z[prefix + "off"]
    seqs = [ids[off[i] : off[i + 1]].tolist() for i in range(len(off) - 1)]
    return seqs, z[prefix + "task"], z[prefix + "label"], z[prefix + "cat"], z[prefix + "flag"]


# validation flags: benign prompts that only sound dangerous, benign "act as" role-play
SOUNDS_DANGEROUS, ROLE_PLAY = 1, 2


def pack_examples(enc, exs: list, out_path: Path, base_config: dict, meta: dict) -> dict:  # noqa: ANN001
    """Every training window (`_encode`, as a continued build reads them) and one window per calibration and
    validation example, as a compact npz that travels (uint16 token ids)."""
    _import_training_code()
    from bastion.train.finetune import _encode

    out: dict[str, np.ndarray] = {}
    _pack_items(_encode(enc, [e for e in exs if e.split == "train"]), "tr_", out)
    counts = {"train": int(len(out["tr_task"]))}
    for split, prefix in (("calib", "ca_"), ("val", "va_")):
        ev = [e for e in exs if e.split == split]
        # _encode emits single texts first, then pairs; order the examples the same way so flags line up
        ev = [e for e in ev if e.task in ("prompt", "attack")] + [e for e in ev if e.task in ("response", "refusal")]
        items = _encode(enc, ev, max_windows=1)
        if len(items) != len(ev):
            raise ValueError(f"{split}: {len(items)} windows for {len(ev)} examples")
        flags = np.array([SOUNDS_DANGEROUS if e.task == "prompt" and e.source in ("bpp:coconot_contrast", "bpp:jbb_benign")
                          else ROLE_PLAY if e.source == "awesome_chatgpt_prompts" else 0 for e in ev], dtype=np.int8)
        _pack_items(items, prefix, out, flags)
        counts[split] = len(items)
    out["meta"] = np.array(json.dumps({**meta, "base_config": base_config, "windows": counts}))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_path, **out)
    return counts


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    pos, neg = p[y == 1], p[y == 0]
    if not len(pos) or not len(neg):
        return float("nan")
    rk = np.argsort(np.argsort(np.concatenate([pos, neg]), kind="stable")) + 1
    return float((rk[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def proxy_scores(model, evals: dict, device: str) -> dict:  # noqa: ANN001
    """Each task's validation F1 (threshold chosen on calibration as a build chooses it), AUC and FPR under the jointly trained heads,
    the sounds-dangerous and role-play FPRs, and `proxy`: the sum of the four F1s and AUCs (only its ranking
    matters: a build refits three of the heads afterwards)."""
    import torch

    from bastion.train.finetune import TASKS
    from bastion.train.fit import _best_f1_threshold, metrics

    model.enc.to(device).eval()
    model.heads.to(device).eval()
    probs = {}
    with torch.no_grad():
        for k, (seqs, task, _label, _cat, _flag) in evals.items():
            order = np.argsort([len(x) for x in seqs], kind="stable")
            p = np.zeros(len(seqs), dtype=np.float32)
            for b in range(0, len(order), 256):
                idx = order[b : b + 256]
                L = max(len(seqs[i]) for i in idx)
                ids = torch.zeros((len(idx), L), dtype=torch.long)
                mask = torch.zeros_like(ids)
                for r, i in enumerate(idx):
                    ids[r, : len(seqs[i])] = torch.as_tensor(seqs[i])
                    mask[r, : len(seqs[i])] = 1
                emb = model.embed(ids.to(device), mask.to(device))
                logits = torch.stack([model.heads[t](emb).squeeze(-1) for t in TASKS], 1).float().cpu().numpy()
                p[idx] = 1 / (1 + np.exp(-logits[np.arange(len(idx)), task[idx]]))
            probs[k] = p
    model.enc.to("cpu")
    model.heads.to("cpu")
    res: dict = {}
    proxy = 0.0
    for ti, name in enumerate(TASKS):
        mc, mv = evals["ca"][1] == ti, evals["va"][1] == ti
        yc, yv, pv, fv = evals["ca"][2][mc], evals["va"][2][mv], probs["va"][mv], evals["va"][4][mv]
        if not len(yc) or not len(yv):
            continue
        thr = _best_f1_threshold(yc, probs["ca"][mc])  # the rule a build's thresholds follow
        m = metrics(yv, pv, thr)
        r = {"threshold": thr, "f1": m["f1"], "auc": round(_auc(yv, pv), 4), "fpr": m["fpr"]}
        for flag, key in ((SOUNDS_DANGEROUS, "sounds_dangerous_fpr"), (ROLE_PLAY, "role_play_fpr")):
            if (fv == flag).any():
                r[key] = round(float((pv[fv == flag] >= thr).mean()), 4)
        res[name] = r
        proxy += r["f1"] + (0.0 if np.isnan(r["auc"]) else r["auc"])
    res["proxy"] = round(proxy, 4)
    return res


def quantize_rows(model) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:  # noqa: ANN001
    """The encoder's matrices as int8 with one fp32 scale per row, vectors as fp32, and the heads: (embeddings,
    everything else), each under 16 MB for a 384-wide MiniLM."""
    from bastion.train.finetune import head_arrays

    emb: dict[str, np.ndarray] = {}
    rest: dict[str, np.ndarray] = {}
    for k, v in model.enc.state_dict().items():
        a = v.detach().float().cpu().numpy()
        d = emb if k.startswith("embeddings.") else rest
        if a.ndim == 2:
            scale = np.maximum(np.abs(a).max(axis=1, keepdims=True), 1e-12) / 127.0
            d[k + ".q8"] = np.round(a / scale).astype(np.int8)
            d[k + ".scale"] = scale.astype(np.float32)
        else:
            d[k] = a.astype(np.float32)
    for k, v in head_arrays(model).items():
        rest["head:" + k] = v
    return emb, rest


def dequantize_rows(*parts: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The inverse of `quantize_rows`: (encoder state dict, heads)."""
    sd: dict[str, np.ndarray] = {}
    heads: dict[str, np.ndarray] = {}
    for part in parts:
        for k, v in part.items():
            if k.startswith("head:"):
                heads[k[5:]] = v
            elif k.endswith(".q8"):
                sd[k[:-3]] = v.astype(np.float32) * part[k[:-3] + ".scale"]
            elif not k.endswith(".scale"):
                sd[k] = v
    return sd, heads


def _config_dir(base_config: dict) -> str:
    """A directory holding only the architecture's config.json: a continued model reads every weight from the
    model it continues (`finetune._Model` with `init`), never base weights."""
    import tempfile

    where = Path(tempfile.mkdtemp(prefix="bastion-base-config-"))
    (where / "config.json").write_text(json.dumps(base_config))
    return str(where)


def run(a: argparse.Namespace) -> None:
    t0 = time.time()
    _import_training_code()
    import torch
    import transformers

    from bastion.train.finetune import _Model, train_encoder
    from bastion.train.fit import CONTINUE_HEAD_LR_SCALE, CONTINUE_LR

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    logf = open(out / "log.txt", "a")  # noqa: SIM115

    def log(s: str) -> None:
        line = f"[{time.time() - t0:6.1f}s] {s}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    if a.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    with np.load(a.windows) as z:
        meta = json.loads(str(z["meta"]))
        s, t, lab, c, _ = _unpack_items(z, "tr_")
        items = [(s[i], int(t[i]), int(lab[i]), int(c[i])) for i in range(len(s))]
        evals = {k: _unpack_items(z, k + "_") for k in ("ca", "va")}
    init = Path(a.from_)
    start = json.loads((init / "manifest.json").read_text()).get("version") if (init / "manifest.json").is_file() else None
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, {a.device}; {len(items)} windows; "
        f"continuing from {start}")
    results: dict = {"from": start, "packed": meta}
    base = _config_dir(meta["base_config"])
    results["start"] = proxy_scores(_Model(torch, base, 13, init=init), evals, a.device)
    (out / "metrics.json").write_text(json.dumps(results, indent=1))
    log(f"start: {results['start']}")
    rate = None
    kept: list[tuple[float, str]] = []
    slots: dict[str, str] = {}
    for spec in a.variants.split(","):
        epochs, seed = float(spec.split(":")[0]), int(spec.split(":")[1])
        name = f"e{epochs:g}_s{seed}"
        left = a.deadline - (time.time() - t0)
        planned = a.steps or round(epochs * len(items) / 32)
        if rate and planned / rate + 30 > left:
            log(f"skip {name}: about {planned / rate + 30:.0f} s needed, {left:.0f} s left")
            continue
        stats: dict = {}
        schedule = {"max_steps": a.steps} if a.steps else {"epochs": epochs}
        model = train_encoder(items, base, seed=seed, minutes=max(0.2, (left - 25) / 60), lr=CONTINUE_LR,
                              head_lr_scale=CONTINUE_HEAD_LR_SCALE, device=a.device, init=init,
                              log=lambda _s: None, stats=stats, **schedule)
        rate = stats["steps"] / max(stats["seconds"], 1e-3)
        r = proxy_scores(model, evals, a.device)
        r.update(steps=stats["steps"], planned=planned, seconds=stats["seconds"], epochs=epochs, seed=seed,
                 device=stats["device"])
        results[name] = r
        (out / "metrics.json").write_text(json.dumps(results, indent=1))
        log(f"{name}: {r}")
        kept = sorted([*kept, (r["proxy"], name)], reverse=True)
        top = [n for _, n in kept[:2]]
        if name in top:
            slot = next((sl for sl in ("A", "B") if slots.get(sl) not in top), None)
            emb, rest = quantize_rows(model)
            np.savez(out / f"{slot}_emb.npz", **emb)
            np.savez(out / f"{slot}_rest.npz", **rest)
            (out / f"{slot}.json").write_text(json.dumps({"name": name, "from": start, **r}, indent=1))
            slots[slot] = name
            log(f"{name} kept in slot {slot}")
        del model
    log("done")


def unpack(a: argparse.Namespace) -> None:
    """Export a returned slot as a model directory ready for `bastion train --heads-only`."""
    import torch
    import transformers

    from bastion.train.export import export_module
    from bastion.train.fit import CONTINUE_LR

    src = Path(a.weights)
    info = json.loads((src / f"{a.slot}.json").read_text())
    with np.load(src / f"{a.slot}_emb.npz") as e, np.load(src / f"{a.slot}_rest.npz") as r:
        sd, heads = dequantize_rows(dict(e), dict(r))
    init = Path(a.from_)
    enc = transformers.BertModel(_base_config())
    missing = [k for k in enc.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=False).missing_keys
               if not k.startswith("pooler.")]
    if missing:
        sys.exit(f"error: {src} slot {a.slot} lacks {len(missing)} encoder weights, e.g. {missing[0]}")
    out = Path(a.out)
    export_module(enc, out)
    np.savez_compressed(out / "heads.npz", **heads)
    start = json.loads((init / "manifest.json").read_text())
    # what `bastion train --heads-only` carries into the model card
    (out / "manifest.json").write_text(json.dumps({"version": f"gpu-{info['name']}", "finetune": {
        "continued_from": start.get("version"), "from_finetune": start.get("finetune"), "steps": info["steps"],
        "epochs": info["epochs"], "seed": info["seed"], "device": info["device"], "trained_seconds": info["seconds"],
        "lr": CONTINUE_LR, "tool": "tools/gpu_finetune.py"}}, indent=1))
    print(f"wrote {out}: now run  bastion train --heads-only --out {out}")


def _base_config():  # noqa: ANN202
    import transformers

    from bastion.train.export import base_model_path

    return transformers.BertConfig.from_pretrained(str(base_model_path()))


def pack(a: argparse.Namespace) -> None:
    from bastion.models.runtime import Encoder
    from bastion.train.export import base_model_path
    from bastion.train.fit import TrainConfig, prepare_examples

    init = Path(a.from_)
    exs = prepare_examples(TrainConfig(data_root=Path(a.data), out_dir=init, seed=a.seed))
    base = json.loads((base_model_path() / "config.json").read_text())
    start = json.loads((init / "manifest.json").read_text()).get("version")
    counts = pack_examples(Encoder(init, spin=False), exs, Path(a.out), base, {"from": start, "seed": a.seed})
    print(f"wrote {a.out}: {counts} windows ({Path(a.out).stat().st_size / 2**20:.1f} MiB)")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="tokenise the fine-tuning data here")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets"))
    p.add_argument("--from", dest="from_", default=str(DEFAULT_FROM))
    p.add_argument("--seed", type=int, default=13, help="the calibration draw and the seeded copies")
    p.add_argument("--out", required=True)
    r = sub.add_parser("run", help="fine-tune on the GPU machine")
    r.add_argument("--windows", required=True)
    r.add_argument("--from", dest="from_", default=str(DEFAULT_FROM))
    r.add_argument("--out", default=os.environ.get("OUT", "gpu_out"))
    r.add_argument("--variants", default="2:13,1:13,3:13,2:14", help="EPOCHS:SEED,... in order of priority")
    r.add_argument("--deadline", type=float, default=470.0, help="seconds; later variants that would not fit are skipped")
    r.add_argument("--device", default="cuda")
    r.add_argument("--steps", type=int, default=0, help="steps per variant instead of full passes (a smoke test)")
    u = sub.add_parser("unpack", help="export a returned encoder here")
    u.add_argument("--weights", required=True, help="the directory run wrote (its --out)")
    u.add_argument("--slot", default="A", choices=["A", "B"])
    u.add_argument("--from", dest="from_", default=str(DEFAULT_FROM))
    u.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    {"pack": pack, "run": run, "unpack": unpack}[a.cmd](a)


if __name__ == "__main__":
    main()

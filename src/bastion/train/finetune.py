"""Multi-task fine-tuning of MiniLM-L6 for the four guard checks (CPU, time-budgeted).

One shared encoder (mean pooling + L2 normalisation, as in the shipped ONNX graph) with five heads:
prompt harm, prompt attack, response harm, refusal (binary) and hazard category (14-way, on harmful
prompts). Responses are encoded as a pair: PAIR_CTX tokens of the prompt (its opening and end), [SEP], then a
window of the response, exactly as the runtime does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bastion.models.runtime import CLS, PAD, SEP, Encoder, pair_windows
from bastion.taxonomy import HAZARD_CODES

from .data import Example

TASKS = ("harm", "attack", "response", "refusal")
_TASK_OF = {"prompt": "harm", "attack": "attack", "response": "response", "refusal": "refusal"}


def _encode(enc: Encoder, exs: list[Example], max_windows: int = 2) -> list[tuple[list[int], int, int, int]]:
    """(ids, task index, label, category index or -1) per training window."""
    out = []
    single = [e for e in exs if e.task in ("prompt", "attack")]
    # runtime=False: the training layout (fit.TRAIN_RUNTIME_LAYOUT)
    wins, owner = enc.windows([e.text for e in single], max_windows=max_windows, runtime=False)
    for w, o in zip(wins, owner, strict=False):
        e = single[o]
        cat = HAZARD_CODES.index(e.category) if (e.task == "prompt" and e.label == 1 and e.category) else -1
        out.append(([CLS, *w.tolist(), SEP], TASKS.index(_TASK_OF[e.task]), e.label, cat))
    pairs = [e for e in exs if e.task in ("response", "refusal")]
    seqs, owner = pair_windows(enc, [e.context or "" for e in pairs], [e.text for e in pairs], max_windows,
                               runtime=False)
    for ids, o in zip(seqs, owner, strict=True):
        e = pairs[o]
        out.append((ids, TASKS.index(_TASK_OF[e.task]), e.label, -1))
    return out


def _batches(items: list, batch: int, rng: random.Random) -> list[list]:
    """Length-bucketed batches of a single task each, in random order."""
    by_task: dict[int, list] = {}
    for it in items:
        by_task.setdefault(it[1], []).append(it)
    out = []
    for _t, its in by_task.items():
        rng.shuffle(its)
        # sort within chunks of 50 batches so padding stays small but order stays random
        chunk = batch * 50
        for c in range(0, len(its), chunk):
            part = sorted(its[c : c + chunk], key=lambda x: len(x[0]))
            out.extend(part[i : i + batch] for i in range(0, len(part), batch))
    rng.shuffle(out)
    return out


def new_mlp_head(torch, dims: int = 384, hidden: int = 256):
    """The binary head architecture the runtime's MLP reads: Linear -> ReLU -> Linear(1)."""
    nn = torch.nn
    return nn.Sequential(nn.Linear(dims, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def mlp_head_arrays(name: str, seq) -> dict[str, np.ndarray]:
    """A head made by `new_mlp_head`, as the runtime's `heads.npz` arrays (`{name}.W0` ... `{name}.b1`)."""
    out = {}
    for k, layer in ((0, seq[0]), (1, seq[2])):
        out[f"{name}.W{k}"] = layer.weight.detach().numpy().T.copy()
        out[f"{name}.b{k}"] = layer.bias.detach().numpy().copy()
    return out


def load_mlp_head(torch, seq, arrays: dict[str, np.ndarray], name: str) -> None:
    """The inverse of `mlp_head_arrays`: set a `new_mlp_head` from the runtime's arrays."""
    with torch.no_grad():
        for k, layer in ((0, seq[0]), (1, seq[2])):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(arrays[f"{name}.W{k}"].T)))
            layer.bias.copy_(torch.from_numpy(np.asarray(arrays[f"{name}.b{k}"]).reshape(-1)))


class _Model:
    def __init__(self, torch, base_path: str, seed: int, init: Path | None = None) -> None:
        """Base MiniLM with new heads, or (`init`: a bastion model directory) that model's dequantised int8
        encoder and its heads; with `init`, `base_path` needs only the architecture's config.json."""
        from transformers import AutoConfig, AutoModel

        torch.manual_seed(seed)
        nn = torch.nn
        self.torch = torch
        if init is None:
            self.enc = AutoModel.from_pretrained(base_path).float()  # base weights may be stored as fp16
        else:
            # every weight comes from `init`: no base weights are read. `from_pretrained` draws nothing from the
            # seeded generator and `from_config` does (random init), so its state is put back: a seed gives the
            # same fine-tuning as when the base weights were loaded first.
            state = torch.get_rng_state()
            self.enc = AutoModel.from_config(AutoConfig.from_pretrained(base_path)).float()
            torch.set_rng_state(state)
        self.heads = nn.ModuleDict({t: new_mlp_head(torch) for t in TASKS})
        self.heads["cats"] = nn.Linear(384, 14)
        if init is not None:
            from .export import dequantized_state_dict

            sd = {k: torch.from_numpy(v) for k, v in dequantized_state_dict(init / "encoder.onnx").items()}
            missing = [k for k in self.enc.load_state_dict(sd, strict=False).missing_keys if not k.startswith("pooler.")]
            if missing:
                raise ValueError(f"{init}/encoder.onnx lacks {len(missing)} encoder weights, e.g. {missing[0]}")
            with np.load(init / "heads.npz") as z:
                arrays = {k: z[k] for k in z.files}
            for t in TASKS:
                load_mlp_head(torch, self.heads[t], arrays, t)
            with torch.no_grad():
                self.heads["cats"].weight.copy_(torch.from_numpy(np.ascontiguousarray(arrays["cats.W0"].T)))
                self.heads["cats"].bias.copy_(torch.from_numpy(arrays["cats.b0"]))

    def parameters(self):
        return list(self.enc.parameters()) + list(self.heads.parameters())

    def embed(self, ids, mask):
        h = self.enc(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return self.torch.nn.functional.normalize(pooled, p=2, dim=1)


def _epoch_batches(items: list, batch: int, rng: random.Random, max_steps: int, epochs: float | None) -> list[list]:
    """The batch sequence: `max_steps` steps into one shuffled pass (the CPU recipe), or `epochs` full passes,
    each reshuffled, when given."""
    first = _batches(items, batch, rng)
    if epochs is None:
        return first[: min(len(first), max_steps)]
    out = list(first)
    while len(out) < epochs * len(first):
        out.extend(_batches(items, batch, rng))
    return out[: round(epochs * len(first))]


def train_encoder(items: list, base_path: str, seed: int = 13, minutes: float = 35.0, max_steps: int = 1250,
                  epochs: float | None = None, batch: int = 32, lr: float = 6e-5, head_lr_scale: float = 30.0,
                  device: str = "cpu", freeze_word_embeddings: bool = False, init: Path | None = None,
                  log: Callable[[str], None] = print, stats: dict | None = None) -> _Model:
    """Multi-task fine-tuning on encoded items (see `_encode`); returns the model in eval mode, on the CPU.

    Seeded: on the CPU a seed gives the same weights; on a GPU the order of batches is the same but
    floating-point reductions are not bit-reproducible."""
    import torch

    rng = random.Random(seed)
    batches = _epoch_batches(items, batch, rng, max_steps, epochs)
    log(f"fine-tuning on {len(items)} windows: {len(batches)} steps of batch {batch} on {device}, "
        f"budget {minutes:.0f} min")
    model = _Model(torch, base_path, seed, init=init)
    if freeze_word_embeddings:
        # the vocabulary the training data never reaches keeps the geometry of the rows it does reach
        model.enc.embeddings.word_embeddings.weight.requires_grad_(False)
    model.enc.to(device)
    model.heads.to(device)
    # The heads start from random weights and read L2-normalised embeddings (tiny inputs): at the encoder's
    # learning rate their logits stay near 0 and every score sits near 0.5, so they learn at head_lr_scale x lr.
    enc_params = [q for q in model.enc.parameters() if q.requires_grad]
    opt = torch.optim.AdamW([{"params": enc_params, "lr": lr, "scale": 1.0},
                             {"params": list(model.heads.parameters()), "lr": lr * head_lr_scale,
                              "scale": head_lr_scale}], weight_decay=0.01)
    planned = len(batches)
    warm = 30
    t0 = time.time()
    bce = torch.nn.BCEWithLogitsLoss()
    ce = torch.nn.CrossEntropyLoss()
    model.enc.train()
    losses: list[float] = []
    done = 0
    for step, b in enumerate(batches, 1):
        if time.time() - t0 > minutes * 60:
            log(f"wall-time budget reached at step {step} of {planned}: stopping early (not reproducible)")
            break
        frac = step / max(1, planned)
        cur = lr * (step / warm if step < warm else max(0.05, 1 - frac))
        for g in opt.param_groups:
            g["lr"] = cur * g["scale"]
        L = max(len(x[0]) for x in b)
        ids = torch.full((len(b), L), PAD, dtype=torch.long)
        mask = torch.zeros((len(b), L), dtype=torch.long)
        for r, x in enumerate(b):
            ids[r, : len(x[0])] = torch.as_tensor(x[0])
            mask[r, : len(x[0])] = 1
        task = TASKS[b[0][1]]
        y = torch.tensor([float(x[2]) for x in b], device=device)
        emb = model.embed(ids.to(device), mask.to(device))
        loss = bce(model.heads[task](emb).squeeze(-1), y)
        cats = torch.tensor([x[3] for x in b], device=device)
        sel = cats >= 0
        if sel.any():
            loss = loss + 0.5 * ce(model.heads["cats"](emb[sel]), cats[sel])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        done = step
        if step % 50 == 0 or step == planned:
            log(f"step {step}/{planned} loss {np.mean(losses[-50:]):.4f} ({time.time() - t0:.0f}s)")
    model.enc.eval().to("cpu")
    model.heads.to("cpu")
    if stats is not None:
        stats["steps"] = done
        stats["seconds"] = round(time.time() - t0, 1)
        stats["device"] = torch.cuda.get_device_name(device) if str(device).startswith("cuda") else str(device)
    return model


def head_arrays(model: _Model) -> dict[str, np.ndarray]:
    """A trained model's heads in the runtime's `heads.npz` format."""
    heads: dict[str, np.ndarray] = {}
    for t in TASKS:
        heads.update(mlp_head_arrays(t, model.heads[t]))
    heads["cats.W0"] = model.heads["cats"].weight.detach().numpy().T.copy()
    heads["cats.b0"] = model.heads["cats"].bias.detach().numpy().copy()
    return heads


def finetune(exs: list[Example], enc: Encoder, base_path: str, out_dir: Path, seed: int = 13,
             minutes: float = 35.0, max_steps: int = 1250, epochs: float | None = None, batch: int = 32,
             lr: float = 6e-5, head_lr_scale: float = 30.0, threads: int | None = None, device: str = "cpu",
             init: Path | None = None, log: Callable[[str], None] = print,
             stats: dict | None = None) -> dict[str, np.ndarray]:
    """Fine-tune for `max_steps` (or `epochs` full passes), reproducible for a seed on the CPU, stopping early
    only if the wall-time budget runs out; export the encoder to `out_dir/encoder.onnx` (int8). Returns the head
    weights in runtime format; `stats` (if given) receives the number of steps run (fewer than planned if the
    budget ran out)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    stats = {} if stats is None else stats
    model = train_encoder(_encode(enc, exs), base_path, seed=seed, minutes=minutes, max_steps=max_steps,
                          epochs=epochs, batch=batch, lr=lr, head_lr_scale=head_lr_scale, device=device, init=init,
                          log=log, stats=stats)
    from .export import export_module

    export_module(model.enc, out_dir)
    log(f"fine-tuned {stats['steps']} steps in {stats['seconds']:.0f}s on {stats['device']}; exported int8 encoder")
    return head_arrays(model)


__all__ = ["finetune", "head_arrays", "train_encoder"]

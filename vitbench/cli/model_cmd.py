"""`vitbench model`: the Triton ViT vs HF eager / SDPA and torch.compile (parses, delegates)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from vitbench.cli._suite import NoProgress, Timer, dtype_option, out_option, resume_option, run


def model(
    batch: Annotated[Optional[str], typer.Option(
        "--batch", help="Batch sizes, comma separated, e.g. 1,8,32 (default: the config's; "
                        "1,2 without a GPU).",
    )] = None,
    model_name: Annotated[Optional[str], typer.Option(
        "--model", help="Named config: vit-base-patch16-224, vit-base-patch32-224, "
                        "vit-large-patch16-224, vit-huge-patch14-224, deit-tiny-patch16-224, "
                        "deit-small-patch16-224, deit-base-patch16-224, vit-tiny-test "
                        "(default: the config's; vit-tiny-test without a GPU).",
    )] = None,
    dtype: Annotated[Optional[str], dtype_option(
        "the config's, bf16; fp32 without a GPU")] = None,
    providers: Annotated[Optional[str], typer.Option(
        "--providers", help="Comma list from triton, hf-eager, hf-sdpa, torch-compile (default: "
                            "all four; torch-compile is left out without a GPU, where it compiles "
                            "C++ for about a minute per batch size).",
    )] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="Sweep YAML (default: configs/model.yaml); options given here override it.",
    )] = None,
    weights: Annotated[Optional[str], typer.Option(
        "--weights", help="'random' (HF init with a fixed seed; the default), a directory written "
                          "by save_pretrained (its config.json replaces --model's), or a hub id "
                          "(needs the hub or its local cache; HF_HUB_OFFLINE is honoured).",
    )] = None,
    no_graphs: Annotated[bool, typer.Option(
        "--no-graphs", help="Run the triton provider without CUDA graphs (graphs are on by "
                            "default on a GPU).",
    )] = False,
    cls_only: Annotated[Optional[bool], typer.Option(
        "--cls-only/--no-cls-only", help="Triton provider, checkpoints with a classifier head: "
                                         "the last layer computes only the CLS row after its "
                                         "attention, as only logits are compared and timed "
                                         "(default: the config's, on).",
    )] = None,
    precision: Annotated[Optional[str], typer.Option(
        "--precision", help="fp32 rows only, comma separated, each its own labelled rows: ieee "
                            "(exact fp32 matmuls, default), tf32, or a tensor-core split that "
                            "keeps fp32 accuracy: bf16x6, tf32x3 (bf16x3: nearly).",
    )] = None,
    compile_mode: Annotated[Optional[str], typer.Option(
        "--compile-mode", help="torch.compile mode of the torch-compile provider: default, "
                               "reduce-overhead (the config's default on a GPU), max-autotune, "
                               "max-autotune-no-cudagraphs.",
    )] = None,
    timer: Timer = None,
    out: Annotated[Optional[Path], out_option("results/<device>")] = None,
    resume: Annotated[bool, resume_option("model")] = False,
    no_progress: NoProgress = False,
) -> None:
    """Measure the Triton ViT against HF (eager, SDPA) and torch.compile, per batch size.

    Every provider runs the same weights on the same images and is checked against HF in float64
    before timing; rows go to <out>/model-<run_id>.csv (suite=model, one per batch x provider),
    with images/s, TFLOP/s, % of the measured peak and the speedup vs hf-sdpa.
    """
    from vitbench.suites.model import plan_model

    plan = plan_model(batch=batch, model=model_name, dtype=dtype, providers=providers,
                      config=config, weights=weights, graphs=not no_graphs, timer=timer,
                      precision=precision, compile_mode=compile_mode, cls_only=cls_only)
    run(plan, out=out, resume=resume, no_progress=no_progress)

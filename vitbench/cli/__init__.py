"""The `vitbench` command line: parses options and delegates to library modules.

User mistakes raise `VitbenchError`; `main()` prints them as one line and exits 2.
Set VITBENCH_DEBUG=1 to get the full traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from vitbench.errors import VitbenchError

app = typer.Typer(
    name="vitbench",
    help="Run, check and measure Vision Transformer inference written in Triton.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Run, check and measure Vision Transformer inference written in Triton."""
    import importlib

    matmul_mod = importlib.import_module("vitbench.kernels.matmul")  # the module, not the function
    if matmul_mod.MODE not in matmul_mod.MATMUL_MODES:  # else only the first GEMM would say so
        raise VitbenchError(f"VITBENCH_MATMUL={matmul_mod.MODE!r}: choose one of "
                            f"{', '.join(matmul_mod.MATMUL_MODES)} (or leave it unset: auto)")
    importlib.import_module("vitbench.kernels._common").tune_graph_below_ms()  # a bad value: exit 2
    matmul_mod.tma_min_rows()  # likewise
    matmul_mod.split_k_setting()
    importlib.import_module("vitbench.kernels._gelu").fast_gelu_setting()
    importlib.import_module("vitbench.kernels._common").tune_cold()
    importlib.import_module("vitbench.kernels._lnfold").ln_fold_setting()
    importlib.import_module("vitbench.kernels.attention").attn_tail_setting()
    importlib.import_module("vitbench.kernels.matmul_tma").tail_split_setting()
    importlib.import_module("vitbench.kernels.matmul_tma").tf32_tma_setting()
    importlib.import_module("vitbench.kernels._rowsplit").row_split_setting()
    importlib.import_module("vitbench.kernels.matmul_splitk").two_pass_setting()
    importlib.import_module("vitbench.kernels.matmul_gluon").gluon_setting()
    importlib.import_module("vitbench.kernels.matmul_fma").fma_setting()
    importlib.import_module("vitbench.kernels.matmul_fma_splitk").fma_split_k_setting()
    pdl = importlib.import_module("vitbench.kernels._pdl")
    pdl.pdl_setting()  # likewise
    pdl.check_device()


from vitbench.cli import env_cmd, kernels_cmd, model_cmd, profile_cmd, report_cmd  # noqa: E402

# Each command lives in its own module; registered here, explicitly, in help order.
app.command("env")(env_cmd.env)
app.command("kernels")(kernels_cmd.kernels)
app.command("model")(model_cmd.model)
app.command("report")(report_cmd.report)
app.command("compare")(report_cmd.compare)
app.command("profile")(profile_cmd.profile)


def main() -> None:
    try:
        app()
    except VitbenchError as exc:
        if os.environ.get("VITBENCH_DEBUG"):
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)

"""Print the device and the library versions."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vitbench.envinfo import environment


def env(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Show the device (GPU name, SMs, memory, compute capability) and library versions."""
    info = environment()
    if as_json:
        print(json.dumps(info, indent=2))
        return
    console = Console()
    table = Table(title="vitbench environment", show_header=False)
    dev = info["device"]
    if dev["backend"] == "interpreter":
        table.add_row("device", f"[yellow]{info['note']}[/]")
    else:
        table.add_row("device", dev["name"])
        table.add_row("SMs", str(dev["sm_count"]))
        table.add_row("memory", f"{dev['memory_gib']} GiB")
        table.add_row("compute capability", dev["compute_capability"])
        table.add_row("driver / CUDA", f"{dev['driver']} / {dev['cuda']}")
        table.add_row("GPU", f"{dev['pci_bus'] or '?'} ({dev['uuid'] or 'no uuid'})"
                      + (f", CUDA_VISIBLE_DEVICES={dev['visible_devices']}" if dev["visible_devices"] else ""))
    table.add_row("backend", dev["backend"])
    for name, ver in info["versions"].items():
        table.add_row(name, str(ver))
    for name, value in info["settings"].items():
        table.add_row(name, value)
    console.print(table)

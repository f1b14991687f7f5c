"""Plotly figures for the model suite: latency and images/s vs batch, speedups vs HF and compile."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from vitbench.report.charts import (
    add_band, add_line, axis_type, esc, finish, hover_text, no_data_note, provider_colors,
    ratio_axis, series, speedups, variant_label, variants,
)
from vitbench.report.load import Run

MODEL_BASELINES = ["hf-eager", "hf-sdpa", "torch-compile"]
# Grid cells (row, col) of the five panels on a 2 x 6 grid: two wide panels, then three.
_SPECS = [[{"colspan": 3}, None, None, {"colspan": 3}, None, None],
          [{"colspan": 2}, None, {"colspan": 2}, None, {"colspan": 2}, None]]
_LATENCY, _IPS, _SPEEDUP = (1, 1), (1, 4), [(2, 1), (2, 3), (2, 5)]


def _x(df: pd.DataFrame) -> pd.Series:
    """Batch size on the x-axis (the size column when a row has no batch)."""
    return df["batch"].fillna(df["size"])


def model_figure(run: Run, model: str, df: pd.DataFrame, dtype: str, precision: str,
                 colors: dict[str, str]) -> go.Figure:
    v = variant_label(dtype, precision)
    titles = [f"{v} · latency per forward (ms), p10–p90 band", f"{v} · throughput (images/s)"]
    titles += [f"{v} · speedup vs {b}" for b in MODEL_BASELINES]
    fig = make_subplots(rows=2, cols=6, specs=_SPECS, subplot_titles=titles,
                        horizontal_spacing=0.06, vertical_spacing=0.16)
    df = df.assign(_x=_x(df))
    df["_ips"] = df["items_per_s"].fillna(df["_x"] / df["median_ms"] * 1e3)
    ups = {b: speedups(df, b) for b in MODEL_BASELINES}
    drawn = df[df["median_ms"].notna()]
    for name, prov, sweep, g in series(drawn, "_x"):
        color = colors.get(prov, "#444")
        x = g["_x"]
        add_band(fig, x, g["p10_ms"], g["p90_ms"], color, name, *_LATENCY)
        add_line(fig, g, x, g["median_ms"], name, color, [hover_text(r) for _, r in g.iterrows()],
                 True, *_LATENCY, sweep)
        add_line(fig, g, x, g["_ips"], name, color,
                 [hover_text(r, f"{i:.4g} images/s") for (_, r), i in zip(g.iterrows(), g["_ips"])],
                 False, *_IPS, sweep)
        for b, cell in zip(MODEL_BASELINES, _SPEEDUP):
            if prov != b:
                s = ups[b][g.index]
                add_line(fig, g, x, s, name, color,
                         [hover_text(r, f"{u:.3g}× vs {esc(b)}") for (_, r), u in
                          zip(g.iterrows(), s)], False, *cell, sweep)
    batches = sorted(drawn["_x"].dropna().unique())
    xaxis = dict(type="log" if len(batches) > 1 and batches[0] > 0 else "linear",
                 tickvals=batches, ticktext=[f"{b:g}" for b in batches], title_text="batch")
    for cell in [_LATENCY, _IPS, *_SPEEDUP]:
        fig.update_xaxes(**xaxis, row=cell[0], col=cell[1])
    ytype = axis_type(drawn["median_ms"])
    fig.update_yaxes(title_text="ms", type=ytype, rangemode="tozero" if ytype == "linear"
                     else "normal", row=1, col=1)
    fig.update_yaxes(title_text="images/s", rangemode="tozero", row=1, col=4)
    for b, (r, c) in zip(MODEL_BASELINES, _SPEEDUP):
        fig.update_yaxes(**ratio_axis(ups[b]), row=r, col=c)
        fig.add_hline(y=1, line=dict(dash="dash", color="#888", width=1), row=r, col=c)
        if not (df["provider"] == b).any():
            no_data_note(fig, f"no {esc(b)} rows in this run", r, c)
    return finish(fig, f"<b>{esc(model)}</b> — model, {esc(run.device)}", run, height=820)


def model_figures(run: Run) -> list[tuple[pd.DataFrame, go.Figure]]:
    """(rows shown, figure) pairs: one figure per model and (dtype, precision)."""
    colors = provider_colors(run.rows["provider"])
    figs = []
    for model, df in run.rows.groupby("op", sort=False):
        for dtype, precision in variants(df):
            sub = df[(df["dtype"] == dtype) & (df["precision"] == precision)]
            if sub["median_ms"].notna().any():
                figs.append((sub, model_figure(run, str(model), sub, dtype, precision, colors)))
    return figs

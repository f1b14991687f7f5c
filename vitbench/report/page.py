"""Page building blocks shared by the report and the comparison page: one self-contained HTML.

plotly.js is embedded once, inline (plotly's offline bundle); a Content-Security-Policy forbids
every network request, so the page works offline and cannot phone home. Every string taken from a
result file goes through ``html.escape``.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

import vitbench
from vitbench.report.charts import esc

# No network of any kind: scripts and styles only inline, images/fonts only from data: URLs.
CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; "
       "style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'")
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False,
                 "modeBarButtonsToRemove": ["select2d", "lasso2d"]}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;
background:#f6f7f9}
main{max-width:1500px;margin:0 auto;padding:16px 28px 60px}
h1{font-size:24px;margin:10px 0 4px}h2{font-size:20px;margin:34px 0 8px;
border-bottom:2px solid #ddd;padding-bottom:4px}h3{font-size:16px;margin:22px 0 6px}
.muted{color:#666}.small{font-size:12px}
.card{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:12px 16px;margin:10px 0}
.chart{background:#fff;border:1px solid #e1e4e8;border-radius:6px;margin:12px 0;padding:4px}
.caption{font-size:12px;color:#555;margin:2px 8px 6px}
.warn{background:#fff4e5;border:1px solid #f0b35a;color:#7a4300;border-radius:6px;
padding:8px 12px;margin:8px 0}
.danger{background:#fdecea;border:1px solid #e57373;color:#8e1c1c;border-radius:6px;
padding:8px 12px;margin:8px 0;font-weight:600}
table.meta td{padding:2px 14px 2px 0;vertical-align:top}table.meta td:first-child{color:#666;
white-space:nowrap}
.tablewrap{max-height:640px;overflow:auto;border:1px solid #e1e4e8;border-radius:6px;
background:#fff}
table.rows{border-collapse:collapse;font-size:12px;width:100%}
table.rows th{position:sticky;top:0;background:#eef1f4;cursor:pointer;user-select:none;
text-align:left;padding:5px 8px;white-space:nowrap;border-bottom:1px solid #ccd}
table.rows th[aria-sort=ascending]::after{content:" ▲"}
table.rows th[aria-sort=descending]::after{content:" ▼"}
table.rows td{padding:3px 8px;border-bottom:1px solid #f0f0f0;white-space:nowrap}
table.rows td.num{text-align:right;font-variant-numeric:tabular-nums}
table.rows tr.flag td{background:#fff1f0}table.rows tr.noisy td{background:#fffbe6}
.bad{color:#c62828;font-weight:600}.good{color:#2e7d32;font-weight:600}
input.filter{margin:6px 0;padding:4px 8px;width:320px;border:1px solid #ccd;border-radius:4px}
nav a{margin-right:12px}details pre{max-height:320px;overflow:auto;background:#f6f8fa;
padding:8px;font-size:12px}
"""

# Sort on a header click (numbers by their data-v value, empty cells last); filter by text.
JS = """
document.querySelectorAll('table.sortable').forEach(function (t) {
  t.querySelectorAll('thead th').forEach(function (th, i) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      t.querySelectorAll('thead th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function val(r) { var c = r.cells[i]; return c.hasAttribute('data-v') ?
        c.getAttribute('data-v') : c.textContent.trim(); }
      rows.sort(function (a, b) {
        var x = val(a), y = val(b);
        if (x === '' || y === '') { return (x === '') - (y === ''); }
        var nx = Number(x), ny = Number(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
document.querySelectorAll('input.filter').forEach(function (inp) {
  inp.addEventListener('input', function () {
    var q = inp.value.toLowerCase(), t = document.getElementById(inp.dataset.table);
    Array.prototype.forEach.call(t.tBodies[0].rows, function (r) {
      r.style.display = r.textContent.toLowerCase().indexOf(q) >= 0 ? '' : 'none';
    });
  });
});
"""


def fmt(v: object, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)):
        return f"{v:.{digits}g}"
    return str(v)


def figure_html(fig: go.Figure, div_id: str, caption: str = "") -> str:
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                      config=PLOTLY_CONFIG, default_width="100%")
    cap = f'<div class="caption">{caption}</div>' if caption else ""
    return f'<div class="chart">{div}{cap}</div>'


def table_html(df: pd.DataFrame, columns: Sequence[tuple[str, str]], table_id: str,
               row_class: Sequence[str] | None = None, cell_class: dict | None = None) -> str:
    """A sortable table. columns: (column, header); numbers keep their raw value in data-v.
    cell_class: {column: function(value) -> css class} for coloured cells."""
    head = "".join(f"<th>{esc(h)}</th>" for _, h in columns)
    body = []
    for i, (_, r) in enumerate(df.iterrows()):
        cells = []
        for col, _ in columns:
            v = r[col]
            cls = (cell_class or {}).get(col, lambda _v: "")(v)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                raw = "" if (isinstance(v, float) and math.isnan(v)) else repr(float(v))
                cells.append(f'<td class="num {cls}" data-v="{raw}">{esc(fmt(v))}</td>')
            else:
                cells.append(f'<td class="{cls}">{esc(fmt(v))}</td>')
        rc = row_class[i] if row_class else ""
        body.append(f'<tr class="{rc}">' + "".join(cells) + "</tr>")
    return (f'<input class="filter" data-table="{table_id}" placeholder="filter rows…">'
            f'<div class="tablewrap"><table class="rows sortable" id="{table_id}">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


def page(title: str, body: str) -> str:
    """The whole document: CSP, CSS, plotly.js (once, inline), the body, the table script."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        # plotly's own offline bundle; window.PlotlyConfig as plotly's to_html sets it
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>"
        f"<script>{get_plotlyjs()}</script></head><body><main>"
        f"<h1>{esc(title)}</h1><div class=\"muted small\">generated {now} by vitbench "
        f"{esc(vitbench.__version__)}; self-contained, works offline</div>"
        f"{body}</main><script>{JS}</script></body></html>\n"
    )

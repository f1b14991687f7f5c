"""Measurement core shared by every suite.

  runner.py    run_suite(): cases x providers -> gated, interleaved, timed rows (the API)
  case.py      Case, Provider, Repeats: what the runner measures and how long
  measure.py   one case: prepare, correctness gate, warm-up, interleaved timing
  timers.py    cold / warm / graph / host timers
  stats.py     median, p10, p90, mean, std, noise (IQR/median); geometric mean
  peaks.py     copy bandwidth and GEMM rates measured in the run; roofline -> % of peak
  metadata.py  run id, environment, git commit, config hash -> <suite>-<run_id>.meta.json
  csvio.py     row-by-row CSV + raw-sample sidecar, resume support
  schema.py    CSV columns, ROW_KEY, metadata keys (the file layout)
  progress.py, summary.py  progress bar and the end-of-run table
"""

"""Code run without Triton's interpreter for the CPU tests, in a fresh process: the GPU config
lists (defined only with the interpreter off) and offline sm_90 builds of Gluon kernels.

A fresh process, without the interpreter: once Triton's interpreter has run a kernel in a process,
compiling a Gluon kernel in that process fails (the interpreter's patches of the language stay).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PRELUDE = f"""
import json, sys
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tools")!r}]
import _sm90
from triton.experimental.gluon._runtime import GluonASTSource
out = []
"""


def without_interpreter(code: str, timeout: int = 300) -> str:
    """Run `code` in a fresh Python with TRITON_INTERPRET=0 (no kernel launches: there is no GPU);
    its stdout, or fail the calling test with its stderr."""
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def offline_builds(body: str) -> list[dict]:
    """Run `body` after a prelude that imports tools/_sm90.py (as `_sm90`), GluonASTSource and
    json, and defines `out = []`; the body appends one dict per build (from `_sm90.build`) to
    `out`. Returns `out`, or fails the calling test with the subprocess's stderr."""
    stdout = without_interpreter(_PRELUDE + body + "\nprint(json.dumps(out))\n", timeout=600)
    return json.loads(stdout.strip().splitlines()[-1])

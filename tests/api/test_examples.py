"""Every example script runs and checks itself (examples/demo.py is the lead's and runs elsewhere)."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(p for p in glob.glob(os.path.join(ROOT, "examples", "*.py")) if not p.endswith("demo.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[os.path.basename(p) for p in SCRIPTS])
def test_example_runs(script):
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("ZMLX_DSL_BACKEND", None)
    r = subprocess.run([sys.executable, script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{os.path.basename(script)} failed:\n{r.stdout}\n{r.stderr}"

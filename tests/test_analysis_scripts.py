"""The numbered analysis scripts run end to end on synthetic data (fast)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ["01_collect.py", "02_fit.py", "03_compare.py", "04_transition.py",
           "05_capacity_memft.py"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_runs_on_synthetic_data(script):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "analysis", script), "--synthetic",
                          "--bootstrap", "20"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_missing_dataset_says_how_to_merge(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "analysis", "02_fit.py"),
                          str(tmp_path / "none.nc")], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert "collect merge" in out.stderr


def test_figures_script_synthetic(tmp_path):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "analysis", "06_figures.py"),
                          "--synthetic", "--out", str(tmp_path), "--bootstrap", "20",
                          "--formats", "png", "--dpi", "60", "--only", "fig2a_law_vs_rank",
                          "methods"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "fig2a_law_vs_rank__synthetic.png").exists()
    assert (tmp_path / "methods__synthetic.png").exists()

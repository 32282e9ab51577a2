"""``benchmarks/dashboard_floor.py`` runs end to end on a small run and prints each of its figures."""

import re
import subprocess
import sys

import browser_support  # noqa: F401  (skips the module without chromium)
from browser_support import REPO


def test_floor_script_times_each_split_and_the_bundle(tmp_path):
    bundle = tmp_path / "other.min.js"
    bundle.write_text("window.__other = 1;")
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "dashboard_floor.py"), "--steps", "2001", "--classes", "41",
         "--repeats", "1", "--bundle", str(bundle)],
        capture_output=True, text=True, check=True, timeout=600, cwd=REPO,
    ).stdout
    number = r"[\d.]+ s \([\d.]+-[\d.]+\) over 1 \[[\d.]+\]"
    assert "a browser that opened the page twice before" in out
    assert "with Streamlit's Vega-Lite element" in out
    for row in ("floor: Streamlit \\+ one 3-point plotly chart", "the five views as plotly charts alone",
                "the five plotly charts with the page's widgets", "the five views on the canvas chart alone",
                "the five canvas charts with the page's widgets", "the confidence page \\(canvas\\), run read before",
                "the confidence page \\(canvas\\), run never read", "floor: Streamlit \\+ one 3-point line chart",
                "the page's five views in Altair", "the confidence page, run read before"):
        assert re.search(rf"^  {row}.*: {number}$", out, re.MULTILINE), out
    assert re.search(r"^  plotly\.min\.js \([\d.]+ MB\): \d+ ms median \[\d+\]$", out, re.MULTILINE), out
    assert re.search(r"^  other\.min\.js \(0\.0 MB\): \d+ ms median \[\d+\]$", out, re.MULTILINE), out


def test_floor_script_names_a_missing_file_or_too_few_classes(tmp_path):
    missing = tmp_path / "nope.js"
    script = str(REPO / "benchmarks" / "dashboard_floor.py")
    result = subprocess.run([sys.executable, script, "--bundle", str(missing)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2
    assert f"--bundle {missing}: no such file" in result.stderr
    result = subprocess.run([sys.executable, script, "--classes", "40"], capture_output=True, text=True, timeout=120,
                            cwd=REPO)
    assert result.returncode == 2
    assert "--classes 40: the page draws its IoU as a heatmap only past 40 classes" in result.stderr

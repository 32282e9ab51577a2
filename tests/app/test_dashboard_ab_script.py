"""``benchmarks/dashboard_ab.py`` times two revisions' pages end to end and names a bad revision."""

import re
import subprocess
import sys

import browser_support  # noqa: F401  (skips the module without chromium)
from browser_support import REPO

SCRIPT = str(REPO / "benchmarks" / "dashboard_ab.py")


def test_ab_script_times_each_revision_on_the_compare_page():
    out = subprocess.run(
        [sys.executable, SCRIPT, "HEAD", "HEAD~1", "--page", "compare", "--rounds", "1", "--opens", "1",
         "--compare-steps", "4100", "--compare-classes", "5"],  # evaluated at steps 2000 and 4000
        capture_output=True, text=True, check=True, timeout=600, cwd=REPO,
    ).stdout
    assert "compare page, fresh browser, request -> fully drawn, 1 rounds x 1 opens:" in out
    for revision in ("HEAD", "HEAD~1"):
        assert re.search(rf"^  {re.escape(revision)}: median [\d.]+ s \([\d.]+-[\d.]+\) \[[\d.]+\]$", out,
                         re.MULTILINE), out


def test_ab_script_names_a_revision_git_does_not_know():
    result = subprocess.run([sys.executable, SCRIPT, "HEAD", "no-such-revision"], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 1
    assert "git archive no-such-revision app:" in result.stderr
    result = subprocess.run([sys.executable, SCRIPT, "HEAD", "HEAD", "--opens", "0"], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and "--rounds and --opens must be at least 1, got 4 and 0" in result.stderr

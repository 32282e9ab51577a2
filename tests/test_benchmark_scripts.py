"""The benchmark scripts run (their figures are recorded in benchmarks/RESULTS.md, not asserted)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_step_prints_both_implementations_and_the_passes():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "core_step.py"), "--setting", "voc", "--repeats", "1",
         "--passes"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    assert re.search(r"^  total\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.MULTILINE), out
    assert "median ratio of the 1 interleaved pairs" in out
    for name in ("copy_paste", "bank", "cutmix_bank", "components_box", "mixing", "sampled_loss"):
        assert re.search(rf"^  {name}\s+[\d.]+\s+[\d.]+", out, re.MULTILINE), name
    for row in (r"argmax \+ max-probability", r"argmax \+ log-sum-exp", r"torch.rand, one per pixel"):
        assert re.search(rf"^  {row}\s+[\d.]+", out, re.MULTILINE), out


def test_step_time_prints_each_method_and_the_measurement_cost():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "step_time.py"), "--crop", "32", "--batch", "2", "--classes", "5",
         "--min-kept", "200", "--warmup", "1", "--steps", "1", "--profile-steps", "1", "--measure-gt"],
        capture_output=True, text=True, check=True, timeout=600,
    ).stdout
    assert re.search(r"^seconds / step\s+mean_teacher\s+ael\s+ael\+gt$", out, re.MULTILINE), out
    assert re.search(r"^step(\s+[\d.]+){3}$", out, re.MULTILINE), out
    assert re.search(r"AEL overhead ratio .*: [\d.]+$", out, re.MULTILINE), out
    assert re.search(r"pseudo-label quality cost .*: [\d.]+$", out, re.MULTILINE), out

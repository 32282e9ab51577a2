"""README's promises: its first two commands, and that .ci/run runs exactly the test command."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_opens_with_setup_and_main_job_then_tests():
    first, second = readme_commands()[:2]
    assert first.startswith("python3 -m venv .venv") and first.endswith(".venv/bin/ael demo")
    assert second.startswith("python3 -m venv .venv") and "pytest" in second


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_commands()[1]
    ci_lines = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_commands_exist_in_the_cli():
    from ael.cli import COMMANDS

    text = (REPO / "README.md").read_text()
    for name in re.findall(r"`ael (\w+)", text):
        assert name in COMMANDS, name
    for preset in re.findall(r"configs/[\w/]+\.yaml", text):
        assert (REPO / preset).is_file(), preset

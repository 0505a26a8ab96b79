"""README's two commands are what CI runs (.ci/readme_command.py reads them): the section must
keep exactly two bash blocks, the first training the quickstart, the second running the tests."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_command(number: int) -> str:
    done = subprocess.run([sys.executable, str(ROOT / ".ci" / "readme_command.py"), str(number)],
                          capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_command_1_sets_up_and_trains_the_quickstart():
    command = readme_command(1)
    assert command.startswith("pip install torch") and "pip install -e ." in command
    assert command.endswith("contrastive fit")


def test_command_2_sets_up_and_runs_the_tests():
    assert readme_command(2) == "bash scripts/setup-dev.sh && python -m pytest -n auto --dist loadfile"

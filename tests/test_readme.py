"""Every offline example in the README runs as written (issue 14, item 5).

The demo's ``css-rs train``, then each ``$ command`` of the ``console`` blocks in order, in one
scratch folder (the samples use the demo's model), and the Python API block. A command must
exit as the README shows: 0, or the code its ``$ echo $?`` line prints. Outputs are not
compared: with more than one thread training is Hogwild, so figures vary from run to run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a training run and ~15 CLI processes

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

# The README's pairs file for `model.evaluate_pairs("wordsim353.tsv")` (a file the user has).
PAIRS = "cat\tdog\t9\ncat\tpiano\t1\nguitar\tpiano\t8\nmoney\tcash\t9\n"


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def console_commands() -> list[tuple[str, int]]:
    """``(command, expected exit code)`` for every ``$ `` line of the console blocks."""
    found: list[tuple[str, int]] = []
    for body in blocks("console"):
        lines = body.splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("$ ") or line == "$ echo $?":
                continue
            expected = 0
            for j in range(i + 1, len(lines)):
                if lines[j] == "$ echo $?":
                    expected = int(lines[j + 1])
                    break
                if lines[j].startswith("$ "):
                    break
            found.append((line[2:], expected))
    return found


def demo_command() -> str:
    """The ``css-rs`` line of the install-and-demo block (``pip install .`` is the set-up)."""
    demo = [line for line in blocks("bash")[0].splitlines() if line.startswith("css-rs ")]
    assert len(demo) == 1, demo
    return demo[0]


def shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # `css-rs` as installed; MPLBACKEND keeps plots off any display.
    env = {**os.environ, "MPLBACKEND": "Agg"}
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    here = tmp_path_factory.mktemp("readme")
    done = shell(demo_command(), here)
    assert done.returncode == 0, done.stderr
    assert (here / "models" / "css_model.json").is_file()
    return here


def test_the_readme_has_examples_to_run() -> None:
    commands = [c for c, _ in console_commands()]
    assert demo_command().startswith("css-rs train")
    assert any(c.startswith("css-rs polysemy") for c in commands)
    assert any(code != 0 for _, code in console_commands())  # the error example is read too


def test_console_examples_run_as_written(demo_dir: Path) -> None:
    failures = []
    for command, expected in console_commands():
        done = shell(command, demo_dir)
        if done.returncode != expected:
            failures.append(
                f"{command!r}: exit {done.returncode}, README shows {expected}: "
                f"{done.stderr.strip()[-300:]}"
            )
        elif (
            expected == 0
            and command.startswith("css-rs ")
            and " -o " not in command
            and not done.stdout.strip()
        ):
            failures.append(f"{command!r} printed nothing")
    assert not failures, "\n".join(failures)


def test_python_api_example_runs_as_written(tmp_path: Path) -> None:
    (api,) = [b for b in blocks("python") if b.startswith("import css_rs\n")]
    (tmp_path / "wordsim353.tsv").write_text(PAIRS)
    done = subprocess.run(
        [sys.executable, "-c", api], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr

"""The README's commands run as written, so the README cannot drift from the program.

Every line of the README's ```bash blocks is one of: a set-up command (done once, as `make demo`
does it), a `mnistlab ...` or `python examples/...` command (run here, in order, in one scratch
folder holding a copy of examples/), a `curl` call to the API (sent to a `mnistlab serve runs/demo`
started here), or a line a named rule skips. Any other line fails the test, so a new kind of
command needs a rule here before the README can show it. A line passes when it exits 0, or with
the code its comment names ("exit code 1"). `mnistlab serve` lines run as a process on a free port
(`--port 0` appended, as `--train-limit` is to train lines): they must print their URL, answer
/healthz and stop cleanly on Ctrl-C (exit 130, no traceback).
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import pytest

import mnistlab
from mnistlab.cli import main
from mnistlab.datasets import SYSTEM_ROOT

from .conftest import mnistlab_command, serving

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Appended to every `mnistlab train` line (the last --epochs wins), and applied to the examples' train()
# calls, so that the README's dozen trainings take seconds. Nothing else about a line changes.
SHORT_TRAIN = ["--train-limit", "2000", "--epochs", "1"]
# Lines that cannot run in a test, each with its reason. A line matching one is skipped, by name.
SKIP_RULES = {
    "--show": "opens a window, which needs a display",
    "python benchmarks/": "a benchmark: minutes to hours of measurement, run by hand, not in the test suite",
    # tests/test_datasets.py runs these against a local server; `data list` and `data verify` run here.
    "mnistlab data download": "downloads a dataset: the test machine reaches no dataset host",
    # Fashion-MNIST is read from Debian's dataset-fashion-mnist, which CI installs (.ci/run): these lines are
    # skipped only on a machine without it, and never in CI.
    **({} if (SYSTEM_ROOT / "fashion-mnist").is_dir() or os.environ.get("CI") else {
        "--dataset fashion-mnist": "needs Debian's dataset-fashion-mnist: sudo apt-get install dataset-fashion-mnist"}),
}
README_SERVER = "http://127.0.0.1:8000"  # where the README's curl lines send their requests
SETUP_LINES = ("make demo", "make test", ". .venv/bin/activate")  # done by the `workspace` fixture
EXIT_CODE = re.compile(r"#.*\bexit code (\d+)")


def bash_lines(readme: Path = README) -> list[tuple[int, str]]:
    """(line number, text) of every non-empty line inside the README's ```bash blocks."""
    lines, inside = [], False
    for number, line in enumerate(readme.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            inside = line.strip() == "```bash"
        elif inside and line.strip():
            lines.append((number, line.strip()))
    return lines


def commands() -> list:
    """The README's runnable lines as pytest params, id'd by line number, skip rules applied."""
    params = []
    for number, line in bash_lines():
        if line.startswith(SETUP_LINES):
            continue
        rule = next((rule for rule in SKIP_RULES if rule in line), None)
        marks = [pytest.mark.skip(reason=f"README line {number}: {SKIP_RULES[rule]}")] if rule else []
        params.append(pytest.param(line, id=f"line{number}", marks=marks))
    return params


@contextmanager
def serving_readme(argv: list[str]) -> Iterator[str]:
    """Run `mnistlab serve ARGV --port 0` as a process in the current folder; yield its URL (no trailing /)."""
    with serving(mnistlab_command(*argv, "--port", "0")) as (url, _):
        yield url.rstrip("/")


def run_serve_line(words: list[str]) -> int:
    with serving_readme(words[1:]) as url, urllib.request.urlopen(f"{url}/healthz", timeout=30) as answer:
        assert answer.status == 200
    return 0


def run_curl_line(words: list[str]) -> int:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    with serving_readme(["serve", "runs/demo"]) as url:
        words = [word.replace(README_SERVER, url) for word in words]
        result = subprocess.run(words, capture_output=True, text=True, timeout=60)
    assert '"label":' in result.stdout, result.stdout + result.stderr
    return result.returncode


def run_line(line: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run one README command in-process in the current folder; return its exit code.

    shlex splits it as the shell would (quotes, comments); `> FILE` sends its output to FILE.
    """
    words = shlex.split(line, comments=True)
    target = None
    if ">" in words:
        target = Path(words[words.index(">") + 1])
        words = words[:words.index(">")]
    if words[:2] == ["mnistlab", "serve"]:
        return run_serve_line(words)
    if words[0] == "curl":
        return run_curl_line(words)
    out = io.StringIO()
    with redirect_stdout(out):
        if words[0] == "mnistlab":
            argv = words[1:] + (SHORT_TRAIN if words[1:2] == ["train"] else [])
            try:
                code = main(argv)
            except SystemExit as e:  # --version and argparse's errors exit this way
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        elif words[0] == "python" and words[1].startswith("examples/"):
            train = mnistlab.train
            monkeypatch.setattr(mnistlab, "train", lambda config: train(dataclasses.replace(
                config, epochs=int(SHORT_TRAIN[3]), train_limit=int(SHORT_TRAIN[1]))))
            monkeypatch.setattr(sys, "argv", words[1:])
            runpy.run_path(words[1], run_name="__main__")
            code = 0
        else:
            raise AssertionError(f"no rule to run {line!r}: add one to tests/test_readme.py")
    if target is not None:
        target.write_text(out.getvalue(), encoding="utf-8")
    return code


def make_demo_commands() -> list[str]:
    """The `mnistlab` commands of the Makefile's demo target, as a shell would run them after activating."""
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    return [line.strip().replace("$(BIN)/", "") for line in recipe.group(1).splitlines()
            if line.strip().startswith("$(BIN)/mnistlab")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder as the README's reader has it after `make demo`: examples/ and a trained runs/demo."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", folder / "examples")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(folder)
        for line in make_demo_commands():
            assert run_line(line, monkeypatch) == 0, f"Makefile demo: {line}"
    return folder


def test_the_readme_has_its_commands_and_set_up():
    lines = [line for _, line in bash_lines()]
    # The two set-up commands, then at once the line that puts `mnistlab` on the PATH.
    assert [line.split("#")[0].strip() for line in lines[:3]] == list(SETUP_LINES)
    assert len(commands()) >= 20
    assert make_demo_commands()[0].startswith("mnistlab train --out runs/demo")


@pytest.mark.parametrize("line", commands())
def test_readme_command_runs_as_written(line, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(workspace / "cache"))  # not the user's own cache
    expected = EXIT_CODE.search(line)
    assert run_line(line, monkeypatch) == (int(expected.group(1)) if expected else 0), line


def test_a_broken_command_fails(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    assert run_line("mnistlab evaluate runs/no-such-run", monkeypatch) == 1
    assert run_line("mnistlab plot grid runs/demo --rows 0", monkeypatch) == 2
    with pytest.raises(AssertionError, match="no rule to run"):
        run_line("rm -rf runs", monkeypatch)


def test_the_activated_venv_has_mnistlab_on_path():
    if not (ROOT / ".venv" / "bin" / "activate").is_file():
        pytest.skip(f"{ROOT / '.venv'} does not exist here; `make demo` or `make test` creates it")
    result = subprocess.run(["bash", "-c", ". .venv/bin/activate && mnistlab --version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mnistlab ")

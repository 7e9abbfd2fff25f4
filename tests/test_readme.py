"""The docs' commands run as written, so README.md and docs/*.md cannot drift from the program.

Each page (README.md and every page under docs/) is one test: its ```bash lines and ```python blocks
run in the order the page gives them, in a scratch folder of its own that starts as the reader's folder
after `make demo` (a copy of examples/ and a trained runs/demo). Every bash line is one of: a set-up
command (done once, as `make demo` does it), a `mnistlab ...` or `python examples/...` command (run
in-process), a `curl` call to the API (sent to a `mnistlab serve runs/demo` started for the page), or
a line a named rule skips. Any other line fails the test, so a new kind of command needs a rule here
before a page can show it. A line passes when it exits 0, or with the code its comment names ("exit
code 1"). `mnistlab serve` lines run as a process on a free port (`--port 0` appended, as
`--train-limit` is to train lines): they must print their URL, answer /healthz and stop cleanly on
Ctrl-C (exit 130, no traceback). A python block runs in-process and passes when it raises nothing;
`mnistlab.train` in it trains as briefly as the train lines do.
"""

from __future__ import annotations

import dataclasses
import io
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout
from pathlib import Path

import pytest

import mnistlab
import mnistlab.models
from mnistlab.cli import main

from .conftest import mnistlab_command, serving

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# Appended to every `mnistlab train` line (the last --epochs wins), and applied to the examples' and the python
# blocks' train() calls, so that the docs' dozen trainings take seconds. Nothing else about a line changes.
SHORT_TRAIN = ["--train-limit", "2000", "--epochs", "1"]
# Lines and python blocks that cannot run in a test, each with its reason. One that contains a rule is skipped.
SKIP_RULES = {
    "--show": "opens a window, which needs a display",
    "python benchmarks/": "a benchmark: minutes to hours of measurement, run by hand, not in the test suite",
    # tests/test_datasets.py runs these against a local server; `data list` and `data verify` run here.
    "mnistlab data download": "downloads a dataset: the test machine reaches no dataset host",
    "--dataset fashion-mnist": "downloads Fashion-MNIST on first use: the test machine reaches no dataset host",
}
README_SERVER = "http://127.0.0.1:8000"  # where the docs' curl lines send their requests
SETUP_LINES = ("make demo", "make test", ". .venv/bin/activate")  # done by the `workspace` fixture
EXIT_CODE = re.compile(r"#.*\bexit code (\d+)")


@dataclasses.dataclass(frozen=True)
class Step:
    """One bash line, or one whole python block, of a page."""

    page: Path
    number: int  # the line's number (a python block: its first line's)
    kind: str  # "bash" or "python"
    text: str

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.number}"

    @property
    def skip_rule(self) -> str | None:
        return next((rule for rule in SKIP_RULES if rule in self.text), None)


def page_steps(page: Path) -> list[Step]:
    """Every non-empty line of the page's ```bash blocks and every ```python block, in page order."""
    steps, kind, block, start = [], None, [], 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            if kind is None:  # an opening fence; other languages (toml, text) and bare fences are not run
                kind, block, start = {"```bash": "bash", "```python": "python"}.get(line.strip(), ""), [], number + 1
                continue
            if kind == "python":
                steps.append(Step(page, start, "python", "\n".join(block)))
            kind = None
        elif kind == "bash" and line.strip():
            steps.append(Step(page, number, "bash", line.strip()))
        elif kind == "python":
            block.append(line)
    return steps


def bash_lines(page: Path = README) -> list[tuple[int, str]]:
    """(line number, text) of every non-empty line inside the page's ```bash blocks."""
    return [(step.number, step.text) for step in page_steps(page) if step.kind == "bash"]


def runnable_steps(page: Path) -> list[Step]:
    """The page's steps that a test runs: not the set-up (the `workspace` fixture does it), not a skipped one."""
    return [step for step in page_steps(page)
            if not (step.kind == "bash" and step.text.startswith(SETUP_LINES)) and step.skip_rule is None]


@contextmanager
def serving_readme(argv: list[str]) -> Iterator[str]:
    """Run `mnistlab serve ARGV --port 0` as a process in the current folder; yield its URL (no trailing /)."""
    with serving(mnistlab_command(*argv, "--port", "0")) as (url, _):
        yield url.rstrip("/")


class PageRunner:
    """Runs one page's steps in the current folder; a server for its curl lines is started once, on first use."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, servers: ExitStack):
        self.monkeypatch, self.servers, self.api = monkeypatch, servers, None
        train = mnistlab.train
        monkeypatch.setattr(mnistlab, "train", lambda config, **kwargs: train(dataclasses.replace(
            config, epochs=int(SHORT_TRAIN[3]), train_limit=int(SHORT_TRAIN[1])), **kwargs))
        # A model a python block registers stays in this page's test, not in the rest of the session's.
        monkeypatch.setattr(mnistlab.models, "_MODELS", dict(mnistlab.models._MODELS))

    def run(self, step: Step) -> int:
        if step.kind == "python":
            with redirect_stdout(io.StringIO()):
                exec(compile(step.text, step.where, "exec"), {"__name__": "__main__"})
            return 0
        return self.run_line(step.text)

    def run_line(self, line: str) -> int:
        """Run one bash line in-process in the current folder; return its exit code.

        shlex splits it as the shell would (quotes, comments); `> FILE` sends its output to FILE.
        """
        words = shlex.split(line, comments=True)
        target = None
        if ">" in words:
            target = Path(words[words.index(">") + 1])
            words = words[:words.index(">")]
        if words[:2] == ["mnistlab", "serve"]:
            return self.run_serve_line(words)
        if words[0] == "curl":
            return self.run_curl_line(words)
        out = io.StringIO()
        with redirect_stdout(out):
            if words[0] == "mnistlab":
                argv = words[1:] + (SHORT_TRAIN if words[1:2] == ["train"] else [])
                try:
                    code = main(argv)
                except SystemExit as e:  # --help, --version and argparse's errors exit this way
                    code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            elif words[0] == "python" and words[1].startswith("examples/"):
                self.monkeypatch.setattr(sys, "argv", words[1:])
                runpy.run_path(words[1], run_name="__main__")
                code = 0
            else:
                raise AssertionError(f"no rule to run {line!r}: add one to tests/test_readme.py")
        if target is not None:
            target.write_text(out.getvalue(), encoding="utf-8")
        return code

    def run_serve_line(self, words: list[str]) -> int:
        with serving_readme(words[1:]) as url, urllib.request.urlopen(f"{url}/healthz", timeout=30) as answer:
            assert answer.status == 200
        return 0

    def run_curl_line(self, words: list[str]) -> int:
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        if self.api is None:
            self.api = self.servers.enter_context(serving_readme(["serve", "runs/demo"]))
        words = [word.replace(README_SERVER, self.api) for word in words]
        result = subprocess.run(words, capture_output=True, text=True, timeout=60)
        assert '"label":' in result.stdout, result.stdout + result.stderr
        return result.returncode


def run_line(line: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run one bash line as a page would, in the current folder; return its exit code."""
    with ExitStack() as servers:
        return PageRunner(monkeypatch, servers).run_line(line)


def make_demo_commands() -> list[str]:
    """The `mnistlab` commands of the Makefile's demo target, as a shell would run them after activating."""
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    return [line.strip().replace("$(BIN)/", "") for line in recipe.group(1).splitlines()
            if line.strip().startswith("$(BIN)/mnistlab")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder as the docs' reader has it after `make demo`: examples/ and a trained runs/demo."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", folder / "examples")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(folder)
        for line in make_demo_commands():
            assert run_line(line, monkeypatch) == 0, f"Makefile demo: {line}"
    return folder


def test_the_readme_has_its_set_up_and_a_tour():
    lines = [line for _, line in bash_lines()]
    # The two set-up commands, then at once the line that puts `mnistlab` on the PATH.
    assert [line.split("#")[0].strip() for line in lines[:3]] == list(SETUP_LINES)
    assert make_demo_commands()[0].startswith("mnistlab train --out runs/demo")
    tour = {line.split()[1] for line in lines[3:] if line.startswith("mnistlab ")}
    assert {"train", "evaluate", "predict", "serve", "export"} <= tour
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250  # a front page; the rest is in docs/


def test_the_docs_have_their_commands():
    assert [page.name for page in PAGES[1:]], "docs/ has no pages"
    assert sum(len(runnable_steps(page)) for page in PAGES) >= 60
    # A rule that no line needs any more goes, so that it cannot hide a line written later by mistake.
    steps = [step for page in PAGES for step in page_steps(page)]
    assert {step.skip_rule for step in steps} >= set(SKIP_RULES)


def test_the_page_parser_keeps_order_and_kinds(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n```bash\nmnistlab models\n\nmnistlab --version  # x\n```\n```toml\n[a]\n```\n"
                    "```python\nimport mnistlab\n\nprint(1)\n```\n```\nout\n```\n"
                    "```bash\nmnistlab show 0 --show\n```\n")
    assert [(step.number, step.kind, step.text) for step in page_steps(page)] == [
        (3, "bash", "mnistlab models"), (5, "bash", "mnistlab --version  # x"),
        (11, "python", "import mnistlab\n\nprint(1)"), (19, "bash", "mnistlab show 0 --show")]
    assert [step.number for step in runnable_steps(page)] == [3, 5, 11]


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_page_runs_as_written(page, workspace, tmp_path, monkeypatch):
    folder = tmp_path / "page"
    shutil.copytree(workspace, folder, symlinks=True)  # each page starts from `make demo`, not from another page
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(folder / "cache"))  # not the user's own cache
    with ExitStack() as servers:
        runner = PageRunner(monkeypatch, servers)
        for step in runnable_steps(page):
            expected = EXIT_CODE.search(step.text) if step.kind == "bash" else None
            try:
                code = runner.run(step)
            except Exception as error:
                raise AssertionError(f"{step.where}: {step.text}") from error
            assert code == (int(expected.group(1)) if expected else 0), f"{step.where}: {step.text}"


SKIPPED = [step for page in PAGES for step in page_steps(page) if step.skip_rule is not None]


@pytest.mark.parametrize("step", SKIPPED, ids=[step.where for step in SKIPPED])
def test_a_line_that_cannot_run_is_skipped_by_its_rule(step):
    """Each skipped line shows in pytest's summary (-ra) with its page, line number and reason."""
    pytest.skip(f"{step.where}: {SKIP_RULES[step.skip_rule]}")


def test_a_broken_command_fails(workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    assert run_line("mnistlab evaluate runs/no-such-run", monkeypatch) == 1
    assert run_line("mnistlab plot grid runs/demo --rows 0", monkeypatch) == 2
    with pytest.raises(AssertionError, match="no rule to run"):
        run_line("rm -rf runs", monkeypatch)


def test_a_broken_python_block_fails(workspace, tmp_path, monkeypatch):
    monkeypatch.chdir(workspace)
    page = tmp_path / "page.md"
    page.write_text("```python\nimport mnistlab\n\nmnistlab.load_checkpoint('runs/no-such-run')\n```\n")
    with ExitStack() as servers, pytest.raises(mnistlab.CheckpointError):
        PageRunner(monkeypatch, servers).run(page_steps(page)[0])


def test_the_activated_venv_has_mnistlab_on_path():
    if not (ROOT / ".venv" / "bin" / "activate").is_file():
        pytest.skip(f"{ROOT / '.venv'} does not exist here; `make demo` or `make test` creates it")
    result = subprocess.run(["bash", "-c", ". .venv/bin/activate && mnistlab --version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mnistlab ")

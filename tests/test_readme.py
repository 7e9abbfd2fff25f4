"""The docs' commands run as written, so README.md and docs/*.md cannot drift from the program.

Each page (README.md and every page under docs/) is one test: its ```bash lines and ```python blocks
run in the order the page gives them, in a scratch folder of its own that starts as the reader's folder
after `make demo` (a copy of examples/ and runs/demo, trained as the Makefile trains it). Every bash
line is one of: a set-up command (done once, as `make demo` does it), a `mnistlab ...` or
`python examples/...` command (run in-process), a `curl` call to the API (sent to a `mnistlab serve
runs/demo` started for the page), or a line a named rule skips. Any other line fails the test, so a new
kind of command needs a rule here before a page can show it. A line passes when it exits 0, or with the
code its comment names ("exit code 1"). `mnistlab serve` lines run as a process on a free port (`--port
0` appended): they must print their URL, answer /healthz and stop cleanly on Ctrl-C (exit 130, no
traceback). A python block runs in-process and passes when it raises nothing. `mnistlab train` lines
train briefly (SHORT_TRAIN is appended), and so do `mnistlab.train` calls in a python block that shows
no approximate figure (below).

What a page shows a command printing is compared with what it prints:

- in a python block, the comment after a `print(...)` line is a line that the block prints;
- a ```text block right after a ```bash block (nothing but blank lines between) shows what the bash
  block's last line prints, stdout then stderr.

The shown lines must appear in the printed output in the order shown; printed lines that a page leaves
out may come between them. Runs of spaces count as one, and `...` stands for any text. Every character
must match, except a figure written `≈97.6%` (or `≈0.976`, `≈100%`): it holds within one unit of its
last digit (97.5 to 97.7 here). A page writes `≈` where the figure comes from a training, which another
machine need not repeat to the last digit; a checkpoint re-evaluates exactly, so its figures are exact.
A python block that shows a `≈` figure trains as written, so that its figure is the one compared.
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
from contextlib import ExitStack, contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

import mnistlab
import mnistlab.models
from mnistlab.cli import build_parser, main
from mnistlab.dataset_info import SYSTEM_ROOT

from .conftest import mnistlab_command, serving

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
# Appended to every `mnistlab train` line (the last --epochs wins), and applied to the examples' and the python
# blocks' train() calls (except a block that shows a `≈` figure), so that the docs' dozen trainings take seconds
# (a line's own calibration: on 1,000 held-out images, not 5,000; the python blocks' keep theirs).
SHORT_TRAIN = ["--train-limit", "2000", "--epochs", "1", "--calibration-size", "1000"]
# Lines and python blocks that cannot run in a test, each with its reason. One that contains a rule is skipped.
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
README_SERVER = "http://127.0.0.1:8000"  # where the docs' curl lines send their requests
SETUP_LINES = ("make demo", "make test", ". .venv/bin/activate")  # done by the `workspace` fixture
EXIT_CODE = re.compile(r"#.*\bexit code (\d+)")
APPROXIMATE = re.compile(r"≈(-?\d+(?:\.\d+)?)")  # a figure shown as `≈97.6`: within one unit of its last digit


@dataclasses.dataclass(frozen=True)
class Step:
    """One bash line, or one whole python block, of a page."""

    page: Path
    number: int  # the line's number (a python block: its first line's)
    kind: str  # "bash" or "python"
    text: str
    shown: tuple[str, ...] = ()  # the lines the page shows it printing (see the module's docstring)

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.number}"

    @property
    def skip_rule(self) -> str | None:
        return next((rule for rule in SKIP_RULES if rule in self.text), None)


def page_steps(page: Path) -> list[Step]:
    """Every non-empty line of the page's ```bash blocks and every ```python block, in page order, each with
    the output the page shows it printing."""
    steps, kind, block, start, after_bash = [], None, [], 0, False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            if kind is None:  # an opening fence; other languages (toml) and bare fences are not run
                kind = {"```bash": "bash", "```python": "python", "```text": "text"}.get(line.strip(), "")
                if kind == "text" and not after_bash:
                    kind = ""  # a text block after prose is an example, not output
                block, start = [], number + 1
                continue
            if kind == "python":
                shown = tuple(line.split("  # ", 1)[1] for line in block
                              if line.lstrip().startswith("print(") and "  # " in line)
                steps.append(Step(page, start, "python", "\n".join(block), shown))
            elif kind == "text":
                steps[-1] = dataclasses.replace(steps[-1], shown=tuple(line for line in block if line.strip()))
            after_bash, kind = kind == "bash", None
        elif kind == "bash" and line.strip():
            steps.append(Step(page, number, "bash", line.strip()))
        elif kind in ("python", "text"):
            block.append(line)
        elif line.strip():
            after_bash = False
    return steps


def shows(shown: str, printed: str) -> bool:
    """Whether the printed line is the shown one: spaces folded, `...` any text, `≈` figures within a unit."""
    pattern = "".join(".*" if part == "..." else r"(-?\d+(?:\.\d+)?)" if part.startswith("≈") else re.escape(part)
                      for part in re.split(r"(\.\.\.|≈-?\d+(?:\.\d+)?)", " ".join(shown.split())))
    match = re.fullmatch(pattern, " ".join(printed.split()))
    if match is None:
        return False
    figures = [(float(got), expected) for got, expected in zip(match.groups(), APPROXIMATE.findall(shown), strict=True)]
    return all(abs(got - float(expected)) <= 10 ** -len(expected.partition(".")[2]) + 1e-9
               for got, expected in figures)


def missing_lines(shown: tuple[str, ...], printed: str) -> list[str]:
    """The shown lines that do not appear in the printed output, in order (an empty list: all of them do)."""
    lines = iter(printed.splitlines())
    return [line for line in shown if not any(shows(line, out) for out in lines)]


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
    """Runs one page's steps in the current folder; a server for its curl lines is started once, on first use.

    `printed` holds what the last step printed (stdout, then stderr), to compare with what the page shows.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, servers: ExitStack, short_train: bool = True):
        self.monkeypatch, self.servers, self.api, self.short_train = monkeypatch, servers, None, short_train
        self.printed = ""
        train = mnistlab.train
        monkeypatch.setattr(mnistlab, "train", lambda config, **kwargs: train(dataclasses.replace(
            config, epochs=int(SHORT_TRAIN[3]), train_limit=int(SHORT_TRAIN[1])) if self.short_train else config,
            **kwargs))
        # A model a python block registers stays in this page's test, not in the rest of the session's.
        monkeypatch.setattr(mnistlab.models, "_MODELS", dict(mnistlab.models._MODELS))

    def run(self, step: Step) -> int:
        if step.kind == "python":
            self.short_train = not any(APPROXIMATE.search(line) for line in step.shown)
            out = io.StringIO()
            with redirect_stdout(out):
                exec(compile(step.text, step.where, "exec"), {"__name__": "__main__"})
            self.printed = out.getvalue()
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
        self.printed = ""
        if words[:2] == ["mnistlab", "serve"]:
            return self.run_serve_line(words)
        if words[0] == "curl":
            return self.run_curl_line(words)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            if words[0] == "mnistlab":
                argv = words[1:] + (SHORT_TRAIN if words[1:2] == ["train"] and self.short_train else [])
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
        self.printed = ("" if target is not None else out.getvalue()) + err.getvalue()
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


def run_line(line: str, monkeypatch: pytest.MonkeyPatch, short_train: bool = True) -> int:
    """Run one bash line as a page would, in the current folder; return its exit code."""
    with ExitStack() as servers:
        return PageRunner(monkeypatch, servers, short_train).run_line(line)


def make_demo_commands() -> list[str]:
    """The `mnistlab` commands of the Makefile's demo target, as a shell would run them after activating."""
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    return [line.strip().replace("$(BIN)/", "") for line in recipe.group(1).splitlines()
            if line.strip().startswith("$(BIN)/mnistlab")]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder as the docs' reader has it after `make demo`: examples/ and runs/demo, trained in full (seconds)."""
    folder = tmp_path_factory.mktemp("readme")
    shutil.copytree(ROOT / "examples", folder / "examples")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(folder)
        for line in make_demo_commands():
            assert run_line(line, monkeypatch, short_train=False) == 0, f"Makefile demo: {line}"
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


def test_a_page_shows_output_after_print_and_in_a_text_block_after_bash(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```python\nx = 1\nprint(x)  # 1\nprint(x)\n```\n"
                    "```bash\nmnistlab models\nmnistlab --version\n```\n\n```text\nmnistlab ...\n```\n"
                    "prose\n```text\nnot output\n```\n")
    assert [(step.text.split("\n")[0], step.shown) for step in page_steps(page)] == [
        ("x = 1", ("1",)), ("mnistlab models", ()), ("mnistlab --version", ("mnistlab ...",))]


@pytest.mark.parametrize("shown, printed, expected", [
    ("97.63% runs/nb", "97.63%   runs/nb", True),
    ("97.63% runs/nb", "97.62% runs/nb", False),
    ("≈97.6% runs/nb", "97.62% runs/nb", True),
    ("≈97.6% runs/nb", "97.71% runs/nb", False),
    ("≈100%", "99.2%", True),
    ("7 ≈1.0", "7 0.99999", True),
    ("≈0.976 runs/nb", "0.9763 runs/nb", True),
    ("saved ... (test accuracy ≈97.6%, ...)", "saved runs/demo (test accuracy 97.58%, 4.7s on cpu)", True),
    ("test accuracy ≈97.6%", "test accuracy 87.6%", False),
])
def test_a_shown_line_matches_exactly_but_for_its_approximate_figures(shown, printed, expected):
    assert shows(shown, printed) is expected


def test_shown_lines_appear_in_order_with_other_lines_between():
    printed = "header\ntest accuracy 97.63%\nreproduced exactly\n"
    assert missing_lines(("header", "reproduced exactly"), printed) == []
    assert missing_lines(("reproduced exactly", "header"), printed) == ["header"]


def files_in(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if not path.is_dir()}


def not_ignored(paths: set[str]) -> list[str]:
    """The paths, relative to the repository's folder, that its .gitignore does not cover."""
    result = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, input="\n".join(paths),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode in (0, 1), result.stderr  # 1: none of them is ignored
    return sorted(paths - set(result.stdout.splitlines()))


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
@pytest.mark.slow
def test_page_runs_as_written(page, workspace, tmp_path, monkeypatch):
    folder = tmp_path / "page"
    shutil.copytree(workspace, folder, symlinks=True)  # each page starts from `make demo`, not from another page
    before = files_in(folder)
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
            missing = missing_lines(step.shown, runner.printed)
            assert not missing, f"{step.where}: {step.text}\nshown, not printed: {missing}\nprinted:\n{runner.printed}"
    # What a reader's commands write in the repository's folder must not show up in `git status`.
    written = {path for path in files_in(folder) - before if not path.startswith("cache/")}
    assert not_ignored(written) == [], f"{page.name}: files its commands write that .gitignore does not cover"


@pytest.mark.slow
def test_the_gitignore_covers_what_make_demo_writes(workspace):
    examples = {f"examples/{path}" for path in files_in(ROOT / "examples")}
    assert not_ignored(files_in(workspace) - examples) == []


SKIPPED = [step for page in PAGES for step in page_steps(page) if step.skip_rule is not None]


@pytest.mark.parametrize("step", SKIPPED, ids=[step.where for step in SKIPPED])
def test_a_line_that_cannot_run_still_names_a_command_that_exists(step):
    """A skipped line cannot rot unseen: its script exists, and a `mnistlab` line parses with its flags."""
    words = shlex.split(step.text, comments=True)
    if words[0] == "python":
        assert (ROOT / words[1]).is_file(), f"{step.where}: no {words[1]}"
    else:
        assert words[0] == "mnistlab", f"{step.where}: no rule checks {step.text!r}"
        build_parser().parse_args(words[1:])  # a flag it does not take exits 2


def test_a_broken_command_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_line("mnistlab evaluate runs/no-such-run", monkeypatch) == 1
    assert run_line("mnistlab plot grid runs/demo --rows 0", monkeypatch) == 2
    with pytest.raises(AssertionError, match="no rule to run"):
        run_line("rm -rf runs", monkeypatch)


def test_a_broken_python_block_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text("```python\nimport mnistlab\n\nmnistlab.load_checkpoint('runs/no-such-run')\n```\n")
    with ExitStack() as servers, pytest.raises(mnistlab.CheckpointError):
        PageRunner(monkeypatch, servers).run(page_steps(page)[0])


@pytest.mark.slow
def test_the_activated_venv_has_mnistlab_on_path():
    if not (ROOT / ".venv" / "bin" / "activate").is_file():
        pytest.skip(f"{ROOT / '.venv'} does not exist here; `make demo` or `make test` creates it")
    result = subprocess.run(["bash", "-c", ". .venv/bin/activate && mnistlab --version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mnistlab ")

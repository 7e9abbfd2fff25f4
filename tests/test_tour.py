"""README's short tour, run as a newcomer runs it: in order, on the folder `make demo` leaves, every line as written.

test_readme.py runs the same lines with short trainings; here they run whole, except the one line
whose comment says it takes minutes (the cnn's training): a newcomer may skip it, so no line after
it may need what it writes.
"""

from __future__ import annotations

import re
import shlex
import shutil
import time

import pytest

from mnistlab.cli import main

from .test_readme import EXIT_CODE, README, ROOT, make_demo_commands, run_line

TAKES_MINUTES = re.compile(r"#.*\babout \d+ min\b")  # a line the tour says it takes minutes to run


def tour_lines() -> list[str]:
    """The lines of the ```bash block under README's "## A short tour"."""
    section = README.read_text(encoding="utf-8").split("\n## A short tour\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_the_tour_says_which_line_takes_minutes():
    lines = tour_lines()
    long = [line for line in lines if TAKES_MINUTES.search(line)]
    assert [shlex.split(line, comments=True)[:4] for line in long] == [["mnistlab", "train", "--model", "cnn"]]
    assert all(line.startswith("mnistlab ") for line in lines)


@pytest.mark.slow
def test_the_tour_runs_in_order_after_make_demo_without_the_long_line(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNISTLAB_DATA_DIR", str(tmp_path / "cache"))  # not the user's own cache
    for line in make_demo_commands():  # `make demo`, with test_readme's short training
        assert run_line(line, monkeypatch) == 0, line
    started, timings = time.perf_counter(), []
    for line in tour_lines():
        if TAKES_MINUTES.search(line):
            continue
        words, line_started = shlex.split(line, comments=True), time.perf_counter()
        expected = EXIT_CODE.search(line)
        if words[:2] == ["mnistlab", "serve"]:  # blocks until Ctrl-C: test_readme starts it on a free port
            code = run_line(line, monkeypatch)
        else:
            try:
                code = main(words[1:])
            except SystemExit as e:
                code = e.code
        output = capsys.readouterr()
        assert code == (int(expected.group(1)) if expected else 0), f"{line}\n{output.out}{output.err}"
        assert "no such checkpoint" not in output.err, line
        timings.append(f"{time.perf_counter() - line_started:6.1f}s  {line}")
    with capsys.disabled():  # with -s: each line's seconds, for a look at where the tour's minute goes
        print("", *timings, f"the tour took {time.perf_counter() - started:.1f}s after make demo", sep="\n")
    assert {path.name for path in tmp_path.iterdir()} <= {"examples", "runs", "cache"}  # nothing in the root

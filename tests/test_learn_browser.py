"""Learn mode in a real browser: Chromium collects mouse-drawn digits, teaches, and switches models.

The strokes and the page-driving helpers are those of scripts/learn_screenshot.py, which makes the
docs' picture of this mode the same way.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.slow  # drives Chromium against a server process that learns
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnistlab[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium package)", allow_module_level=True)

from scripts.learn_screenshot import CHROMIUM_ARGS, collect, draw, saved_counts, teach, varied  # noqa: E402

from tests.conftest import mnistlab_command, serving  # noqa: E402
from tests.test_serve import drawing  # noqa: E402
from tests.test_serve_browser import unexpected_errors  # noqa: E402

expect = sync_api.expect
MINIMUM = 5  # drawings a digit before the page lets learning start
ORIGINAL = "Answering: the original model (run)."  # the mnist_mlp fixture's folder is named run
PERCENT = re.compile(r"^\d{1,3}\.\d%$")


@pytest.fixture(scope="module")
def learn_server(mnist_mlp, tmp_path_factory):
    """`mnistlab serve RUN --collect DIR --learn-out DIR` on a free port: (URL, collect folder, learn folder)."""
    scratch = tmp_path_factory.mktemp("learn")
    command = mnistlab_command("serve", str(mnist_mlp), "--port", "0", "--collect", str(scratch / "mine"),
                               "--learn-out", str(scratch / "learned"))
    with serving(command) as (url, _):
        yield url, scratch / "mine", scratch / "learned"


@pytest.fixture(scope="module")
def page(learn_server):
    """One page for the whole story (collect, teach, switch): each test goes on where the last stopped."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        errors: list[str] = []
        page.on("console", lambda message: message.type == "error" and errors.append(message.text))
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(learn_server[0])
        expect(page.locator("#model-use")).to_have_text(ORIGINAL)
        yield page
        browser.close()
    assert unexpected_errors(errors) == []


def test_learn_mode_asks_for_each_digit_in_turn(page):
    toggle = page.get_by_role("button", name="Learn my handwriting")
    toggle.click()
    expect(toggle).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#learn-prompt")).to_have_text("Draw a 0")
    assert saved_counts(page) == [0] * 10
    expect(page.get_by_role("button", name="Teach it my handwriting")).to_be_disabled()
    expect(page.locator("#learn-need")).to_contain_text(f"At least {MINIMUM} of each digit")
    page.get_by_role("button", name="Ask for another digit").click()
    expect(page.locator("#learn-prompt")).to_have_text("Draw a 1")


def test_a_mark_that_is_no_digit_is_refused_with_the_pages_reason(page):
    draw(page, [[(140, 140)]])
    page.get_by_role("button", name="Save as 1").click()
    expect(page.locator("#learn-status")).to_have_text(
        "Not saved: Draw it larger: that mark is too small or too faint to be a digit.")
    assert saved_counts(page) == [0] * 10
    page.keyboard.press("Escape")


def test_a_drawing_read_as_another_digit_is_saved_and_said_so(page, learn_server):
    draw(page, varied(7, random.Random(0)))  # asked for a 1, the model reads a 7
    expect(page.locator("#result strong")).to_have_text("7")
    page.locator("#canvas").focus()
    page.keyboard.press("Enter")  # saves, as the button does
    expect(page.locator("#learn-status")).to_have_text(
        "Saved as 1; the model read it as 7: learning is for exactly that.")
    assert saved_counts(page)[1] == 1 and len(list((learn_server[1] / "1").iterdir())) == 1
    expect(page.locator("#learn-prompt")).to_have_text("Draw a 2")


def test_undo_removes_the_last_saved_drawing(page, learn_server):
    page.get_by_role("button", name="Undo last save").click()
    expect(page.locator("#learn-status")).to_contain_text("Removed the last drawing saved as 1")
    assert saved_counts(page)[1] == 0 and list((learn_server[1] / "1").iterdir()) == []
    expect(page.locator("#learn-prompt")).to_have_text("Draw a 1")


def test_collecting_enough_of_each_digit_lets_it_learn(page, learn_server):
    """All but the last drawing of each digit come over the API, as from another tab (drawing fifty with the
    mouse takes half a minute); the page counts them when learn mode opens again, and the last of each is
    drawn with the mouse."""
    rng = random.Random(1)
    for digit, count in enumerate(saved_counts(page)):
        for _ in range(MINIMUM - 1 - count):
            answer = page.request.post(f"{learn_server[0].rstrip('/')}/api/collect?label={digit}",
                                       data=drawing(*varied(digit, rng)), headers={"Content-Type": "image/png"})
            assert answer.status == 201, answer.text()
    toggle = page.get_by_role("button", name="Learn my handwriting")
    toggle.click()
    toggle.click()
    expect(page.locator("#learn-counts li >> nth=9")).to_contain_text(f"{MINIMUM - 1}/")
    saved = collect(page, per_digit=MINIMUM)
    assert saved == 10 and saved_counts(page) == [MINIMUM] * 10
    assert sorted(len(list((learn_server[1] / str(d)).iterdir())) for d in range(10)) == [MINIMUM] * 10
    expect(page.locator("#learn-need")).to_contain_text("Enough to learn")
    expect(page.get_by_role("button", name="Teach it my handwriting")).to_be_enabled()


def test_teaching_shows_before_and_after_and_the_learned_model_answers(page, learn_server):
    teach(page)
    for cell in ("mine-before", "mine-after", "mnist-before", "mnist-after"):
        expect(page.locator(f"#learn-{cell}")).to_have_text(PERCENT)
    expect(page.locator("#model-use")).to_contain_text("learned from your handwriting")
    run = page.locator("#learn-message").inner_text()
    assert any(folder.name in run for folder in learn_server[2].iterdir() if folder.is_dir())
    draw(page, varied(3, random.Random(5)))
    expect(page.locator("#result strong")).to_have_text("3")


def test_switching_back_to_the_original_model_and_again(page):
    page.get_by_role("button", name="Go back to the original model").click()
    expect(page.locator("#model-use")).to_have_text(ORIGINAL)
    expect(page.locator("#model")).to_contain_text("Model: run (")
    page.get_by_role("button", name="Use the learned model again").click()
    expect(page.locator("#model-use")).to_contain_text("learned from your handwriting")


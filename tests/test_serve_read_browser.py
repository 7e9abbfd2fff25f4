"""The page's number mode in a real browser: Playwright driving Debian's Chromium against `mnistlab serve`."""

from __future__ import annotations

import math

import pytest

from tests.conftest import mnistlab_command, serving
from tests.test_serve_browser import draw_on, sync_api, unexpected_errors, watched_page

pytestmark = pytest.mark.slow  # drives Chromium against a server process

PAD_HEIGHT = 280  # the number pad's canvas is 840×280 (static/index.html)


def one(x: float) -> list[list[tuple[float, float]]]:
    return [[(x + 8, 60), (x, 220)]]


def seven(x: float) -> list[list[tuple[float, float]]]:
    return [[(x - 45, 60), (x + 45, 60), (x + 15, 140), (x - 5, 220)]]


def zero(x: float) -> list[list[tuple[float, float]]]:
    return [[(x + 45 * math.sin(t * math.pi / 12), 140 - 80 * math.cos(t * math.pi / 12)) for t in range(25)]]


def four(x: float) -> list[list[tuple[float, float]]]:
    return [[(x - 15, 55), (x - 45, 160), (x + 45, 160)], [(x + 20, 90), (x + 20, 225)]]


NUMBER = "4701"  # written with the strokes below, 180 px apart on the 840-px pad
STROKES = [*four(150), *seven(330), *zero(510), *one(690)]


@pytest.fixture(scope="module")
def server():
    with serving(mnistlab_command("serve", "pretrained:cnn", "--port", "0")) as (url, _):
        yield url


@pytest.fixture
def page(browser, server):
    page = watched_page(browser, server)
    sync_api.expect(page.locator("#model")).to_contain_text("cnn")
    yield page
    page.close()
    assert unexpected_errors(page.console_errors) == []


def write(page, strokes) -> None:
    """Write strokes given in the 840×280 pad's pixels with the mouse."""
    draw_on(page, "#number-canvas", strokes, height=PAD_HEIGHT, steps=6)


def test_number_mode_reads_a_written_number_with_a_box_over_each_digit(page, tmp_path):
    page.get_by_role("button", name="A whole number").click()
    sync_api.expect(page.locator("#number-canvas")).to_be_visible()
    sync_api.expect(page.locator("#canvas")).to_be_hidden()
    sync_api.expect(page.locator("h1")).to_have_text("Write a number")
    write(page, STROKES)
    sync_api.expect(page.locator("#number-text")).to_have_text(NUMBER)
    sync_api.expect(page.locator("#number-result")).to_contain_text(f"The model reads {NUMBER}")
    tags = page.locator("#number-boxes .digit-box span")
    sync_api.expect(tags).to_have_count(len(NUMBER))
    assert [t.split(" · ")[0] for t in tags.all_text_contents()] == list(NUMBER)
    assert all(t.endswith("%") for t in tags.all_text_contents())
    sync_api.expect(page.locator("#number-digits li")).to_have_count(len(NUMBER))
    # Each box lies over its digit's strokes: left to right, inside the pad, around the x its strokes were drawn at.
    pad = page.locator("#number-canvas").bounding_box()
    scale = pad["height"] / PAD_HEIGHT
    for frame, centre in zip(page.locator("#number-boxes .digit-box").all(), (150, 330, 510, 690), strict=True):
        box = frame.bounding_box()
        assert box["x"] < pad["x"] + centre * scale < box["x"] + box["width"], (box, centre)
        assert pad["y"] <= box["y"] and box["y"] + box["height"] <= pad["y"] + pad["height"] + 1
    page.screenshot(path=tmp_path / "number-mode.png")

    page.keyboard.press("Control+Z")  # the 1's stroke goes: the reading follows
    sync_api.expect(page.locator("#number-text")).to_have_text(NUMBER[:-1])
    page.get_by_role("button", name="Clear").click()
    sync_api.expect(page.locator("#number-result")).to_have_text("Write a number to see what the model reads.")
    sync_api.expect(page.locator("#number-boxes .digit-box")).to_have_count(0)
    page.get_by_role("button", name="One digit").click()
    sync_api.expect(page.locator("#canvas")).to_be_visible()
    sync_api.expect(page.locator("h1")).to_have_text("Draw a digit")


def test_a_mark_that_is_no_digit_is_said_so(page):
    """An x on the pad is no number: the page says so instead of reading a digit into it."""
    page.get_by_role("button", name="A whole number").click()
    write(page, [[(380, 60), (470, 220)], [(470, 60), (380, 220)]])
    sync_api.expect(page.locator("#number-result")).to_contain_text("That does not look like a number")
    sync_api.expect(page.locator("#number-boxes .digit-box")).to_have_count(0)

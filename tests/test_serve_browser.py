"""The drawing page in a real browser: Playwright driving Debian's Chromium against `mnistlab serve`."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # every test drives Chromium against a server process
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnistlab[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from tests.conftest import CHROMIUM  # noqa: E402

if not CHROMIUM.exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (.ci/run installs Debian's chromium package)", allow_module_level=True)

from tests.conftest import mnistlab_command, serving  # noqa: E402
from tests.test_serve import ONE, ZERO  # noqa: E402  (the same strokes the API tests draw)

DESKTOP = {"width": 1000, "height": 720}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server(mnist_mlp, tmp_path_factory):
    """`mnistlab serve RUN --port 0 --collect DIR` in a subprocess: (its URL, the collect folder)."""
    collect = tmp_path_factory.mktemp("collect") / "mine"
    with serving(mnistlab_command("serve", str(mnist_mlp), "--port", "0", "--collect", str(collect))) as (url, _):
        yield url, collect, mnist_mlp


def watched_page(browser, url: str):
    """A new page at `url` whose console errors and uncaught exceptions gather in `page.console_errors`."""
    page = browser.new_page(viewport=DESKTOP)
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.console_errors = errors  # a test that expects one takes it out
    page.goto(url)
    return page


def unexpected_errors(errors: list[str]) -> list[str]:
    """The console errors but the API's 422s: Chromium logs every 4xx answer to a fetch, and a 422 is the API
    saying "draw it larger" (or "no number") to strokes just begun."""
    return [e for e in errors if "status of 422" not in e]


@pytest.fixture
def page(browser, server):
    """A fresh page on the server; fails the test if the page logs any console error."""
    page = watched_page(browser, server[0])
    errors = page.console_errors
    sync_api.expect(page.locator("#model")).to_contain_text("test accuracy")
    yield page
    page.close()
    assert unexpected_errors(errors) == []


def draw(page, *strokes) -> None:
    """Draw strokes given in the 280×280 canvas's pixels with the mouse."""
    draw_on(page, "#canvas", strokes, height=280)


def draw_on(page, canvas: str, strokes, *, height: int, steps: int = 4) -> None:
    """Draw strokes given in the pixels of the canvas `canvas` (a selector; `height` pixels tall) with the mouse."""
    box = page.locator(canvas).bounding_box()
    scale = box["height"] / height
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=steps)
        page.mouse.up()


def expect_answer(page, digit: int) -> None:
    sync_api.expect(page.locator("#result strong")).to_have_text(str(digit))
    sync_api.expect(page.locator("#result")).to_contain_text(f"The model reads {digit}")
    sync_api.expect(page.locator("#bars li.winner .digit")).to_have_text(str(digit))
    assert page.locator("#seen").get_attribute("src").startswith("data:image/png;base64,")


def test_drawing_a_1_then_a_0_shows_each_answer(page, tmp_path):
    draw(page, ONE)
    expect_answer(page, 1)
    assert page.locator("#bars li").count() == 10
    page.screenshot(path=tmp_path / "desktop-1.png")
    page.get_by_role("button", name="Clear").click()
    sync_api.expect(page.locator("#result")).to_have_text("Draw a digit to see what the model reads.")
    draw(page, ZERO)
    expect_answer(page, 0)
    page.screenshot(path=tmp_path / "desktop-0.png")


# Test-only probes: when the pen lifts, and when an answer (a digit in #result) is put on the page.
PROBES = """
document.getElementById("canvas").addEventListener("pointerup", () => { window.lifted = performance.now(); },
                                                   {capture: true});
new MutationObserver(() => {
  if (document.querySelector("#result strong")) window.answered = performance.now();
}).observe(document.getElementById("result"), {childList: true, subtree: true});
"""


def test_the_answer_shows_within_100_ms_of_the_pen_lifting(page):
    """No waiting on canvas.toBlob (about 1 s in Chromium): the page sends the pixels it has at once."""
    page.evaluate(PROBES)
    delays = []
    for _ in range(3):
        page.keyboard.press("Escape")
        draw(page, ONE)
        deadline = time.monotonic() + 5  # polled from here: the page's CSP allows no eval, so no wait_for_function
        while page.evaluate("!(window.answered > window.lifted)") and time.monotonic() < deadline:
            page.wait_for_timeout(20)
        delays.append(page.evaluate("window.answered - window.lifted"))
        sync_api.expect(page.locator("#result strong")).to_have_text("1")
    print(f"pen up → answer shown: {', '.join(f'{d:.0f}' for d in delays)} ms")
    assert min(delays) < 100, delays


def test_the_answer_updates_while_drawing(page):
    """Before the pen lifts, the page has already asked (throttled) and shown an answer for the stroke so far."""
    page.evaluate(PROBES)
    box = page.locator("#canvas").bounding_box()
    page.mouse.move(box["x"] + 140, box["y"] + 40)
    page.mouse.down()
    for y in range(40, 240, 8):  # moving all the time: a debounce would never fire, a throttle does
        page.mouse.move(box["x"] + 140, box["y"] + y, steps=2)
        page.wait_for_timeout(40)
    assert page.evaluate("window.answered > 0 && !window.lifted")  # an answer shown, the pen still down
    page.mouse.up()
    sync_api.expect(page.locator("#result strong")).to_have_text("1")


SLOW_ANSWERS = """
const realFetch = window.fetch;
window.fetch = async (url, options) => {  // every prediction comes back 400 ms late
  const response = await realFetch(url, options);
  if (String(url).startsWith("/api/predict")) {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, 400);
      options?.signal?.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(new DOMException("aborted", "AbortError"));
      });
    });
  }
  return response;
};
"""


@pytest.mark.parametrize("erase", ["Escape", "Control+z", "Clear", "Undo"])
def test_erasing_cancels_the_answer_in_flight(browser, server, erase):
    """Erase the drawing while its answer is on its way: that answer never shows."""
    page = browser.new_page(viewport=DESKTOP)
    page.add_init_script(SLOW_ANSWERS)
    page.goto(server[0])
    sync_api.expect(page.locator("#model")).to_contain_text("test accuracy")
    draw(page, ONE)
    if erase in ("Clear", "Undo"):
        page.get_by_role("button", name=erase).click()
    else:
        page.keyboard.press(erase)
    page.wait_for_timeout(900)  # twice the delay: the aborted answer would have arrived by now
    assert page.locator("#result strong").count() == 0
    sync_api.expect(page.locator("#result")).to_have_text("Draw a digit to see what the model reads.")
    page.close()


def test_a_tap_or_a_dash_says_draw_it_larger(page):
    for mark in ([(140, 140)], [(120, 140), (160, 140)]):
        page.keyboard.press("Escape")
        draw(page, mark)
        sync_api.expect(page.locator("#result")).to_contain_text("Draw it larger")
        assert page.locator("#bars li.winner").count() == 0


def test_undo_and_keyboard_shortcuts(page):
    draw(page, ONE)
    expect_answer(page, 1)
    page.keyboard.press("Control+z")
    sync_api.expect(page.locator("#result")).to_have_text("Draw a digit to see what the model reads.")
    draw(page, ZERO)
    expect_answer(page, 0)
    page.keyboard.press("Escape")
    sync_api.expect(page.locator("#result")).to_have_text("Draw a digit to see what the model reads.")
    page.get_by_role("button", name="Undo").focus()
    assert page.evaluate("document.activeElement.id") == "undo"


def test_uploading_an_image_file_shows_its_answer(page, tmp_path):
    from mnistlab.data import load_mnist

    seven = load_mnist().test.images[0].numpy()  # test digit #0 is a 7: write it as dark ink on paper, 4× larger
    path = tmp_path / "seven.png"
    Image.fromarray(255 - seven).resize((112, 112)).save(path)
    page.set_input_files("#file", path)
    expect_answer(page, 7)


def test_a_blank_image_is_no_digit_found(page, tmp_path):
    path = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(path)
    page.set_input_files("#file", path)
    sync_api.expect(page.locator("#result")).to_contain_text("No digit found")
    assert page.locator("#bars li.winner").count() == 0


def test_this_is_a_n_saves_the_drawing(page, server):
    _, collect, _ = server
    draw(page, ONE)
    expect_answer(page, 1)
    page.get_by_role("button", name="This is a 1: save the drawing as a 1").click()
    sync_api.expect(page.locator("#collect-status")).to_contain_text("Saved as 1/")
    [saved] = (collect / "1").iterdir()
    assert saved.suffix == ".png" and sorted(p.name for p in collect.iterdir()) == ["1"]
    with Image.open(saved) as image:
        assert image.size == (280, 280)  # saved at the canvas's full size
    sync_api.expect(page.locator("#collected-counts li").nth(1)).to_have_attribute("aria-label", "1: 1 saved")
    assert page.locator("#collected-counts li").nth(0).get_attribute("aria-label") == "0: 0 saved"
    commands = page.locator("#collected-commands").inner_text()
    assert f"mnistlab finetune {server[2]} --images {collect} --out runs/" in commands
    assert f"mnistlab evaluate {server[2]} --images {collect}" in commands


def test_the_page_works_at_phone_width(browser, server, tmp_path):
    page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(server[0])
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scrolling
    draw(page, ZERO)
    expect_answer(page, 0)
    page.screenshot(path=tmp_path / "phone-0.png", full_page=True)
    page.close()
    assert unexpected_errors(errors) == []


def test_a_model_of_another_dataset_shows_its_class_names(browser, mnist_mlp, tmp_path):
    """Bars, answer and collect buttons name the model's classes (here a run that says it is Fashion-MNIST's)."""
    from mnistlab.dataset_info import FASHION_MNIST

    run = tmp_path / "fashion"
    shutil.copytree(mnist_mlp, run)
    config = json.loads((run / "config.json").read_text())
    config["dataset"] = {**config.get("dataset", {}), "name": "fashion-mnist", "classes": list(FASHION_MNIST.classes)}
    (run / "config.json").write_text(json.dumps(config))
    with serving(mnistlab_command("serve", str(run), "--port", "0", "--collect", str(tmp_path / "mine"))) as (url, _):
        page = browser.new_page(viewport=DESKTOP)
        page.goto(url)
        sync_api.expect(page.locator("#bars li .digit").nth(9)).to_have_text("Ankle boot")
        draw(page, ONE)
        sync_api.expect(page.locator("#result")).to_contain_text("The model reads ")
        # The answer updates while the stroke is drawn: wait until the last one has reached the text and the bars.
        page.wait_for_function("() => document.querySelector('#result strong')?.textContent === "
                               "document.querySelector('#bars li.winner .digit')?.textContent", timeout=5000)
        name = page.locator("#result strong").inner_text()
        assert name in FASHION_MNIST.classes
        assert page.get_by_role("button", name="This is Trouser: save the drawing under Trouser (class 1)").count() == 1
        page.screenshot(path=tmp_path / "fashion.png")
        page.close()

def test_the_api_docs_load_nothing_from_outside(browser, server):
    """/docs (Swagger UI) is served with its own script and style: it renders with no network."""
    page = browser.new_page(viewport=DESKTOP)
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(server[0]):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(server[0] + "docs")
    sync_api.expect(page.locator(".swagger-ui .title")).to_contain_text("mnistlab")
    sync_api.expect(page.locator(".opblock-summary-path", has_text="/api/predict")).to_be_visible()
    page.close()
    assert outside == []

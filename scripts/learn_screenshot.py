"""Make docs/images/learn.png: learn mode in Chromium, after it has learned a hand-drawn set of digits.

    python scripts/learn_screenshot.py                  # → docs/images/learn.png (a minute or two on 2 cores)
    python scripts/learn_screenshot.py --out learn.png  # somewhere else

It starts `mnistlab serve pretrained:mlp --collect DIR --learn-out DIR` (the mlp learns quickly) on a free
port in a scratch folder, opens the page in Debian's Chromium (Playwright, as tests/test_serve_browser.py drives it),
turns learn mode on, draws the digit each prompt asks for with the mouse (the stroke set below, a
little varied each time) until every digit has as many as the page wants, teaches, waits for the
result, and photographs the page. tests/test_learn_browser.py drives the page with the same helpers.
"""

from __future__ import annotations

import argparse
import math
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1000, "height": 900}
LEARN_TIMEOUT_MS = 330_000  # longer than the server lets a learning job run (300 s)


def _loop(cx: float, cy: float, rx: float, ry: float, start: float, turns: float, points: int = 24):
    """Points of an ellipse arc around (cx, cy), from angle `start` (0 = top, clockwise) for `turns` turns."""
    return [(cx + rx * math.sin(start + 2 * math.pi * turns * t / points),
             cy - ry * math.cos(start + 2 * math.pi * turns * t / points)) for t in range(points + 1)]


# One way to write each digit, as a person would stroke it on the 280×280 pad: lists of (x, y) strokes.
STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_loop(140, 140, 55, 85, 0, 1)],
    1: [[(70, 130), (150, 48), (150, 232)]],  # a long flag, as many write it: models read some as a 7
    2: [[(88, 92), (104, 62), (140, 48), (178, 60), (190, 94), (176, 130), (96, 226), (196, 226)]],
    3: [[(88, 68), (126, 48), (172, 60), (180, 96), (138, 130), (182, 156), (188, 198), (146, 230), (88, 216)]],
    4: [[(150, 48), (86, 166), (200, 166)], [(166, 100), (166, 236)]],
    5: [[(186, 54), (106, 54), (98, 130), (142, 116), (182, 136), (190, 182), (158, 226), (96, 216)]],
    6: [[(176, 54), (126, 86), (98, 146), (104, 206), (142, 232), (180, 204), (176, 160), (136, 144), (100, 170)]],
    7: [[(84, 58), (196, 58), (124, 236)]],
    8: [[(140 + 42 * math.sin(2 * math.pi * t / 32), 140 - 88 * math.cos(math.pi * t / 32)) for t in range(65)]],
    9: [_loop(140, 96, 46, 44, math.pi / 2, -1) + [(184, 96), (174, 236)]],
}


def varied(digit: int, rng: random.Random) -> list[list[tuple[float, float]]]:
    """The digit's strokes a little rotated, scaled and moved, as no two drawings are alike."""
    angle, scale = math.radians(rng.uniform(-8, 8)), rng.uniform(0.85, 1.05)
    dx, dy = rng.uniform(-14, 14), rng.uniform(-10, 10)
    cos, sin = math.cos(angle), math.sin(angle)
    return [[(140 + dx + scale * ((x - 140) * cos - (y - 140) * sin),
              140 + dy + scale * ((x - 140) * sin + (y - 140) * cos)) for x, y in stroke] for stroke in STROKES[digit]]


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw strokes given in the 280×280 pad's pixels with the mouse."""
    box = page.locator("#canvas").bounding_box()
    scale = box["width"] / 280
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0] * scale, box["y"] + stroke[0][1] * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=2)
        page.mouse.up()


def saved_counts(page) -> list[int]:
    """The page's count of saved drawings for each digit ("3/10" → 3)."""
    return [int(text.split("/")[0]) for text in page.locator("#learn-counts .count").all_inner_texts()]


def collect(page, per_digit: int, seed: int = 0) -> int:
    """In learn mode, draw whatever digit the page asks for and save it, until each digit has `per_digit`.

    Returns how many drawings were saved."""
    from playwright.sync_api import expect

    rng, saved = random.Random(seed), 0
    while min(counts := saved_counts(page)) < per_digit:
        digit = int(page.locator("#learn-prompt").inner_text().split()[-1])
        draw(page, varied(digit, rng))
        page.get_by_role("button", name=f"Save as {digit}").click()
        expect(page.locator(f"#learn-counts li >> nth={digit}")).to_contain_text(f"{counts[digit] + 1}/")
        saved += 1
    return saved


def teach(page) -> None:
    """Press "Teach it my handwriting" and wait for the before/after table."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="Teach it my handwriting").click()
    expect(page.locator("#learn-result")).to_be_visible(timeout=LEARN_TIMEOUT_MS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "learn.png",
                        help="where to write the picture (default: docs/images/learn.png)")
    parser.add_argument("--model", default="pretrained:mlp", help="the model to serve (default: pretrained:mlp)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        server = subprocess.Popen(
            [sys.executable, "-m", "mnistlab", "serve", args.model, "--port", "0", "--collect", f"{scratch}/mine",
             "--learn-out", f"{scratch}/runs"], stdout=subprocess.PIPE, text=True, cwd=scratch)
        try:
            url = server.stdout.readline().split(" at ", 1)[1].split()[0]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(url)
                page.get_by_role("button", name="Learn my handwriting").click()
                collect(page, per_digit=10)
                teach(page)
                draw(page, varied(4, random.Random(1)))
                page.locator("#result strong").wait_for()
                page.wait_for_timeout(300)  # the bars' transition
                args.out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.out, full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""POST /api/read: the number in an upload, answered as `mnistlab read --json` answers a file, under the same
rings as /api/predict (body limit, content types, formats, bombs, other sites); and hostile pictures answered
in bounded time."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnistlab[serve]'")

import mnistlab  # noqa: E402
from mnistlab.reading import MAX_CROPS  # noqa: E402
from mnistlab.segmentation import MAX_MARKS  # noqa: E402
from mnistlab.serve import create_app  # noqa: E402
from tests.test_reading import line, samples  # noqa: E402, F401  (the fixture `line` draws with)
from tests.test_serve import local_client, png, png_header_only  # noqa: E402
from tests.test_serve_hostile import assert_json_refusal, exchange, request, running  # noqa: E402

PHOTO = Path(__file__).parents[1] / "examples" / "numbers" / "photo-2903.jpg"


@pytest.fixture(scope="module")
def model() -> mnistlab.Classifier:
    return mnistlab.load_model("pretrained:cnn")


@pytest.fixture(scope="module")
def client(model):
    return local_client(create_app(model, max_upload_bytes=2_000_000))


def post(client, body: bytes, kind: str = "image/png"):
    return client.post("/api/read", content=body, headers={"Content-Type": kind})


# --- good requests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["raw-body", "multipart"])
def test_a_photographed_number_is_read_as_the_command_reads_it(client, model, how):
    data = PHOTO.read_bytes()
    if how == "raw-body":
        response = post(client, data, "image/jpeg")
    else:
        response = client.post("/api/read", files={"file": ("photo.jpg", data, "image/jpeg")})
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = mnistlab.read(model, PHOTO)[0].to_dict()
    del expected["file"]
    assert set(answer) == {"text", "digits", "error", "model"}
    assert {k: answer[k] for k in expected} == expected
    assert answer["text"] == "2903" and answer["error"] is None and answer["model"]["architecture"] == "cnn"
    width, height = Image.open(PHOTO).size
    for digit in answer["digits"]:
        x0, y0, x1, y1 = digit["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and 0 < digit["confidence"] <= 1


def test_a_drawn_number_is_read_left_to_right(client, samples):  # noqa: F811
    answer = post(client, png(Image.fromarray(line(samples, "4715")))).json()
    assert answer["text"] == "4715"
    assert [d["box"][0] for d in answer["digits"]] == sorted(d["box"][0] for d in answer["digits"])


def test_the_openapi_declares_the_route_and_its_answer(client):
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/api/read"]["post"]
    assert {"200", "400", "413", "415", "422"} <= set(route["responses"])
    assert "image/jpeg" in route["requestBody"]["content"]
    answer = spec["components"]["schemas"]["ReadResponse"]
    assert set(answer["properties"]) == {"text", "digits", "error", "model"}
    digit = spec["components"]["schemas"]["ReadDigit"]["properties"]
    assert digit["label"]["maximum"] == 9 and digit["box"]["minItems"] == digit["box"]["maxItems"] == 4


# --- refusals: one line each, as /api/predict gives them ---------------------------------------------------

@pytest.mark.parametrize("body, kind, status, words", [
    (b"not an image at all", "image/png", 400, "not an image"),
    (b"", "image/png", 400, "the upload is empty"),
    (b"hello", "text/plain", 415, "is not an image"),
    (png_header_only(50_000, 50_000), "image/png", 400, "decompression bomb"),
    (png(Image.new("L", (600, 200), 255)), "image/png", 422, "no number found"),
    (png(Image.new("L", (5, 5), 0)), "image/png", 422, "no number found"),
], ids=["garbage", "empty", "text", "bomb", "blank-page", "tiny"])
def test_a_bad_upload_gets_one_line(client, body, kind, status, words):
    response = post(client, body, kind)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in detail and "\n" not in detail and "Traceback" not in detail


class Garments:
    """A model whose images fill their frame (as Fashion-MNIST's do): it reads no numbers."""

    layout = "fill"

    def __init__(self, model: mnistlab.Classifier):
        self.model = model

    def __getattr__(self, name: str):
        return getattr(self.model, name)


def test_a_model_of_garments_says_it_reads_no_numbers(model):
    client = local_client(create_app(Garments(model)))
    response = post(client, PHOTO.read_bytes(), "image/jpeg")
    assert response.status_code == 422 and "needs a digit model" in response.json()["detail"], response.text


def test_a_body_over_the_limit_is_refused_before_it_is_read(model):
    client = local_client(create_app(model, max_upload_bytes=1000))
    response = post(client, PHOTO.read_bytes(), "image/jpeg")
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]


# --- hostile pictures: bounded time, one line -------------------------------------------------------------

def test_thousands_of_specks_are_refused_in_bounded_time(client):
    rng = np.random.default_rng(0)
    page = np.where(rng.random((1500, 1500)) < 0.02, 0, 255).astype(np.uint8)
    started = time.perf_counter()
    response = post(client, png(Image.fromarray(page)))
    assert time.perf_counter() - started < 10
    assert response.status_code == 422 and f"more than the {MAX_MARKS}" in response.json()["detail"]


def test_a_20000_pixel_wide_line_is_answered_in_bounded_time(client, samples):  # noqa: F811
    number = line(samples, "2903", height=200)
    wide = np.full((number.shape[0], 20_000), 255, np.uint8)
    wide[:, 8000:8000 + number.shape[1]] = number
    started = time.perf_counter()
    response = post(client, png(Image.fromarray(wide)))
    assert time.perf_counter() - started < 10
    assert response.status_code == 200 and response.json()["text"] == "2903", response.text


def test_marks_that_may_be_cut_too_many_ways_are_refused_in_bounded_time(client):
    """A row of combs: every gap between teeth is a cut to try, and no picture may give the classifier more than
    MAX_CROPS candidate digits."""
    page = np.full((200, 2040), 255, np.uint8)
    for x in range(10, 2000, 40):  # combs 36 px wide and 16 px tall, 4 px apart: each wider than tall
        page[100:104, x:x + 36] = 0
        for tooth in range(x, x + 36, 3):
            page[88 + (tooth // 3) % 3:104, tooth:tooth + 1] = 0
    started = time.perf_counter()
    response = post(client, png(Image.fromarray(page)))
    assert time.perf_counter() - started < 10
    assert response.status_code == 422 and f"more than the {MAX_CROPS}" in response.json()["detail"], response.text


# --- the same guarantees on a real socket --------------------------------------------------------------------

@pytest.fixture(scope="module")
def port(model):
    with running(create_app(model, allow_origins=["https://other.example"])) as port:
        yield port


def test_another_site_cannot_read_unless_allowed(port):
    data = PHOTO.read_bytes()
    evil = request("POST", "/api/read", {"Content-Type": "image/jpeg", "Origin": "https://evil.example"}, data)
    assert_json_refusal(exchange(port, evil), 403, "only from this server's own page")
    allowed = request("POST", "/api/read", {"Content-Type": "image/jpeg", "Origin": "https://other.example",
                                            "Sec-Fetch-Site": "cross-site"}, data)
    status, headers, _ = exchange(port, allowed)
    assert status == 200 and headers["access-control-allow-origin"] == "https://other.example"


def test_an_upload_over_the_limit_is_refused_from_its_length(port):
    oversized = request("POST", "/api/read", {"Content-Type": "image/png"}, b"\0" * 3_000_000)
    assert_json_refusal(exchange(port, oversized), 413, "over the limit")

"""`mnistlab serve`: the API's answers, every kind of bad request, --collect, and the labelled-folder commands."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import json
import math
import re
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mnistlab[serve]'")

from fastapi.testclient import TestClient  # noqa: E402

import mnistlab  # noqa: E402
from mnistlab import predict  # noqa: E402
from mnistlab.cli import main  # noqa: E402
from mnistlab.errors import ServeError  # noqa: E402
from mnistlab.labelled import LabelledError, read_labelled, save_labelled  # noqa: E402
from mnistlab.serve import (  # noqa: E402
    MAX_UPLOAD_PIXELS,
    BodyLimit,
    bind,
    create_app,
    is_loopback,
    serving_size,
    without_local_paths,
)

SIZE = 280  # the page's canvas
BRUSH = 24  # the page's brush (static/app.js)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def drawing(*strokes: list[tuple[float, float]], size: int = SIZE, width: int = BRUSH) -> bytes:
    """Black strokes on a white canvas, as the page sends them (RGBA PNG)."""
    image = Image.new("RGBA", (size, size), "white")
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line(stroke, fill="black", width=width, joint="curve")
    return png(image)


ONE = [(140, 50), (140, 230)]
ZERO = [(140 + 55 * math.sin(t * math.pi / 12), 140 - 85 * math.cos(t * math.pi / 12)) for t in range(25)]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height, with garbage for pixels: decoding it would fail differently."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"junk" * 8) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def checkpoint(mnist_mlp: Path) -> mnistlab.Checkpoint:
    return mnistlab.load_checkpoint(mnist_mlp)


LOCAL = "http://localhost"  # the server answers to loopback's names (TestClient's own "testserver" is refused)


def local_client(app, **kwargs) -> TestClient:
    return TestClient(app, base_url=LOCAL, **kwargs)


@pytest.fixture
def client(checkpoint) -> TestClient:
    return local_client(create_app(checkpoint, max_upload_bytes=200_000))


@pytest.fixture
def collecting(checkpoint, tmp_path) -> tuple[TestClient, Path]:
    folder = tmp_path / "mine"
    return local_client(create_app(checkpoint, collect_dir=folder)), folder


def post_image(client: TestClient, body: bytes, kind: str = "image/png", path: str = "/api/predict?preprocessed=true"):
    return client.post(path, content=body, headers={"Content-Type": kind})


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# --- good requests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("strokes, digit", [([ONE], 1), ([ZERO], 0)], ids=["drawn-1", "drawn-0"])
@pytest.mark.parametrize("how", ["raw-body", "multipart"])
@pytest.mark.slow
def test_a_drawing_is_read_and_the_answer_has_every_field(client, checkpoint, strokes, digit, how):
    body = drawing(*strokes)
    if how == "raw-body":
        response = post_image(client, body)
    else:
        response = client.post("/api/predict?preprocessed=1", files={"file": ("digit.png", body, "image/png")})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert set(answer) == {"label", "class", "confidence", "probabilities", "top_k", "preprocessed", "model", "reason"}
    assert answer["reason"] is None  # a digit: "not a digit" is null
    assert answer["label"] == digit
    assert len(answer["probabilities"]) == 10 and sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert answer["confidence"] == answer["probabilities"][digit] == answer["top_k"][0]["probability"]
    assert [k["label"] for k in answer["top_k"]][0] == digit and len(answer["top_k"]) == 3
    seen = Image.open(io.BytesIO(base64.b64decode(answer["preprocessed"])))
    assert (seen.format, seen.size, seen.mode) == ("PNG", (28, 28), "L")
    assert answer["model"] == {"name": checkpoint.path.resolve().name, "architecture": "mlp",
                               "test_accuracy": checkpoint.metrics["test_acc"]}


def test_the_page_brush_gives_mnist_like_strokes(client):
    """The 28×28 input of a drawing made with the page's brush has strokes inside MNIST's range (2.0-4.4 px)."""
    from mnistlab.preprocessing import MAX_STROKE, MIN_STROKE, stroke_width

    for stroke in (ONE, ZERO):
        seen = base64.b64decode(post_image(client, drawing(stroke)).json()["preprocessed"])
        pixels = (mnistlab.ink.to_grayscale(Image.open(io.BytesIO(seen))))
        assert MIN_STROKE <= stroke_width(pixels) <= MAX_STROKE


def test_the_api_gives_the_same_answer_as_checkpoint_predict(client, checkpoint):
    """The same preprocessing and model as `predict`, on the drawing box-averaged to the serving size (140 px)."""
    image = serving_size(Image.open(io.BytesIO(drawing(ZERO))))
    assert image.size == (140, 140)
    [expected] = predict(checkpoint, image)
    assert post_image(client, drawing(ZERO)).json()["probabilities"] == [round(p, 6) for p in expected.probabilities]


@pytest.mark.slow
def test_model_health_page_and_docs(client, checkpoint):
    info = client.get("/api/model").json()
    assert info["architecture"] == "mlp" and info["config"] == without_local_paths(checkpoint.config)
    assert info["collect"] is False
    assert info["test_accuracy"] == checkpoint.metrics["test_acc"] and info["max_upload_bytes"] == 200_000
    assert client.get("/healthz").json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
    assert "https://" not in page.text + client.get("/static/app.js").text  # nothing from a CDN
    predict = client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]
    assert {"400", "413", "415", "422"} <= set(predict["responses"])
    assert {"multipart/form-data", "image/png"} <= set(predict["requestBody"]["content"])
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize("metrics", [{"test_acc": "97%"}, {"test_acc": True}, {"test_acc": 97.6},
                                     {"test_acc": float("nan")}, {}, "not a dict", None],
                         ids=["string", "bool", "percent", "nan", "missing", "metrics-not-a-dict", "metrics-null"])
@pytest.mark.slow
def test_a_checkpoint_without_a_usable_test_accuracy_is_served_without_one(checkpoint, metrics):
    config = {**checkpoint.config, "metrics": metrics}
    client = local_client(create_app(dataclasses.replace(checkpoint, config=config)))
    assert client.get("/api/model").json()["test_accuracy"] is None
    assert post_image(client, drawing(ONE)).json()["model"]["test_accuracy"] is None


@pytest.mark.slow
def test_concurrent_requests_get_the_answers_they_would_get_alone(client):
    bodies = [drawing(ONE), drawing(ZERO), drawing()] * 6
    alone = [post_image(client, body).json() for body in bodies[:3]]
    with ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda body: post_image(client, body).json(), bodies))
    assert together == alone * 6


# --- bad requests --------------------------------------------------------------------------------------

def _blank(color: str) -> bytes:
    return png(Image.new("RGB", (SIZE, SIZE), color))


def _bomb() -> bytes:
    side = math.isqrt(MAX_UPLOAD_PIXELS) + 100  # a real image, a few KB of PNG, over the pixel limit
    return png(Image.new("L", (side, side)))


def _two_files(client: TestClient):
    body = drawing(ONE)
    return client.post("/api/predict", files=[("file", ("a.png", body, "image/png")), ("file", ("b.png", body))])


BAD_REQUESTS = [
    # id, request, status, words the message must hold
    ("text-as-png", lambda c: post_image(c, b"hello, world"), 400, "not an image"),
    ("empty-body", lambda c: post_image(c, b""), 400, "empty"),
    ("truncated-png", lambda c: post_image(c, drawing(ONE)[:300]), 400, "upload"),
    ("postscript-as-png", lambda c: post_image(c, b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 1 1\n"), 400,
     "not an image"),
    ("svg-as-octet-stream", lambda c: post_image(c, b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                                                 "application/octet-stream"), 400, "not an image"),
    ("bomb-header-only", lambda c: post_image(c, png_header_only(100_000, 100_000)), 400, "decompression bomb"),
    ("bomb-real-pixels", lambda c: post_image(c, _bomb()), 400, "over the limit"),
    ("text-plain", lambda c: post_image(c, b"7", "text/plain"), 415, "not an image"),
    ("json", lambda c: c.post("/api/predict", json={"image": "x"}), 415, "application/json"),
    ("form-urlencoded", lambda c: c.post("/api/predict", data={"file": "x"}), 415, "urlencoded"),
    ("multipart-without-file", lambda c: c.post("/api/predict", files={"image": ("a.png", drawing(ONE))}), 400,
     "'file'"),
    ("multipart-file-is-text-field", lambda c: c.post("/api/predict", data={"file": "abc"},
                                                      files={"other": ("a", b"x")}), 400, "'file'"),
    ("multipart-empty-file", lambda c: c.post("/api/predict", files={"file": ("a.png", b"")}), 400, "empty"),
    ("multipart-two-files", _two_files, 400, "files"),
    ("multipart-malformed", lambda c: post_image(c, b"--xyz\r\nnot a part", "multipart/form-data; boundary=xyz"),
     400, ""),
    ("multipart-no-boundary", lambda c: post_image(c, b"abc", "multipart/form-data"), 400, ""),
    ("blank-white", lambda c: post_image(c, _blank("white")), 422, "no digit found"),
    ("blank-black", lambda c: post_image(c, _blank("black")), 422, "no digit found"),
    ("one-dot", lambda c: post_image(c, drawing([(140, 140), (141, 140)], width=3)), 422, "no digit found"),
    ("over-limit-declared", lambda c: post_image(c, b"\0" * 200_001), 413, "over the limit"),
    ("over-limit-chunked", lambda c: post_image(c, iter([b"\0" * 50_000] * 5)), 413, "over the limit"),
    ("bad-content-length", lambda c: c.post("/api/predict", content=b"abc", headers={"Content-Length": "-3"}),
     400, "Content-Length"),
    ("get-predict", lambda c: c.get("/api/predict"), 405, "Method Not Allowed"),
    ("delete-model", lambda c: c.delete("/api/model"), 405, "Method Not Allowed"),
    ("post-page", lambda c: c.post("/", content=b"x"), 405, "Method Not Allowed"),
    ("unknown-path", lambda c: c.get("/api/nothing"), 404, "Not Found"),
    ("static-escape", lambda c: c.get("/static/../__init__.py"), 404, "Not Found"),
    ("static-encoded-escape", lambda c: c.get("/static/%2e%2e/__init__.py"), 404, "Not Found"),
    ("collect-when-not-collecting", lambda c: post_image(c, drawing(ONE), path="/api/collect?label=1"), 404, ""),
]


@pytest.mark.parametrize("send, status, words", [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
@pytest.mark.slow
def test_a_bad_request_gets_a_json_error_and_the_server_keeps_serving(client, send, status, words):
    response = send(client)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str) and words in detail and "\n" not in detail
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert post_image(client, drawing(ONE)).json()["label"] == 1


def test_an_unexpected_failure_is_a_json_500_without_a_stack_trace(checkpoint, monkeypatch):
    client = local_client(create_app(checkpoint), raise_server_exceptions=False)
    monkeypatch.setattr(mnistlab.Checkpoint, "probabilities", lambda *a, **k: 1 / 0)
    response = post_image(client, drawing(ONE))
    assert response.status_code == 500 and response.json() == {"detail": "internal server error"}


class Upload:
    """An ASGI request body arriving in chunks; counts how many the app asked for."""

    def __init__(self, chunks: int, size: int):
        self.left, self.size, self.asked = chunks, size, 0

    async def receive(self) -> dict:
        self.asked += 1
        self.left -= 1
        return {"type": "http.request", "body": b"\0" * self.size, "more_body": self.left > 0}


def call_asgi(app, headers: list[tuple[bytes, bytes]], upload: Upload) -> list[dict]:
    scope = {"type": "http", "method": "POST", "path": "/api/predict", "raw_path": b"/api/predict",
             "query_string": b"", "http_version": "1.1",
             "headers": [(b"host", b"localhost"), (b"content-type", b"image/png"), *headers],
             "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1), "root_path": ""}
    sent = []

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, upload.receive, send))
    return sent


@pytest.mark.parametrize("headers, most_chunks_read", [
    ([(b"content-length", b"100000")], 0),  # refused from the header: not one chunk read
    ([(b"transfer-encoding", b"chunked")], 4),  # no length: refused as the 4th 300-byte chunk passes 1,000
], ids=["declared-length", "chunked"])
def test_an_oversized_body_is_refused_before_it_is_all_read(checkpoint, headers, most_chunks_read):
    upload = Upload(chunks=333, size=300)
    sent = call_asgi(create_app(checkpoint, max_upload_bytes=1000), headers, upload)
    assert sent[0]["status"] == 413
    assert upload.asked <= most_chunks_read
    assert json.loads(sent[1]["body"])["detail"] == "the upload is over the limit of 1,000 bytes"


def test_body_limit_passes_other_scopes_through():
    seen = []

    async def app(scope, receive, send):
        seen.append(scope["type"])

    asyncio.run(BodyLimit(app, limit=1)({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]


# --- --collect -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("digit", range(10))
@pytest.mark.slow
def test_collect_saves_the_drawing_under_its_digit_and_nothing_else(collecting, tmp_path, digit):
    client, folder = collecting
    before = files_under(tmp_path)
    response = post_image(client, drawing(ONE), path=f"/api/collect?label={digit}")
    assert response.status_code == 201, response.text
    saved = response.json()["file"]
    assert files_under(tmp_path) == sorted([*before, f"mine/{digit}", f"mine/{saved}"])  # "mine" is made at start
    assert saved.startswith(f"{digit}/") and saved.endswith(".png")
    with Image.open(folder / saved) as image:
        assert image.format == "PNG" and image.size == (SIZE, SIZE)
    assert client.get("/api/model").json()["collect"] is True


@pytest.mark.parametrize("label", ["../x", "..", "10", "-1", "1.5", "", "1/../../x", "%2e%2e%2fx", "one", "1e0",
                                   "99999999999999999999", " 3", "3 ", "+3", "03", "٣", "3\n", "0x3", ["3", "3"],
                                   ["3", "4"]])
@pytest.mark.slow
def test_collect_refuses_a_label_that_is_not_a_digit_and_writes_nothing(collecting, tmp_path, label):
    client, _ = collecting
    before = files_under(tmp_path)
    response = client.post("/api/collect", params={"label": label}, content=drawing(ONE),
                           headers={"Content-Type": "image/png"})
    assert response.status_code == 422 and "label" in response.json()["detail"]
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("body, status", [(b"not an image", 400), (_blank("white"), 422)],
                         ids=["not-an-image", "blank"])
def test_collect_keeps_only_drawings_of_a_digit(collecting, tmp_path, body, status):
    client, _ = collecting
    assert post_image(client, body, path="/api/collect?label=3").status_code == status
    assert post_image(client, body, path="/api/collect").status_code in (status, 422)  # no label at all
    assert files_under(tmp_path) == ["mine"]  # made, empty, when the app starts


def test_collect_does_not_follow_a_symlink_planted_in_the_folder(collecting, tmp_path):
    client, folder = collecting
    outside = tmp_path / "outside"
    outside.mkdir()
    folder.mkdir(exist_ok=True)  # the app made it, to check that it can be written
    (folder / "4").symlink_to(outside, target_is_directory=True)
    response = post_image(client, drawing(ONE), path="/api/collect?label=4")
    assert response.status_code == 500 and "Traceback" not in response.text
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "file.txt", "exists and is not a folder"),
    (lambda tmp: Path("/dev/null"), "exists and is not a folder"),
    (lambda tmp: tmp / "file.txt" / "inside", "cannot collect drawings there (Not a directory)"),
], ids=["a-file", "a-device", "inside-a-file"])
@pytest.mark.slow
def test_a_collect_folder_that_cannot_be_written_is_refused_at_start(checkpoint, tmp_path, capsys, make, message):
    (tmp_path / "file.txt").write_text("not a folder")
    folder = make(tmp_path)
    with pytest.raises(LabelledError, match=re.escape(message)):
        create_app(checkpoint, collect_dir=folder)
    assert main(["serve", str(checkpoint.path), "--port", "0", "--collect", str(folder)]) == 1
    assert capsys.readouterr().err.strip() == f"mnistlab: error: {folder}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.parametrize("label", [True, "3", 3.0, 10, -1, None], ids=repr)
def test_save_labelled_takes_only_an_int_digit(tmp_path, label):
    with pytest.raises(LabelledError, match="label must be a digit 0-9"):
        save_labelled(tmp_path, label, Image.new("L", (28, 28)))
    assert list(tmp_path.iterdir()) == []


# --- reading a labelled folder, `evaluate --images`, `plot confusion --images` ----------------------------

def test_read_labelled_takes_only_regular_image_files_in_the_digit_folders(tmp_path):
    for digit in (0, 1, 7):
        (tmp_path / str(digit)).mkdir()
        (tmp_path / str(digit) / "a.png").write_bytes(b"")
    (tmp_path / "7" / "b.JPG").write_bytes(b"")
    (tmp_path / "7" / "notes.txt").write_text("x")
    (tmp_path / "7" / "sub").mkdir()
    (tmp_path / "7" / "sub" / "c.png").write_bytes(b"")
    (tmp_path / "7" / "link.png").symlink_to("/etc/passwd")
    (tmp_path / "1" / "loop.png").symlink_to(tmp_path / "1" / "loop.png")
    (tmp_path / "10").mkdir()
    (tmp_path / "10" / "d.png").write_bytes(b"")
    (tmp_path / "x.png").write_bytes(b"")
    (tmp_path / "3").symlink_to(tmp_path / "7", target_is_directory=True)
    (tmp_path / "5").write_bytes(b"not a folder")
    found = [(str(i.path.relative_to(tmp_path)), i.label) for i in read_labelled(tmp_path)]
    assert found == [("0/a.png", 0), ("1/a.png", 1), ("7/a.png", 7), ("7/b.JPG", 7)]


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: (p / "f").touch() or p / "f",
                                  lambda p: p, lambda p: (p / "3").mkdir() or p],
                         ids=["missing", "a-file", "empty-folder", "empty-digit-folder"])
def test_read_labelled_refuses_a_folder_without_labelled_images(tmp_path, make):
    with pytest.raises(LabelledError, match="0/ … 9/"):
        read_labelled(make(tmp_path))


@pytest.fixture
def my_digits(tmp_path) -> Path:
    """Drawn digits in DIR/0 … DIR/9 form: two 1s, one 0, a 0 filed as a 7 (wrong), a blank 1 (failed)."""
    folder = tmp_path / "my-digits"
    for name, digit, body in [("a", 1, drawing(ONE)), ("b", 1, drawing([(150, 40), (130, 240)])),
                              ("c", 0, drawing(ZERO)), ("d", 7, drawing(ZERO)), ("e", 1, _blank("white"))]:
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        (folder / str(digit) / f"{name}.png").write_bytes(body)
    return folder


@pytest.mark.slow
def test_evaluate_images_prints_accuracy_per_digit_and_the_wrong_files(mnist_mlp, my_digits, capsys):
    assert main(["evaluate", str(mnist_mlp), "--images", str(my_digits), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "accuracy 75.00% (3/4)" in out
    assert "    1      2      2    100.0%" in out and "    7      0      1      0.0%" in out
    assert f"{my_digits / '7' / 'd.png'}  is 7, read as 0" in out
    assert f"{my_digits / '1' / 'e.png'}  no digit found" in out

    assert main(["evaluate", str(mnist_mlp), "--images", str(my_digits), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == 0.75 and report["images"] == 5 and report["classified"] == 4
    assert report["per_digit"]["0"] == {"right": 1, "total": 1, "accuracy": 1.0}
    assert [w["file"] for w in report["wrong"]] == [str(my_digits / "7" / "d.png")]
    assert report["wrong"][0]["predicted"] == 0 and report["failed"][0]["error"].startswith("no digit found")


@pytest.mark.slow
def test_plot_confusion_images_draws_the_folder_s_matrix(mnist_mlp, my_digits, tmp_path, capsys):
    out = tmp_path / "mine.png"
    assert main(["plot", "confusion", str(mnist_mlp), "--images", str(my_digits), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    with Image.open(out) as image:
        assert image.format == "PNG"


@pytest.mark.parametrize("argv, code, message", [
    (["evaluate", "RUN", "--json"], 2, "--json goes with --images"),
    (["evaluate", "RUN", "--images", "{tmp}/none"], 1, "no such folder"),
    (["plot", "confusion", "RUN", "--images", "{tmp}"], 1, "no image files in sub-folders 0/ … 9/"),
], ids=["json-without-images", "missing-folder", "empty-folder"])
@pytest.mark.slow
def test_images_flags_refuse_bad_input_in_one_line(mnist_mlp, tmp_path, capsys, argv, code, message):
    argv = [str(mnist_mlp) if a == "RUN" else a.format(tmp=tmp_path) for a in argv]
    if code == 2:
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert message in capsys.readouterr().err
    else:
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


# --- the command ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("0.0.0.0", True)], ids=["loopback", "all-interfaces"])
@pytest.mark.slow
def test_serve_prints_its_url_and_warns_off_loopback(mnist_mlp, monkeypatch, capsys, host, warned):
    served = []

    def serve(app, sock):  # instead of running the server: note its port and let go of it
        served.append(sock.getsockname()[1])
        sock.close()

    monkeypatch.setattr("mnistlab.serve.serve", serve)
    assert main(["serve", str(mnist_mlp), "--host", host, "--port", "0"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"serving {mnist_mlp} at http://{host}:{served[0]}/")
    assert ("warning: listening on 0.0.0.0, not loopback" in err) is warned


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("::", False),
                                            ("192.168.1.5", False), ("example.com", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.slow
def test_a_busy_port_or_a_bad_host_is_a_one_line_error(mnist_mlp, capsys):
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)
        assert main(["serve", str(mnist_mlp), "--port", str(port)]) == 2  # a usage error, as a bad flag is
        err = capsys.readouterr().err
        assert err.startswith(f"mnistlab: error: cannot listen on 127.0.0.1:{port}")
        assert err == (f"mnistlab: error: cannot listen on 127.0.0.1:{port}: the port is in use; "
                       "pass --port 0 for a free port, or another --port\n")
    finally:
        taken.close()
    with pytest.raises(ServeError, match="cannot listen on no.such.host.invalid:80"):
        bind("no.such.host.invalid", 80)


@pytest.mark.parametrize("argv, message", [
    (["serve", "--port", "70000"], "must be from 0 to 65,535"),
    (["serve", "--port", "http"], "argument --port: expected a whole number"),
    (["serve", "--max-upload-mb", "0"], "must be a number > 0 and ≤ 1024"),
    (["serve", "--max-upload-mb", "nan"], "must be finite"),
    (["serve", "--workers", "0"], "must be from 1 to 64"),
    (["serve", "--allow-origin", "example.org"], "expected an origin such as https://example.org"),
    (["serve", "--allow-origin", "https://example.org/page"], "no path"),
    (["serve", "--allowed-host", "https://digits.example.org"], "expected a host name"),
    (["serve", "--allowed-host", "digits.example.org:443"], "no port"),
])
def test_serve_bad_flags_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


# --- marks too small to be a digit ------------------------------------------------------------------------

def _smudge(box: tuple[int, int, int, int], level: int, blur: float) -> bytes:
    from PIL import ImageFilter

    image = Image.new("L", (SIZE, SIZE), 255)
    ImageDraw.Draw(image).ellipse(box, fill=level)
    return png(image.filter(ImageFilter.GaussianBlur(blur)))


def _dot(diameter: int) -> bytes:
    image = Image.new("RGBA", (SIZE, SIZE), "white")
    r = diameter / 2
    ImageDraw.Draw(image).ellipse((140 - r, 140 - r, 140 + r, 140 + r), fill="black")
    return png(image)


@pytest.mark.parametrize("body", [
    _dot(BRUSH),  # a tap with the page's brush
    _dot(70),  # a blob
    drawing([(120, 140), (160, 140)]),  # a short dash
    drawing([(80, 140), (200, 140)]),  # a long one: a minus, not a digit
    _smudge((90, 90, 190, 190), 200, 15),  # a faint smudge
    _smudge((120, 120, 160, 160), 235, 6),  # a small, fainter one
], ids=["tap", "blob", "short-dash", "long-dash", "faint-smudge", "small-smudge"])
@pytest.mark.slow
def test_a_mark_too_small_to_be_a_digit_gets_422_draw_it_larger(client, body):
    response = post_image(client, body)
    assert response.status_code == 422 and response.json()["detail"].startswith("draw it larger"), response.text


@pytest.mark.parametrize("side", [70, 140, 280], ids=["quarter-canvas", "half-canvas", "whole-canvas"])
@pytest.mark.slow
def test_real_digits_of_any_size_on_the_pad_are_read(client, side):
    """MNIST test digits drawn as dark ink onto the 280×280 canvas, small and large: none is 'too small'."""
    from mnistlab.data import load_mnist

    test = load_mnist().test
    right = 0
    for image, label in zip(test.images[:60].numpy(), test.labels[:60].tolist(), strict=True):
        canvas = Image.new("L", (SIZE, SIZE), 255)
        canvas.paste(Image.fromarray(255 - image).resize((side, side), Image.Resampling.BILINEAR),
                     ((SIZE - side) // 2, (SIZE - side) // 2))
        response = post_image(client, png(canvas))
        assert response.status_code == 200, response.text
        right += response.json()["label"] == label
    assert right >= 54  # 90%: the 2-epoch MLP reads about 96% of them


def test_the_preprocessed_image_is_sent_only_when_asked(client):
    assert client.post("/api/predict", content=drawing(ONE), headers={"Content-Type": "image/png"}
                       ).json()["preprocessed"] is None
    assert client.post("/api/predict?preprocessed=true", content=drawing(ONE),
                       headers={"Content-Type": "image/png"}).json()["preprocessed"]


def test_collected_counts_each_class_and_names_the_commands(checkpoint, tmp_path):
    folder = tmp_path / "mine"
    client = local_client(create_app(checkpoint, collect_dir=folder, run_name="runs/demo"))
    for label in (1, 1, 7):
        assert post_image(client, drawing(ONE), path=f"/api/collect?label={label}").status_code == 201
    info = client.get("/api/collected").json()
    assert info["counts"] == [0, 2, 0, 0, 0, 0, 0, 1, 0, 0] and info["total"] == 3
    assert info["commands"] == [f"mnistlab finetune runs/demo --images {folder} --out runs/demo-mine",
                                f"mnistlab evaluate runs/demo --images {folder}"]


@pytest.mark.parametrize("run_name, mine", [("pretrained:cnn", "cnn-mine"), ("runs/demo", "demo-mine"),
                                            ("runs/demo/model.onnx", "model-mine"), ("my run's", "my-run-s-mine"),
                                            ("pretrained:", "model-mine")])
def test_the_suggested_run_name_is_a_plain_folder_name(checkpoint, tmp_path, run_name, mine):
    """Never `runs/pretrained:cnn-mine`, which `mnistlab evaluate pretrained:cnn-mine` would read as a shipped model."""
    folder = tmp_path / "mine"
    client = local_client(create_app(checkpoint, collect_dir=folder, run_name=run_name))
    finetune = client.get("/api/collected").json()["commands"][0]
    assert finetune.endswith(f" --out runs/{mine}")
    assert re.fullmatch(r"[A-Za-z0-9._-]+", mine) and "pretrained:" not in finetune.partition(" --out ")[2]

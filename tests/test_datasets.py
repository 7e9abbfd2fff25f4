"""Datasets: the registry, verified cached downloads (against a local HTTP server, no internet), a Debian
package's folder (a temporary one standing in for /usr/share/datasets, and the real one when installed),
the `data` commands, `--dataset` on train/evaluate, and class names in the figures and the report."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistlab import dataset_info, downloads, load_model, predict
from mnistlab.checkpoints import load_checkpoint
from mnistlab.cli import main
from mnistlab.dataset_info import DATASETS, FASHION_MNIST, MNIST, DataError, get_dataset
from mnistlab.limits import CLASS_NAME_MAX, MEAN_RANGE, NUM_CLASSES, STD_RANGE

from .conftest import idx_bytes

TIMEOUT = 0.5  # seconds: the slow route sleeps past it
SLOW_SECONDS = 1.5


# --- a tiny synthetic dataset, served by a local HTTP server --------------------------------------------

def synthetic_files(n_train: int = 64, n_test: int = 32, seed: int = 0) -> dict[str, bytes]:
    """The four .gz files of a learnable 28×28 dataset (class k lights up row band k), by published name."""
    rng = np.random.default_rng(seed)
    files = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n, dtype=np.uint8) % NUM_CLASSES
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 + 2 * k: 4 + 2 * k, 4:24] = 255
        files[f"{prefix}-images-idx3-ubyte.gz"] = gzip.compress(idx_bytes(images), mtime=0)
        files[f"{prefix}-labels-idx1-ubyte.gz"] = gzip.compress(idx_bytes(labels), mtime=0)
    return files


FILES = synthetic_files()
MD5 = {name: hashlib.md5(data).hexdigest() for name, data in FILES.items()}
CONTENT_SHA256 = {name.removesuffix(".gz"): hashlib.sha256(gzip.decompress(data)).hexdigest()
                  for name, data in FILES.items()}
NAME = "t10k-labels-idx1-ubyte.gz"  # the smallest file: the one the single-file cases fetch


class Server:
    """Serves FILES under /good/, and broken versions under /corrupt/, /truncated/, /missing/ and /slow/."""

    def __init__(self):
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                route, _, name = self.path.strip("/").partition("/")
                data = FILES.get(name)
                if data is None or route == "missing":
                    self.send_error(404)
                    return
                if route == "slow":
                    time.sleep(SLOW_SECONDS)
                if route == "corrupt":  # the right size, the wrong bytes
                    data = bytes(b ^ 0xFF for b in data)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    # Truncated: the header promises every byte, half arrive, and the connection closes.
                    self.wfile.write(data[:len(data) // 2] if route == "truncated" else data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (the slow route)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def base(self, route: str) -> str:
        return f"{self.url}/{route}/"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    server = Server()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """$MNISTLAB_DATA_DIR, pointing at an empty folder of this test's."""
    root = tmp_path / "cache"
    monkeypatch.setenv(downloads.CACHE_ENV, str(root))
    return root


@pytest.fixture
def system_root(tmp_path, monkeypatch) -> Path:
    """$MNISTLAB_SYSTEM_DATASETS: an empty folder of this test's standing in for /usr/share/datasets."""
    root = tmp_path / "usr-share-datasets"
    root.mkdir()
    monkeypatch.setenv(downloads.SYSTEM_ENV, str(root))
    return root


@pytest.fixture
def fashion(server, system_root, monkeypatch) -> dataset_info.DatasetInfo:
    """fashion-mnist in the registry, its URLs the local server's and its hashes the synthetic files'; no package."""
    info = dataclasses.replace(FASHION_MNIST, urls=(server.base("missing"), server.base("good")), md5=MD5,
                               content_sha256=CONTENT_SHA256)
    monkeypatch.setitem(DATASETS, info.name, info)
    return info


@pytest.fixture
def installed(fashion, system_root, cache) -> Path:
    """Debian's dataset-fashion-mnist, standing in: the synthetic files, recompressed as Debian's are."""
    folder = system_root / "fashion-mnist"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / name).write_bytes(gzip.compress(gzip.decompress(data), compresslevel=6, mtime=1))
    return folder


def listing(root: Path) -> list[str]:
    """Every path under `root` (hidden ones too), relative, sorted: what the cache holds."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")) if root.exists() else []


def fetch_one(server: Server, routes: list[str], folder: Path) -> Path:
    return downloads.fetch_file(NAME, MD5[NAME], [server.base(route) + NAME for route in routes], folder,
                                timeout=TIMEOUT, progress=False)


# --- the registry ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(DATASETS))
def test_each_dataset_has_its_facts(name):
    info = get_dataset(name)
    assert info.name == name and len(info.classes) == NUM_CLASSES and len(set(info.classes)) == NUM_CLASSES
    assert all(0 < len(c) <= CLASS_NAME_MAX and c.isprintable() for c in info.classes)
    assert MEAN_RANGE[0] < info.mean < MEAN_RANGE[1] and STD_RANGE[0] < info.std < STD_RANGE[1]
    assert info.licence and info.homepage and info.hash_source
    if info.bundled or info.debian_package:  # a recompressed copy is known by its content
        assert sorted(info.content_sha256) == sorted(dataset_info.FILE_STEMS)
        assert all(len(h) == 64 for h in info.content_sha256.values())
    if info.bundled:
        assert info.md5 is None
    else:
        assert sorted(info.md5) == sorted(info.files) and all(len(h) == 32 for h in info.md5.values())
        assert all(url.startswith(("https://", "http://")) and url.endswith("/") for url in info.urls)


def test_an_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'; choose from: mnist, fashion-mnist, kmnist"):
        get_dataset("cifar")


def test_mnist_constants_are_defined_once():
    from mnistlab import data

    assert (data.MNIST_MEAN, data.MNIST_STD) == (DATASETS["mnist"].mean, DATASETS["mnist"].std)
    assert data.MNIST_SHA256 is DATASETS["mnist"].content_sha256


def test_the_registry_and_the_data_commands_import_neither_torch_nor_pooch():
    code = ("import sys; import mnistlab.dataset_info, mnistlab.downloads, mnistlab.cli.data\n"
            "from mnistlab.cli import main; main(['data', 'list'])\n"
            "assert 'torch' not in sys.modules and 'pooch' not in sys.modules, 'imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, downloads.CACHE_ENV: "/nonexistent/cache"})
    assert result.returncode == 0, result.stderr


# --- downloads: each server behaviour, its exact outcome, and a clean cache -----------------------------

def test_a_good_file_is_fetched_and_renamed_into_place(server, tmp_path):
    folder = tmp_path / "cache" / "ds"
    assert fetch_one(server, ["good"], folder) == folder / NAME
    assert (folder / NAME).read_bytes() == FILES[NAME]
    assert listing(tmp_path / "cache") == ["ds", f"ds/{NAME}"]  # no temporary file left beside it


@pytest.mark.parametrize("route, reason", [
    ("corrupt", "MD5 mismatch: got "),
    ("truncated", "transfer broken off before the end (truncated)"),
    ("missing", "HTTP 404 Not Found"),
    ("slow", f"no answer within {TIMEOUT:g} s (timed out)"),
], ids=["corrupt-right-size", "truncated", "404", "slow-timeout"])
@pytest.mark.parametrize("cache_state", ["empty", "holding-other-files"])
@pytest.mark.slow
def test_a_failed_download_names_file_and_reason_and_leaves_the_cache_as_it_was(server, tmp_path, route, reason,
                                                                              cache_state):
    root = tmp_path / "cache"
    folder = root / "ds"
    if cache_state != "empty":
        folder.mkdir(parents=True)
        (folder / "other.gz").write_bytes(b"kept")
    before = listing(root)
    with pytest.raises(DataError) as error:
        fetch_one(server, [route], folder)
    url = server.base(route) + NAME
    assert str(error.value).startswith(f"{NAME}: could not be fetched: {url}: {reason}")
    assert "\n" not in str(error.value)
    assert listing(root) == before  # no partial file, no temporary file, no folder of its own


def test_the_mirror_is_tried_when_the_first_url_fails(server, tmp_path):
    server.requests.clear()
    path = fetch_one(server, ["missing", "good"], tmp_path / "ds")
    assert path.read_bytes() == FILES[NAME]
    assert server.requests == [f"/missing/{NAME}", f"/good/{NAME}"]


def test_when_every_url_fails_the_error_lists_each_reason_in_order(server, tmp_path):
    with pytest.raises(DataError) as error:
        fetch_one(server, ["missing", "corrupt", "truncated"], tmp_path / "ds")
    message = str(error.value)
    reasons = [f"{server.base('missing')}{NAME}: HTTP 404", f"{server.base('corrupt')}{NAME}: MD5 mismatch",
               f"{server.base('truncated')}{NAME}: transfer broken off"]
    positions = [message.index(reason) for reason in reasons]
    assert positions == sorted(positions) and message.count("; ") == 2
    assert listing(tmp_path) == []


def test_a_server_that_sends_too_much_is_cut_off(server, tmp_path, monkeypatch):
    monkeypatch.setattr(downloads, "MAX_DOWNLOAD_BYTES", 10)
    with pytest.raises(DataError, match=r"sent more than 10 bytes"):
        fetch_one(server, ["good"], tmp_path / "ds")
    assert listing(tmp_path) == []


def test_ctrl_c_mid_download_leaves_nothing(server, tmp_path, monkeypatch):
    def interrupt(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(downloads._CappedWriter, "write", interrupt)
    with pytest.raises(KeyboardInterrupt):
        fetch_one(server, ["good"], tmp_path / "cache" / "ds")
    assert listing(tmp_path) == []


def test_a_killed_downloads_staging_folder_is_removed_later_a_live_one_is_not(server, tmp_path):
    folder = tmp_path / "ds"
    stale, live = folder / f"{downloads.STAGING_PREFIX}old", folder / f"{downloads.STAGING_PREFIX}new"
    for staging in (stale, live):
        staging.mkdir(parents=True)
        (staging / NAME).write_bytes(b"partial")
    long_ago = time.time() - downloads.STALE_SECONDS - 60
    os.utime(stale, (long_ago, long_ago))
    fetch_one(server, ["good"], folder)
    assert not stale.exists() and live.exists()


# --- the cache: fetched once, re-checked on every load ---------------------------------------------------

def test_a_cached_good_file_is_not_downloaded_again(server, fashion, cache):
    downloads.fetch(fashion, timeout=TIMEOUT, progress=False)
    server.requests.clear()
    downloads.fetch(fashion, timeout=TIMEOUT, progress=False)
    assert server.requests == []
    assert listing(cache) == ["fashion-mnist", *(f"fashion-mnist/{name}" for name in sorted(FILES))]


def test_a_corrupt_cached_file_is_never_used(server, fashion, cache, monkeypatch, capsys):
    from mnistlab.data import load_mnist

    folder = downloads.fetch(fashion, timeout=TIMEOUT, progress=False)
    damaged = folder / NAME
    damaged.write_bytes(bytes(b ^ 1 for b in damaged.read_bytes()))
    assert main(["data", "verify", "fashion-mnist"]) == 1
    out = capsys.readouterr().out
    assert f"corrupt  {NAME}" in out and "ok       train-images-idx3-ubyte.gz" in out
    assert main(["data", "list"]) == 0
    assert f"not cached (3 of 4 files in {folder}, 1 corrupt)" in capsys.readouterr().out
    # With no URL serving it, loading refuses the corrupt copy and says how to fix it.
    monkeypatch.setitem(DATASETS, fashion.name, dataclasses.replace(fashion, urls=(server.base("missing"),)))
    with pytest.raises(DataError) as error:
        load_mnist(dataset="fashion-mnist", progress=False)
    assert str(error.value) == (f"{NAME}: could not be fetched: {server.base('missing')}{NAME}: HTTP 404 Not Found; "
                                f"the cached copy {damaged} is corrupt and was not used: `mnistlab data download "
                                "fashion-mnist` replaces it once a URL above answers")
    # With a URL that serves it, loading fetches a good copy in its place.
    monkeypatch.setitem(DATASETS, fashion.name, fashion)
    data = load_mnist(dataset="fashion-mnist", progress=False)
    assert damaged.read_bytes() == FILES[NAME] and (len(data.train), len(data.test)) == (64, 32)
    assert data.name == "fashion-mnist" and data.is_canonical
    assert main(["data", "verify", "fashion-mnist"]) == 0


# --- the data commands ---------------------------------------------------------------------------------

def test_data_list_download_and_verify(server, fashion, cache, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist: Fashion-MNIST" in out and "T-shirt/top, Trouser" in out and "MIT (Zalando SE)" in out
    assert f"not cached (0 of 4 files in {cache / 'fashion-mnist'})" in out
    assert "bundled with mnistlab" in out and "CC BY-SA 4.0" in out
    assert main(["data", "verify", "fashion-mnist"]) == 0  # missing files are not corrupt ones
    assert capsys.readouterr().out.count("missing  ") == 4
    assert main(["data", "download", "fashion-mnist"]) == 0
    assert f"Fashion-MNIST: all 4 files in {cache / 'fashion-mnist'}" in capsys.readouterr().out
    assert main(["data", "list"]) == 0
    assert f"cached in {cache / 'fashion-mnist'}" in capsys.readouterr().out
    assert main(["data", "verify"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok       ") == 8 and "mnist: bundled in" in out  # mnist's four by SHA-256, fashion's four


@pytest.mark.parametrize("argv", [["data", "download", "mnist"], ["data", "download", "cifar"],
                                  ["data", "verify", "cifar"], ["data"]], ids=["bundled", "unknown", "verify-unknown",
                                                                             "no-action"])
def test_data_commands_refuse_bad_names(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2


def test_a_failed_download_is_one_line_and_exit_1(server, fashion, cache, monkeypatch, capsys):
    monkeypatch.setitem(DATASETS, fashion.name, dataclasses.replace(fashion, urls=(server.base("missing"),)))
    assert main(["data", "download", "fashion-mnist"]) == 1
    err = capsys.readouterr().err.splitlines()
    url = f"{server.base('missing')}train-images-idx3-ubyte.gz"
    assert err == [f"fetching {url}",
                   f"mnistlab: error: train-images-idx3-ubyte.gz: could not be fetched: {url}: HTTP 404 Not Found"]
    assert listing(cache) == []


# --- training and evaluating on another dataset ---------------------------------------------------------

@pytest.fixture
def fashion_run(server, fashion, cache, tmp_path, capsys) -> Path:
    run = tmp_path / "run"
    assert main(["train", "--dataset", "fashion-mnist", "--train-limit", "64", "--epochs", "1", "--hidden", "16",
                 "--no-progress", "--device", "cpu", "--out", str(run)]) == 0
    capsys.readouterr()
    return run


@pytest.mark.slow
def test_a_run_records_its_dataset_and_is_evaluated_on_it_only(fashion_run, capsys):
    config = json.loads((fashion_run / "config.json").read_text())
    assert config["dataset"]["name"] == "fashion-mnist" and config["dataset"]["canonical"] is True
    assert config["dataset"]["classes"] == list(FASHION_MNIST.classes)
    assert config["normalization"] == {"mean": FASHION_MNIST.mean, "std": FASHION_MNIST.std}
    report = (fashion_run / "report.html").read_text()
    assert "T-shirt/top, Trouser, Pullover" in report and "on fashion-mnist" in report
    # evaluate, the figures and report use the run's own dataset, and refuse another (one run: trained once)
    assert main(["evaluate", str(fashion_run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "Fashion-MNIST test set, from the cache" in out and "reproduced exactly" in out
    assert main(["evaluate", str(fashion_run), "--dataset", "fashion-mnist", "--device", "cpu"]) == 0
    capsys.readouterr()
    for argv in (["evaluate", str(fashion_run), "--dataset", "mnist"],
                 ["plot", "confusion", str(fashion_run), "--dataset", "kmnist"],
                 ["report", str(fashion_run), "--dataset", "mnist"]):
        assert main([*argv, "--device", "cpu"]) == 1
        err = capsys.readouterr().err
        assert err == (f"mnistlab: error: {fashion_run} was trained on fashion-mnist, not {argv[-1]}: "
                       "leave out --dataset (or give --dataset fashion-mnist)\n")


@pytest.mark.slow
def test_predict_places_images_as_the_run_s_dataset_does(fashion_run, tmp_path, capsys):
    """A Fashion-MNIST model is given items filling the frame (its dataset's layout), not MNIST's 20-pixel box."""
    picture = tmp_path / "trouser.png"
    image = Image.new("L", (120, 160), 255)
    ImageDraw.Draw(image).rectangle((40, 20, 80, 140), fill=40)
    image.save(picture)
    checkpoint = load_checkpoint(fashion_run)
    assert checkpoint.layout == "fill" and checkpoint.classes == FASHION_MNIST.classes
    [prediction] = predict(checkpoint, [str(picture)])
    rows = np.nonzero(prediction.image.sum(1) > 0.5)[0]
    assert rows.max() - rows.min() + 1 == 28
    assert main(["predict", str(fashion_run), str(picture), "--json"]) == 0
    [answer] = json.loads(capsys.readouterr().out)
    assert answer["class"] == FASHION_MNIST.classes[answer["label"]]
    # its ONNX export records the layout, and predict places the picture the same way from it
    assert main(["export", str(fashion_run), "--out", str(tmp_path / "fashion.onnx")]) == 0
    exported = load_model(tmp_path / "fashion.onnx")
    assert exported.layout == "fill" and "Fashion-MNIST" in exported.metadata["input"]["convention"]
    [from_onnx] = predict(exported, [str(picture)])
    np.testing.assert_allclose(from_onnx.image, np.round(prediction.image * 255) / 255, atol=1 / 255)
    assert from_onnx.label == prediction.label


@pytest.mark.slow
def test_a_labelled_folder_is_scored_with_the_class_names(fashion_run, capsys):
    folder = Path(__file__).parent.parent / "examples" / "my-digits"  # folders 0/ … 9/: the labels' numbers
    assert main(["evaluate", str(fashion_run), "--images", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "digit  right  total  accuracy  class"
    assert lines[3].endswith("  T-shirt/top") and lines[12].endswith("  Ankle boot")
    assert main(["evaluate", str(fashion_run), "--images", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == list(FASHION_MNIST.classes)


@pytest.mark.parametrize("recorded", ["mnist", "custom", None], ids=["mnist", "custom", "no-name"])
def test_an_older_checkpoint_counts_as_mnist(tiny_run, tmp_path, recorded, capsys):
    import shutil

    run = Path(shutil.copytree(tiny_run[0], tmp_path / "old"))
    config = json.loads((run / "config.json").read_text())
    config["dataset"] = {} if recorded is None else {"name": recorded}
    (run / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(run), "--dataset", "fashion-mnist", "--device", "cpu"]) == 1
    assert "was trained on mnist, not fashion-mnist" in capsys.readouterr().err
    assert main(["evaluate", str(run), "--dataset", "mnist", "--data-dir", str(tiny_run[1]), "--device", "cpu"]) == 0


def test_a_checkpoint_of_an_unknown_dataset_is_refused(tiny_run, tmp_path, capsys):
    import shutil

    run = Path(shutil.copytree(tiny_run[0], tmp_path / "odd"))
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["name"] = "cifar10"
    (run / "config.json").write_text(json.dumps(config))
    assert main(["evaluate", str(run), "--device", "cpu"]) == 1
    assert capsys.readouterr().err == (f"mnistlab: error: {run}: dataset 'cifar10' of the checkpoint is not one "
                                       "mnistlab knows (mnist, fashion-mnist, kmnist)\n")


def test_data_dir_reads_files_as_the_chosen_dataset_and_records_if_canonical(fashion, tmp_path):
    from mnistlab.data import load_mnist

    folder = tmp_path / "mine"
    folder.mkdir()
    for name, data in FILES.items():
        (folder / name).write_bytes(data)
    data = load_mnist(folder, dataset="fashion-mnist")
    assert data.name == "fashion-mnist" and data.is_canonical  # the published files, by their content's SHA-256
    (folder / NAME).write_bytes(gzip.compress(gzip.decompress(FILES[NAME]), mtime=1))  # same content, other bytes
    assert load_mnist(folder, dataset="fashion-mnist").is_canonical
    labels = bytearray(gzip.decompress(FILES[NAME]))
    labels[-1] = (labels[-1] + 1) % NUM_CLASSES  # one label changed: read as given, but not the published files
    (folder / NAME).write_bytes(gzip.compress(bytes(labels), mtime=0))
    assert not load_mnist(folder, dataset="fashion-mnist").is_canonical


def test_show_draws_a_dataset_image_with_its_class_name(fashion, cache, tmp_path, capsys):
    out = tmp_path / "shown.png"
    assert main(["show", "9", "--dataset", "fashion-mnist", "--out", str(out)]) == 0
    output = capsys.readouterr()
    assert out.is_file() and output.out == f"wrote {out}\n" and "fetching " in output.err


# --- class names in the figures -------------------------------------------------------------------------

@pytest.fixture
def fashion_predictions():
    import torch

    from mnistlab.plots import SplitPredictions

    labels = torch.arange(40) % NUM_CLASSES
    probs = torch.nn.functional.one_hot((labels + (torch.arange(40) % 4 == 0)) % NUM_CLASSES, NUM_CLASSES).float()
    images = torch.zeros(40, 28, 28, dtype=torch.uint8)
    return SplitPredictions(images, labels, probs * 0.9 + 0.01, FASHION_MNIST.classes)


def test_the_confusion_matrix_ticks_are_the_class_names(fashion_predictions):
    from mnistlab.plots import confusion_matrix

    fig = confusion_matrix(fashion_predictions)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(FASHION_MNIST.classes)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(FASHION_MNIST.classes)
    assert ax.get_xlabel() == "predicted class" and "40 images" in ax.get_title()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # the long names fit inside the figure, not cut at its edge
    canvas.draw()
    for label in [*ax.get_xticklabels(), *ax.get_yticklabels()]:
        box = label.get_window_extent(canvas.get_renderer())
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.width, label.get_text()


@pytest.mark.parametrize("mode", ["class", "random"])
def test_the_prediction_grid_and_mistakes_name_the_classes(fashion_predictions, mode):
    from mnistlab.plots import CellText, mistakes_gallery, prediction_grid

    grid = prediction_grid(fashion_predictions, rows=2, mode=mode, seed=0)
    texts = [text for cells in grid.findobj(CellText) for text in cells.texts]
    assert any(text.startswith("pred Ankle boot") for text in texts)
    if mode == "class":
        assert set(FASHION_MNIST.classes) <= set(texts)  # the column headings
    else:
        assert any(text.startswith("true ") for text in texts)
    gallery = mistakes_gallery(fashion_predictions, count=4)
    lines = [text for cells in gallery.findobj(CellText) for text in cells.texts]
    assert any(line.startswith("#0: true T-shirt/top") for line in lines)
    assert any(line.startswith("Trouser:") for line in lines)


# --- hostile caches --------------------------------------------------------------------------------------

def test_a_fifo_in_the_cache_counts_as_corrupt_and_never_blocks(fashion, cache, capsys, no_hang):
    folder = cache / "fashion-mnist"
    folder.mkdir(parents=True)
    os.mkfifo(folder / NAME)
    assert downloads.file_status(fashion)[NAME] == "corrupt"
    assert main(["data", "verify", "fashion-mnist"]) == 1
    assert f"corrupt  {NAME}" in capsys.readouterr().out


def test_a_cache_root_that_is_a_file_is_one_line(fashion, tmp_path, monkeypatch, capsys):
    root = tmp_path / "not-a-folder"
    root.write_text("x")
    monkeypatch.setenv(downloads.CACHE_ENV, str(root))
    assert set(downloads.file_status(fashion).values()) == {"missing"}
    assert main(["data", "download", "fashion-mnist"]) == 1
    err = capsys.readouterr().err
    assert err == (f"mnistlab: error: {root / 'fashion-mnist'}: cannot create the cache folder (Not a directory); "
                   "set $MNISTLAB_DATA_DIR to a folder you can write\n")
    assert root.read_text() == "x"


def test_a_cache_folder_that_cannot_be_made_leaves_no_parent_behind(server, tmp_path, monkeypatch):
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.name == "ds":
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with pytest.raises(DataError, match=r"ds: cannot create the cache folder \(Permission denied\)"):
        fetch_one(server, ["good"], tmp_path / "new" / "root" / "ds")
    assert listing(tmp_path) == []  # new/ and root/ were made on the way, and removed again


def test_a_refused_connection_says_so(tmp_path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/{NAME}"
    with pytest.raises(DataError) as error:
        downloads.fetch_file(NAME, MD5[NAME], [url], tmp_path / "ds", timeout=TIMEOUT, progress=False)
    assert str(error.value) == f"{NAME}: could not be fetched: {url}: cannot connect (connection refused)"
    assert listing(tmp_path) == []


def test_a_bundled_copy_is_checked_by_its_content(tmp_path):
    """MNIST's recompressed files are known by the SHA-256 of what they decompress to, as `data verify` says."""
    bundled = downloads.dataset_folder(MNIST)
    assert set(downloads.file_status(MNIST).values()) == {"ok"}
    folder = tmp_path / "mnist"
    shutil.copytree(bundled, folder)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x01\x07", mtime=0))
    whole = (folder / "train-labels-idx1-ubyte.gz").read_bytes()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(whole[:len(whole) // 2])  # a truncated .gz
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    assert downloads.file_status(MNIST, folder) == {
        "train-images-idx3-ubyte.gz": "ok", "train-labels-idx1-ubyte.gz": "corrupt",
        "t10k-images-idx3-ubyte.gz": "missing", "t10k-labels-idx1-ubyte.gz": "corrupt"}


# --- a Debian package's folder: used first, with no download, and refused unless every file verifies -----------

def test_an_installed_package_folder_is_used_with_no_download(installed, server, cache, capsys):
    from mnistlab.data import load_mnist

    server.requests.clear()
    data = load_mnist(dataset="fashion-mnist", progress=False)
    assert (data.source, data.is_canonical, len(data.train), len(data.test)) == (str(installed), True, 64, 32)
    assert server.requests == [] and listing(cache) == []
    assert main(["data", "list"]) == 0
    assert (f"  available from {installed} (Debian package dataset-fashion-mnist; each file's content has its pinned "
            "SHA-256)\n") in capsys.readouterr().out
    assert main(["data", "verify", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"fashion-mnist: {installed} (Debian package dataset-fashion-mnist)\n"
                          "  ok       train-images-idx3-ubyte.gz\n")
    assert out.count("ok       ") == 4 and out.count("missing  ") == 4  # the package's four; the empty cache's


@pytest.mark.slow
def test_a_run_trained_from_the_package_folder_records_it(installed, server, tmp_path, capsys):
    server.requests.clear()
    run = tmp_path / "run"
    assert main(["train", "--dataset", "fashion-mnist", "--train-limit", "64", "--epochs", "1", "--hidden", "16",
                 "--no-progress", "--device", "cpu", "--out", str(run)]) == 0
    dataset = json.loads((run / "config.json").read_text())["dataset"]
    assert (dataset["source"], dataset["canonical"]) == (str(installed), True)
    assert dataset["sha256"] == CONTENT_SHA256 and server.requests == []
    capsys.readouterr()
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert f"Fashion-MNIST test set, from {installed} (Debian package dataset-fashion-mnist)\n" in out
    assert "reproduced exactly" in out


def test_data_dir_comes_before_the_package_folder(installed, tmp_path):
    from mnistlab.data import load_mnist

    mine = Path(shutil.copytree(installed, tmp_path / "mine"))
    assert load_mnist(mine, dataset="fashion-mnist").source == str(mine)


def test_without_the_package_the_list_says_how_to_install_it(fashion, system_root, cache, capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert (f"  not installed: `sudo apt-get install dataset-fashion-mnist` (Debian, Ubuntu) puts it in "
            f"{system_root / 'fashion-mnist'}, used with no download\n") in out
    assert f"not cached (0 of 4 files in {cache / 'fashion-mnist'})" in out


def _tamper(folder: Path) -> str:
    labels = bytearray(gzip.decompress((folder / NAME).read_bytes()))
    labels[-1] = (labels[-1] + 1) % NUM_CLASSES  # a valid IDX file still: only the hash can tell
    (folder / NAME).write_bytes(gzip.compress(bytes(labels), mtime=0))
    return "its content differs from the pinned SHA-256 (changed or truncated)"


def _truncate(folder: Path) -> str:
    whole = (folder / NAME).read_bytes()
    (folder / NAME).write_bytes(whole[:len(whole) // 2])
    return "is not a whole gzip file (truncated or corrupt)"


def _symlink(folder: Path) -> str:
    good = folder.parent / NAME  # the same bytes, but outside the package's files
    (folder / NAME).rename(good)
    (folder / NAME).symlink_to(good)
    return "is a symbolic link, not a regular file"


def _fifo(folder: Path) -> str:
    (folder / NAME).unlink()
    os.mkfifo(folder / NAME)
    return "is a FIFO, not a regular file"


def _remove(folder: Path) -> str:
    (folder / NAME).unlink()
    return "missing"


@pytest.mark.parametrize("damage", [_tamper, _truncate, _symlink, _fifo, _remove],
                         ids=["tampered", "truncated", "symlink", "fifo", "missing"])
def test_a_package_folder_that_does_not_verify_is_refused_in_one_line(installed, server, cache, damage, tmp_path,
                                                                      capsys, no_hang):
    from mnistlab.data import load_test_split

    why = damage(installed)
    server.requests.clear()
    assert main(["data", "list"]) == 0
    assert (f"  NOT usable: {installed} (dataset-fashion-mnist) is there, but 1 of its 4 files do not verify "
            f"({NAME} {why}): `sudo apt-get install --reinstall dataset-fashion-mnist` restores them") in \
        capsys.readouterr().out
    assert main(["data", "verify", "fashion-mnist"]) == 1
    out = capsys.readouterr().out
    assert (f"  missing  {NAME}\n" if why == "missing" else f"  corrupt  {NAME}: {why}\n") in out
    assert "1 do not verify: the folder is never used" in out
    with pytest.raises(DataError) as error:  # the library refuses it, whoever reads the folder
        load_test_split("fashion-mnist")
    message = str(error.value)
    assert message.startswith(f"{installed / NAME}: ") and "\n" not in message
    assert message.endswith("`sudo apt-get install --reinstall dataset-fashion-mnist` restores the package's files "
                            "(or --data-dir DIR reads another copy)")
    out = tmp_path / "shown.png"
    assert main(["show", "0", "--split", "test", "--dataset", "fashion-mnist", "--out", str(out)]) == 1
    assert capsys.readouterr().err == f"mnistlab: error: {message}\n"
    assert not out.exists() and server.requests == [] and listing(cache) == []  # no fallback to a download


# --- the real dataset-fashion-mnist (CI installs it: .ci/run) ---------------------------------------------------

@pytest.fixture
def debian_fashion(monkeypatch) -> Path:
    """/usr/share/datasets/fashion-mnist; skipped where the package is not installed, but never in CI."""
    monkeypatch.delenv(downloads.SYSTEM_ENV, raising=False)
    folder = dataset_info.SYSTEM_ROOT / "fashion-mnist"
    if not folder.is_dir():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{folder} is missing in CI: .ci/run installs dataset-fashion-mnist (apt)")
        pytest.skip(f"{folder} is missing: `sudo apt-get install dataset-fashion-mnist` (Debian) to run this test")
    return folder


@pytest.mark.slow
def test_debian_s_files_have_the_pinned_content_and_six_thousand_images_a_class(debian_fashion, cache):
    from mnistlab.data import load_mnist

    assert downloads.content_problems(FASHION_MNIST, debian_fashion) == dict.fromkeys(FASHION_MNIST.files)
    data = load_mnist(dataset="fashion-mnist", progress=False)
    assert data.source == str(debian_fashion) and data.is_canonical and listing(cache) == []
    assert data.train.labels.bincount().tolist() == [6000] * NUM_CLASSES
    assert data.test.labels.bincount().tolist() == [1000] * NUM_CLASSES
    assert tuple(data.train.images.shape) == (60000, 28, 28) and tuple(data.test.images.shape) == (10000, 28, 28)

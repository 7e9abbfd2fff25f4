import gzip

import numpy as np
import pytest
import torch

from mnistlab.data import (
    BUNDLED_DIR,
    MNIST_MEAN,
    MNIST_STD,
    DataError,
    load_mnist,
    normalize,
    read_idx,
    resolve_data_dir,
)
from mnistlab.downloads import CACHE_ENV

from .conftest import idx_bytes, make_dataset, write_idx


@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
def test_read_idx_round_trips_raw_and_gz(tmp_path, name):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / name, array)), array)


@pytest.mark.parametrize("content, message", [
    (b"", "too short"),
    (b"\x01\x00\x08\x01" + b"\x00" * 8, "bad magic number"),
    (b"\x00\x00\x0d\x01\x00\x00\x00\x01" + b"\x00" * 4, "element type 0x0d"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02", "truncated header"),
    (idx_bytes(np.zeros((4, 5), np.uint8))[:-3], "truncated"),
    (idx_bytes(np.zeros((4, 5), np.uint8)) + b"\x00", "trailing bytes"),
])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_bad_content(tmp_path, content, message, gz):
    path = tmp_path / ("bad.idx.gz" if gz else "bad.idx")
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(info.value).startswith(f"{path}: ")


def test_absurd_header_is_an_error_not_a_crash(tmp_path):
    path = tmp_path / "huge.idx"
    path.write_bytes(b"\x00\x00\x08\x04" + b"\xff\xff\xff\xff" * 4)
    with pytest.raises(DataError, match="too large|truncated"):
        read_idx(path)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "x.gz"
    noise = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    path.write_bytes(gzip.compress(idx_bytes(noise))[:2000])
    with pytest.raises(DataError, match=rf"{path}: corrupt or truncated gzip"):
        read_idx(path)


def test_corrupt_gzip_names_the_file(tmp_path):
    path = tmp_path / "x.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError, match=str(path)):
        read_idx(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(DataError, match="data directory not found"):
        load_mnist(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="missing train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path / "empty")


def test_images_and_labels_count_must_agree(tmp_path):
    folder = make_dataset(tmp_path / "d")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="test split has 128 images but 5 labels"):
        load_mnist(folder)


def test_wrong_image_size_and_label_range(tmp_path):
    folder = make_dataset(tmp_path / "d")
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((512, 20, 20), np.uint8))
    with pytest.raises(DataError, match="expected 28x28"):
        load_mnist(folder)
    folder = make_dataset(tmp_path / "e")
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(512, 10, np.uint8))
    with pytest.raises(DataError, match="label 10 is outside 0-9"):
        load_mnist(folder)


def test_raw_files_in_a_data_dir_and_the_variable_names_the_cache(tmp_path, monkeypatch):
    folder = make_dataset(tmp_path / "raw", n_train=20, n_test=10, gz=False)
    # $MNISTLAB_DATA_DIR is the download cache's root now, not a folder of MNIST files: MNIST stays the bundled copy.
    monkeypatch.setenv(CACHE_ENV, str(folder))
    assert resolve_data_dir() == BUNDLED_DIR
    data = load_mnist(folder)
    assert (len(data.train), len(data.test)) == (20, 10)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.name == "mnist" and not data.is_canonical and data.source == str(folder)
    assert data.record()["canonical"] is False and data.record()["classes"][9] == "9"


def test_bundled_data_is_the_canonical_mnist(monkeypatch):
    monkeypatch.delenv(CACHE_ENV, raising=False)
    data = load_mnist()
    assert data.name == "mnist" and data.is_canonical
    assert tuple(data.train.images.shape) == (60000, 28, 28) and tuple(data.test.images.shape) == (10000, 28, 28)
    assert data.train.labels[:5].tolist() == [5, 0, 4, 1, 9]


def test_normalize_uint8_and_unit_floats_agree():
    pixels = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)
    expected = ((pixels.double() / 255 - MNIST_MEAN) / MNIST_STD).float().view(3, 1, 28, 28)
    from_uint8 = normalize(pixels)
    unit = pixels.float() / 255
    from_float = normalize(unit)
    assert from_uint8.shape == (3, 1, 28, 28)
    torch.testing.assert_close(from_uint8, expected)
    torch.testing.assert_close(from_float, expected)
    assert torch.equal(unit, pixels.float() / 255)  # the caller's tensor is left alone


# --- an empty split is refused in one line, where the data is read, never divided by -------------------------------

def test_evaluating_no_images_is_a_data_error_not_a_division_by_zero():
    from mnistlab.data import Split
    from mnistlab.models import create_model
    from mnistlab.prediction import evaluate_arrays
    from mnistlab.training import evaluate

    empty = Split(torch.zeros((0, 28, 28), dtype=torch.uint8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(DataError, match="^nothing to evaluate: the split holds no images$"):
        evaluate(create_model("mlp", hidden=8), empty)

    class Uniform:  # any Classifier: evaluate_arrays only calls `probabilities`
        def probabilities(self, images):
            return np.full((len(images), 10), 0.1, np.float32)

    with pytest.raises(DataError, match="^nothing to score: no images given$"):
        evaluate_arrays(Uniform(), np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64))
    four = evaluate_arrays(Uniform(), np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int64))
    assert four == pytest.approx((np.log(10), 1.0))


def test_evaluate_on_a_data_dir_with_an_empty_test_split_exits_1_in_one_line(tiny_run, tmp_path, capsys):
    from mnistlab.cli import main

    run, data = tiny_run
    folder = make_dataset(tmp_path / "data", n_train=8, n_test=8)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(0, np.uint8))
    assert main(["evaluate", str(run), "--data-dir", str(folder), "--device", "cpu"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert f"{folder / 't10k-images-idx3-ubyte.gz'}: holds no images; the test split is empty" in err


@pytest.mark.parametrize("as_json", [False, True])
def test_evaluate_on_a_labelled_folder_with_nothing_usable_exits_1_in_one_line(as_json, tiny_run, tmp_path, capsys):
    from mnistlab.cli import main

    run, _ = tiny_run
    (tmp_path / "mine" / "3").mkdir(parents=True)
    (tmp_path / "mine" / "3" / "a.png").write_bytes(b"not a png")
    (tmp_path / "mine" / "5").mkdir()
    (tmp_path / "mine" / "5" / "b.png").write_bytes(b"")
    argv = ["evaluate", str(run), "--images", str(tmp_path / "mine"), *(["--json"] if as_json else [])]
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert err == f"mnistlab: error: {tmp_path / 'mine'}: none of the 2 images could be classified; nothing to score\n"
    assert "not an image" in out  # each file's reason is still shown
    (tmp_path / "mine" / "3" / "a.png").unlink()
    (tmp_path / "mine" / "5" / "b.png").rename(tmp_path / "mine" / "5" / "b.txt")  # no image file left at all
    assert main(argv) == 1
    assert capsys.readouterr().err.count("\n") == 1

"""Hostile checkpoints and metrics files: every one is a one-line error with exit code 1, never a traceback.

Each case edits a copy of a tiny trained run (tests/conftest.py's `tiny_run`) and checks the exact
message through the library (`load_checkpoint`, `load_metrics`) and the commands that read the file
(`evaluate` and `predict` for a checkpoint, `report` and `plot curves` for metrics.json).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from mnistlab import CheckpointError, MetricsError
from mnistlab.checkpoints import load_checkpoint, save_checkpoint
from mnistlab.cli import main
from mnistlab.records import MAX_METRICS_BYTES, load_metrics

CONFIG, WEIGHTS, METRICS = "config.json", "model.safetensors", "metrics.json"


@pytest.fixture
def run(tiny_run, tmp_path) -> Path:
    """A fresh copy of the tiny run (hidden=16, 2 epochs) to spoil."""
    return shutil.copytree(tiny_run[0], tmp_path / "run")


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory) -> Path:
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 12:16] = 255  # a "1"
    path = tmp_path_factory.mktemp("image") / "one.png"
    Image.fromarray(pixels).save(path)
    return path


# --- editing helpers: each returns a function that spoils one file of a run folder -------------------------------


def edit_json(name: str, change, *, replace: bool = False):
    """Parse the file, let `change` edit the dict (or, with `replace`, return a new value), write it back."""
    def apply(folder: Path) -> None:
        path = folder / name
        data = json.loads(path.read_text())
        replaced = change(data)
        path.write_text(json.dumps(replaced if replace else data))
    return apply


def raw(name: str, content: bytes | str | None = None, *, fifo: bool = False, folder: bool = False,
        link: str | None = None):
    """Replace the file by these bytes, a FIFO, a folder or a symlink."""
    def apply(run: Path) -> None:
        path = run / name
        path.unlink()
        if fifo:
            os.mkfifo(path)
        elif folder:
            path.mkdir()
        elif link:
            path.symlink_to(link)
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
    return apply


def text_edit(name: str, old: str, new: str):
    """Replace text in the file as written (for what json.dumps cannot write: NaN literals, huge numbers)."""
    def apply(run: Path) -> None:
        path = run / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))
    return apply


def config(change):
    return edit_json(CONFIG, change)


def setting(section: str, key: str, value):
    return config(lambda c: c[section].update({key: value}))


def argument(value):
    return config(lambda c: c["model"]["args"].update(hidden=value))


def weights(change):
    """Load the weights, let `change` edit the dict of tensors, save them back."""
    def apply(run: Path) -> None:
        tensors = load_file(run / WEIGHTS)
        change(tensors)
        save_file(tensors, run / WEIGHTS)
    return apply


def forged_header(header: dict, data: bytes = b"", length: int | None = None):
    """A safetensors file written by hand: 8-byte length, JSON header, data."""
    def apply(run: Path) -> None:
        text = json.dumps(header).encode()
        (run / WEIGHTS).write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return apply


def metric_row(i: int, key: str, value):
    return edit_json(METRICS, lambda m: m["epochs"][i].update({key: value}))


def metrics_field(key: str, value):
    return edit_json(METRICS, lambda m: m.update({key: value}))


def nest(depth: int) -> str:
    return "[" * depth + "]" * depth


STD = "must be a finite number ≥ 0.001"
MEAN = "must be a finite number from 0 to 1"
HIDDEN = "must be a whole number from 1 to 16,384"
ACC = "must be a finite number from 0 to 1"
LOSS = "must be a finite number ≥ 0, or null"
LINE = "must be one line of text of at most 100 characters"
CLASSES = "must be a non-empty list of 10 class names"
CLASS = "must be one line of text of at most 40 characters"

# (spoiler, file the message names, message after "<file>: ")
CONFIG_CASES = {
    "std-zero": (setting("normalization", "std", 0), CONFIG, f"field 'normalization.std' {STD}, got 0"),
    "std-negative": (setting("normalization", "std", -0.3), CONFIG, f"field 'normalization.std' {STD}, got -0.3"),
    "std-denormal": (setting("normalization", "std", 1e-320), CONFIG, f"field 'normalization.std' {STD}, got 1e-320"),
    "std-text": (setting("normalization", "std", "0.3"), CONFIG, f"field 'normalization.std' {STD}, got '0.3'"),
    "std-null": (setting("normalization", "std", None), CONFIG, f"field 'normalization.std' {STD}, got None"),
    "std-bool": (setting("normalization", "std", True), CONFIG, f"field 'normalization.std' {STD}, got True"),
    "std-list": (setting("normalization", "std", [0.3]), CONFIG, f"field 'normalization.std' {STD}, got [0.3]"),
    "std-missing": (config(lambda c: c["normalization"].pop("std")), CONFIG,
                    f"field 'normalization.std' is missing (it {STD})"),
    "std-nan-literal": (text_edit(CONFIG, '"std": 0.3081', '"std": NaN'), CONFIG,
                        "not valid JSON (NaN is not a JSON number)"),
    "std-infinity-literal": (text_edit(CONFIG, '"std": 0.3081', '"std": Infinity'), CONFIG,
                             "not valid JSON (Infinity is not a JSON number)"),
    "std-overflow": (text_edit(CONFIG, '"std": 0.3081', '"std": 1e999'), CONFIG,
                     "not valid JSON (number 1e999 overflows a float)"),
    "mean-huge": (setting("normalization", "mean", 1e308), CONFIG, f"field 'normalization.mean' {MEAN}, got 1e+308"),
    "mean-negative-infinity": (text_edit(CONFIG, '"mean": 0.1307', '"mean": -Infinity'), CONFIG,
                               "not valid JSON (-Infinity is not a JSON number)"),
    "mean-object": (setting("normalization", "mean", {"a": 1}), CONFIG,
                    f"field 'normalization.mean' {MEAN}, got {{'a': 1}}"),
    "normalization-text": (config(lambda c: c.update(normalization="imagenet")), CONFIG,
                           "field 'normalization' must be an object, got 'imagenet'"),
    "normalization-missing": (config(lambda c: c.pop("normalization")), CONFIG,
                              "field 'normalization' is missing (it must be an object)"),
    "model-unknown": (setting("model", "name", "resnet"), CONFIG,
                      "field 'model.name': unknown model 'resnet'; choose from: cnn, cnn_small, mlp"),
    "model-name-number": (setting("model", "name", 5), CONFIG,
                          f"field 'model.name' {LINE}, got 5"),
    "model-name-huge": (setting("model", "name", "m" * 100_000), CONFIG,
                        f"field 'model.name' {LINE}, "
                        "got 'mmmmmmmmmmmmmmmmm...mmmmmmmmmmmmmmmmmm'"),
    "model-name-newline": (setting("model", "name", "mlp\nfake row"), CONFIG,
                           f"field 'model.name' {LINE}, got 'mlp\\nfake row'"),
    "model-name-surrogate": (setting("model", "name", "\ud800"), CONFIG,
                             f"field 'model.name' {LINE}, got '\\ud800'"),
    "model-missing": (config(lambda c: c.pop("model")), CONFIG, "field 'model' is missing (it must be an object)"),
    "model-list": (config(lambda c: c.update(model=["mlp"])), CONFIG, "field 'model' must be an object, got ['mlp']"),
    "hidden-million": (argument(1_000_000), CONFIG, f"field 'model.args.hidden' {HIDDEN}, got 1000000"),
    "hidden-zero": (argument(0), CONFIG, f"field 'model.args.hidden' {HIDDEN}, got 0"),
    "hidden-negative": (argument(-16), CONFIG, f"field 'model.args.hidden' {HIDDEN}, got -16"),
    "hidden-float": (argument(16.0), CONFIG, f"field 'model.args.hidden' {HIDDEN}, got 16.0"),
    "hidden-text": (argument("16"), CONFIG, f"field 'model.args.hidden' {HIDDEN}, got '16'"),
    "hidden-bool": (argument(True), CONFIG, f"field 'model.args.hidden' {HIDDEN}, got True"),
    "hidden-null": (argument(None), CONFIG, f"field 'model.args.hidden' {HIDDEN}, got None"),
    "hidden-nested": (argument([[16]]), CONFIG, f"field 'model.args.hidden' {HIDDEN}, got [[16]]"),
    "hidden-100-digits": (text_edit(CONFIG, '"hidden": 16', '"hidden": ' + "9" * 100), CONFIG,
                          "not valid JSON (integer 99999999999999999...999999999999999999 has over 19 digits)"),
    "args-unknown": (config(lambda c: c["model"]["args"].update(width=3)), CONFIG,
                     "field 'model.args.width' is unknown (known: hidden)"),
    "args-list": (setting("model", "args", [16]), CONFIG,
                  "field 'model.args' must be an object of at most 1000 fields, got [16]"),
    "args-deep": (setting("model", "args", {"hidden": [[[16]]]}), CONFIG,
                  "field 'model.args.hidden' must be a JSON value nested at most 2 deep, got [[[...]]]"),
    "format-version-99": (config(lambda c: c.update(format_version=99)), CONFIG,
                          "checkpoint format version 99 is not supported (expected 1); upgrade mnistlab"),
    "format-version-text": (config(lambda c: c.update(format_version="1")), CONFIG,
                            "field 'format_version' must be 1, got '1'"),
    "format-version-true": (config(lambda c: c.update(format_version=True)), CONFIG,
                            "field 'format_version' must be 1, got True"),
    "format-missing": (config(lambda c: c.pop("format")), CONFIG,
                       'not an mnistlab checkpoint config (no "format": "mnistlab.checkpoint")'),
    "top-level-list": (edit_json(CONFIG, lambda c: [c], replace=True), CONFIG,
                       'not an mnistlab checkpoint config (no "format": "mnistlab.checkpoint")'),
    "top-level-null": (raw(CONFIG, "null"), CONFIG,
                       'not an mnistlab checkpoint config (no "format": "mnistlab.checkpoint")'),
    "metrics-acc-over-1": (setting("metrics", "test_acc", 1.5), CONFIG, f"field 'metrics.test_acc' {ACC}, got 1.5"),
    "metrics-acc-text": (setting("metrics", "test_acc", "97%"), CONFIG, f"field 'metrics.test_acc' {ACC}, got '97%'"),
    "metrics-loss-negative": (setting("metrics", "test_loss", -1), CONFIG,
                              f"field 'metrics.test_loss' {LOSS}, got -1"),
    "metrics-number": (config(lambda c: c.update(metrics=5)), CONFIG, "field 'metrics' must be an object, got 5"),
    "dataset-text": (config(lambda c: c.update(dataset="mnist")), CONFIG,
                     "field 'dataset' must be an object, got 'mnist'"),
    "dataset-sha256-list": (setting("dataset", "sha256", ["abc"]), CONFIG,
                            "field 'dataset.sha256' must be an object of at most 16 fields, got ['abc']"),
    "dataset-sha256-short": (config(lambda c: c["dataset"]["sha256"].update({"t10k-labels-idx1-ubyte": "abc"})),
                             CONFIG, "field 'dataset.sha256['t10k-labels-idx1-ubyte']' must be 64 lowercase hex "
                             "digits, got 'abc'"),
    "dataset-size-negative": (setting("dataset", "test_size", -1), CONFIG,
                              "field 'dataset.test_size' must be a whole number from 0 to 1,000,000,000, got -1"),
    "classes-nine": (setting("dataset", "classes", list("012345678")), CONFIG,
                     f"field 'dataset.classes' {CLASSES}, got ['0', '1', '2', '3', '4', '5', ...]"),
    "classes-eleven": (setting("dataset", "classes", [str(i) for i in range(11)]), CONFIG,
                       f"field 'dataset.classes' {CLASSES}, got ['0', '1', '2', '3', '4', '5', ...]"),
    "classes-text": (setting("dataset", "classes", "0123456789"), CONFIG,
                     f"field 'dataset.classes' {CLASSES}, got '0123456789'"),
    "classes-null": (setting("dataset", "classes", None), CONFIG, f"field 'dataset.classes' {CLASSES}, got None"),
    "class-newline": (setting("dataset", "classes", ["T-shirt\nfake row", *"123456789"]), CONFIG,
                      f"field 'dataset.classes[0]' {CLASS}, got 'T-shirt\\nfake row'"),
    "class-escape": (setting("dataset", "classes", [*"012345678", "\x1b[31mred"]), CONFIG,
                     f"field 'dataset.classes[9]' {CLASS}, got '\\x1b[31mred'"),
    "class-too-long": (setting("dataset", "classes", ["x" * 41, *"123456789"]), CONFIG,
                       f"field 'dataset.classes[0]' {CLASS}, got 'xxxxxxxxxxxxxxxxx...xxxxxxxxxxxxxxxxxx'"),
    "class-number": (setting("dataset", "classes", [0, *"123456789"]), CONFIG,
                     f"field 'dataset.classes[0]' {CLASS}, got 0"),
    "canonical-text": (setting("dataset", "canonical", "yes"), CONFIG,
                       "field 'dataset.canonical' must be true or false, got 'yes'"),
    "version-object": (config(lambda c: c.update(mnistlab_version={"major": 0})), CONFIG,
                       f"field 'mnistlab_version' {LINE}, got {{'major': 0}}"),
    "train-config-list": (config(lambda c: c.update(train_config=[1, 2])), CONFIG,
                          "field 'train_config' must be an object of at most 1000 fields, got [1, 2]"),
    "nested-100k-deep": (raw(CONFIG, nest(100_000)), CONFIG, "not valid JSON (nested too deeply)"),
    "huge-file": (raw(CONFIG, " " * (2 << 20) + "{}"), CONFIG, "too large (2,097,154 bytes; at most 1,048,576)"),
    "not-utf8": (raw(CONFIG, b"\xff\xfe{}"), CONFIG, "not valid JSON (not UTF-8: invalid start byte at byte 0)"),
    "empty-file": (raw(CONFIG, b""), CONFIG, "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    "truncated-json": (raw(CONFIG, '{"format": "mnistlab.checkpoint", "model": {'), CONFIG,
                       "not valid JSON (Expecting property name enclosed in double quotes: "
                       "line 1 column 45 (char 44))"),
    "fifo": (raw(CONFIG, fifo=True), CONFIG, "not a regular file (a FIFO)"),
    "folder": (raw(CONFIG, folder=True), CONFIG, "not a regular file (a folder)"),
    "device-file": (raw(CONFIG, link="/dev/zero"), CONFIG, "not a regular file (a device or socket)"),
}

FIT = "weights do not match the config"
WEIGHT_CASES = {
    "config-hidden-32": (argument(32), WEIGHTS, f"{FIT}: fc1.bias is (16,), config needs (32,); fc1.weight is "
                         "(16, 784), config needs (32, 784); fc2.weight is (10, 16), config needs (10, 32)"),
    "config-hidden-max": (argument(16_384), WEIGHTS, f"{FIT}: fc1.bias is (16,), config needs (16384,); fc1.weight "
                          "is (16, 784), config needs (16384, 784); fc2.weight is (10, 16), config needs (10, 16384)"),
    "nan-weight": (weights(lambda w: w["fc1.weight"].__setitem__((0, 0), math.nan)), WEIGHTS,
                   "tensor fc1.weight holds non-finite values (NaN or infinity)"),
    "inf-bias": (weights(lambda w: w["fc2.bias"].__setitem__(3, -math.inf)), WEIGHTS,
                 "tensor fc2.bias holds non-finite values (NaN or infinity)"),
    "f64-overflows-f32": (weights(lambda w: w.update({"fc2.bias": torch.full((10,), 1e300, dtype=torch.float64)})),
                          WEIGHTS, "tensor fc2.bias holds non-finite values (NaN or infinity) once converted to "
                          "torch.float32"),
    "int-weights": (weights(lambda w: w.update({"fc1.weight": w["fc1.weight"].to(torch.int64)})), WEIGHTS,
                    f"{FIT}: fc1.weight is I64, config needs a float dtype (F16, BF16, F32 or F64)"),
    "bool-bias": (weights(lambda w: w.update({"fc1.bias": w["fc1.bias"] > 0})), WEIGHTS,
                  f"{FIT}: fc1.bias is BOOL, config needs a float dtype (F16, BF16, F32 or F64)"),
    "extra-tensor": (weights(lambda w: w.update({"evil": torch.zeros(3)})), WEIGHTS, f"{FIT}: unexpected evil"),
    "escape-sequence-name": (weights(lambda w: w.update({"\x1b[2J\nfake": torch.zeros(1)})), WEIGHTS,
                             f"{FIT}: unexpected \\x1b[2J fake"),
    "missing-tensor": (weights(lambda w: w.pop("fc2.bias")), WEIGHTS, f"{FIT}: missing fc2.bias"),
    "transposed": (weights(lambda w: w.update({"fc2.weight": w["fc2.weight"].T.contiguous()})), WEIGHTS,
                   f"{FIT}: fc2.weight is (16, 10), config needs (10, 16)"),
    "many-extra-tensors": (weights(lambda w: w.update({f"t{i:02}": torch.zeros(1) for i in range(40)})), WEIGHTS,
                           f"{FIT}: unexpected t00; unexpected t01; unexpected t02; unexpected t03; unexpected t04; "
                           "and 35 more"),
    "huge-claimed-shape": (forged_header({"fc1.weight": {"dtype": "F32", "shape": [1_000_000, 784],
                                                         "data_offsets": [0, 16]}}, b"\0" * 16), WEIGHTS,
                           "unreadable or truncated safetensors file (Error while deserializing header: invalid "
                           "shape, data type, or offset for tensor)"),
    "header-length-2-40": (forged_header({}, length=1 << 40), WEIGHTS,
                           "safetensors header claims 1,099,511,627,776 bytes (at most 1,048,576)"),
    "header-not-json": (raw(WEIGHTS, struct.pack("<Q", 5) + b"{{{{{"), WEIGHTS,
                        "unreadable or truncated safetensors file (Error while deserializing header: invalid JSON in "
                        "header: key must be a string at line 1 column 2)"),
    "overlapping-offsets": (forged_header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12),
                            WEIGHTS, "unreadable or truncated safetensors file (Error while deserializing header: "
                            "invalid offset for tensor `b`)"),
    "negative-shape": (forged_header({"fc2.bias": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8),
                       WEIGHTS, "unreadable or truncated safetensors file (Error while deserializing header: invalid "
                       "JSON in header: invalid value: integer `-2`, expected usize at line 1 column 69)"),
    "unknown-dtype": (forged_header({"fc2.bias": {"dtype": "F4", "shape": [10], "data_offsets": [0, 5]}}, b"\0" * 5),
                      WEIGHTS, f"{FIT}: missing fc1.bias; missing fc1.weight; missing fc2.weight; fc2.bias is F4, "
                      "config needs a float dtype (F16, BF16, F32 or F64)"),
    "truncated": (lambda run: (run / WEIGHTS).write_bytes((run / WEIGHTS).read_bytes()[:1000]), WEIGHTS,
                  "unreadable or truncated safetensors file (Error while deserializing header: incomplete metadata, "
                  "file not fully covered)"),
    "zero-bytes": (raw(WEIGHTS, b""), WEIGHTS,
                   "unreadable or truncated safetensors file (Error while deserializing header: header too small)"),
    "pickle": (raw(WEIGHTS, b"\x80\x04\x95pickle"), WEIGHTS,
               "safetensors header claims 7,812,447,283,115,787,392 bytes (at most 1,048,576)"),
    "weights-fifo": (raw(WEIGHTS, fifo=True), WEIGHTS, "not a regular file (a FIFO)"),
    "weights-folder": (raw(WEIGHTS, folder=True), WEIGHTS, "not a regular file (a folder)"),
}


def assert_cli_error(argv: list[str], expected: str, capsys) -> None:
    """The command exits 1 and prints exactly `mnistlab: error: <expected>`, one line, no traceback."""
    capsys.readouterr()
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert err == f"mnistlab: error: {expected}\n"
    assert "Traceback" not in out + err


@pytest.mark.parametrize("spoil, name, message", CONFIG_CASES.values(), ids=CONFIG_CASES.keys())
@pytest.mark.slow
def test_hostile_config(spoil, name, message, run, digit_png, tiny_run, capsys, no_hang):
    spoil(run)
    expected = f"{run / name}: {message}"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run)
    assert str(info.value) == expected
    assert_cli_error(["evaluate", str(run), "--data-dir", str(tiny_run[1]), "--device", "cpu"], expected, capsys)
    assert_cli_error(["predict", str(run), str(digit_png), "--device", "cpu"], expected, capsys)


@pytest.mark.parametrize("spoil, name, message", WEIGHT_CASES.values(), ids=WEIGHT_CASES.keys())
def test_hostile_weights(spoil, name, message, run, digit_png, tiny_run, capsys, no_hang):
    spoil(run)
    expected = f"{run / name}: {message}"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run / CONFIG)
    assert str(info.value) == expected
    assert_cli_error(["evaluate", str(run), "--data-dir", str(tiny_run[1]), "--device", "cpu"], expected, capsys)
    assert_cli_error(["predict", str(run), str(digit_png), "--device", "cpu"], expected, capsys)


def test_a_huge_model_in_the_config_is_built_on_the_meta_device_only(run, monkeypatch):
    """hidden=16,384 passes the bounds, but its 51 MB of weights are never allocated: the shapes are compared first."""
    import mnistlab.checkpoints as checkpoints
    from mnistlab.models import create_model

    devices = []

    def spy(name, **args):
        model = create_model(name, **args)
        devices.append({p.device.type for p in model.parameters()})
        return model

    monkeypatch.setattr(checkpoints, "create_model", spy)
    argument(16_384)(run)
    with pytest.raises(CheckpointError, match="weights do not match the config"):
        load_checkpoint(run)
    assert devices == [{"meta"}]
    argument(16)(run)
    load_checkpoint(run)
    assert devices == [{"meta"}, {"meta"}, {"cpu"}]


# --- what is accepted, and how --------------------------------------------------------------------------------------


def test_float_weights_of_another_width_are_converted(run):
    reference = load_checkpoint(run).model
    weights(lambda w: w.update({k: v.to(torch.float64) for k, v in w.items()}))(run)
    x = torch.randn(4, 1, 28, 28)
    model = load_checkpoint(run).model
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)  # float32 → float64 → float32 is exact
    weights(lambda w: w.update({k: v.to(torch.bfloat16) for k, v in w.items()}))(run)
    torch.testing.assert_close(load_checkpoint(run).model(x), reference(x), rtol=0.05, atol=0.05)


def test_a_config_with_a_bom_and_unknown_fields_loads_and_drops_them(run):
    config(lambda c: c.update(comment="from the future", dataset={**c["dataset"], "extra": [1]}))(run)
    path = run / CONFIG
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    checkpoint = load_checkpoint(run)
    assert "comment" not in checkpoint.config and "extra" not in checkpoint.config["dataset"]
    assert checkpoint.std == 0.3081 and checkpoint.config["model"]["args"] == {"hidden": 16}


def test_strict_json_is_what_mnistlab_writes(tmp_path):
    """A diverged run's NaN or infinite loss is written as null, so every file mnistlab writes is strict JSON."""
    model = torch.nn.Linear(1, 1)
    save_checkpoint(tmp_path, model, "mlp", {}, mean=0.1, std=0.3, dataset={}, train_config={},
                    metrics={"train_loss": math.nan, "test_loss": math.inf, "test_acc": 0.1})
    text = (tmp_path / CONFIG).read_text()
    assert json.loads(text, parse_constant=pytest.fail)["metrics"] == {"train_loss": None, "test_loss": None,
                                                                        "test_acc": 0.1}


# --- metrics.json ----------------------------------------------------------------------------------------------------

ROWS = "must be a non-empty list of per-epoch rows"
METRICS_CASES = {
    "epochs-missing": (edit_json(METRICS, lambda m: m.pop("epochs")), f"field 'epochs' is missing (it {ROWS})"),
    "epochs-empty": (metrics_field("epochs", []), f"field 'epochs' {ROWS}, got []"),
    "epochs-object": (metrics_field("epochs", {"1": {}}), f"field 'epochs' {ROWS}, got {{'1': {{}}}}"),
    "epochs-text": (metrics_field("epochs", "1,2"), f"field 'epochs' {ROWS}, got '1,2'"),
    "row-number": (edit_json(METRICS, lambda m: m["epochs"].append(7)), "field 'epochs[2]' must be an object, got 7"),
    "row-null": (edit_json(METRICS, lambda m: m["epochs"].insert(0, None)),
                 "field 'epochs[0]' must be an object, got None"),
    "acc-missing": (edit_json(METRICS, lambda m: m["epochs"][1].pop("test_acc")),
                    f"field 'epochs[1].test_acc' is missing (it {ACC})"),
    "acc-2": (metric_row(0, "test_acc", 2), f"field 'epochs[0].test_acc' {ACC}, got 2"),
    "acc-negative": (metric_row(1, "train_acc", -0.1), f"field 'epochs[1].train_acc' {ACC}, got -0.1"),
    "acc-null": (metric_row(0, "test_acc", None), f"field 'epochs[0].test_acc' {ACC}, got None"),
    "acc-percent-text": (metric_row(0, "test_acc", "97%"), f"field 'epochs[0].test_acc' {ACC}, got '97%'"),
    "loss-negative": (metric_row(0, "train_loss", -1.0), f"field 'epochs[0].train_loss' {LOSS}, got -1.0"),
    "loss-text-nan": (metric_row(0, "train_loss", "nan"), f"field 'epochs[0].train_loss' {LOSS}, got 'nan'"),
    "loss-bool": (metric_row(1, "test_loss", False), f"field 'epochs[1].test_loss' {LOSS}, got False"),
    "loss-nan-literal": (text_edit(METRICS, '"train_loss": ', '"train_loss": NaN, "x": '),
                         "not valid JSON (NaN is not a JSON number)"),
    "loss-overflow": (text_edit(METRICS, '"test_loss": ', '"test_loss": -1e400, "x": '),
                      "not valid JSON (number -1e400 overflows a float)"),
    "epoch-zero": (metric_row(0, "epoch", 0), "field 'epochs[0].epoch' must be a finite number > 0 and ≤ 1,000,000, "
                   "got 0"),
    "epoch-negative": (metric_row(1, "epoch", -1.5), "field 'epochs[1].epoch' must be a finite number > 0 and ≤ "
                       "1,000,000, got -1.5"),
    "epoch-repeated": (metric_row(1, "epoch", 1), "field 'epochs[1].epoch' must be greater than the row before's "
                       "(1), got 1"),
    "seconds-text": (metric_row(0, "seconds", "fast"), "field 'epochs[0].seconds' must be a finite number ≥ 0, "
                     "got 'fast'"),
    "wall-seconds-text": (metrics_field("wall_seconds", "4s"), "field 'wall_seconds' must be a finite number ≥ 0, "
                          "got '4s'"),
    "wall-seconds-negative": (metrics_field("wall_seconds", -4), "field 'wall_seconds' must be a finite number ≥ 0, "
                              "got -4"),
    "device-list": (metrics_field("device", ["cuda"]), f"field 'device' {LINE}, "
                    "got ['cuda']"),
    "device-html": (metrics_field("device", "cpu\r\n<script>"), f"field 'device' {LINE}"
                    ", got 'cpu\\r\\n<script>'"),
    "config-list": (metrics_field("config", ["lr", 1]), "field 'config' must be an object of at most 100 fields, "
                    "got ['lr', 1]"),
    "config-surrogate": (edit_json(METRICS, lambda m: m["config"].update(data_dir="data\udc80")),
                         "field 'config.data_dir' must be text of at most 4096 characters, got 'data\\udc80'"),
    "config-deep": (edit_json(METRICS, lambda m: m["config"].update(model_args={"a": {"b": [1]}})),
                    "field 'config.model_args' must be a JSON value nested at most 2 deep, got {'a': {'b': [...]}}"),
    "dataset-list": (metrics_field("dataset", []), "field 'dataset' must be an object, got []"),
    "sha256-text": (edit_json(METRICS, lambda m: m["dataset"].update(sha256="abc")),
                    "field 'dataset.sha256' must be an object of at most 16 fields, got 'abc'"),
    "version-number": (metrics_field("torch_version", 2.13), f"field 'torch_version' {LINE}"
                       ", got 2.13"),
    "top-level-list": (raw(METRICS, "[]"), "must be an object, got []"),
    "top-level-text": (raw(METRICS, '"epochs"'), "must be an object, got 'epochs'"),
    "top-level-null": (raw(METRICS, "null"), "must be an object, got None"),
    "nested-100k-deep": (raw(METRICS, '{"epochs": ' + nest(100_000) + "}"), "not valid JSON (nested too deeply)"),
    "nested-500-deep": (raw(METRICS, '{"epochs": ' + nest(500) + "}"),
                        "field 'epochs[0]' must be an object, got [[[...]]]"),
    # metrics.json's cap is derived from the longest run the bounds allow (records.MAX_METRICS_BYTES)
    "huge-file": (raw(METRICS, "[" + "0," * (MAX_METRICS_BYTES // 2) + "0]"),
                  f"too large ({MAX_METRICS_BYTES // 2 * 2 + 3:,} bytes; at most {MAX_METRICS_BYTES:,})"),
    "not-utf8": (raw(METRICS, b'{"epochs": "\xc3\x28"}'),
                 "not valid JSON (not UTF-8: invalid continuation byte at byte 12)"),
    "empty-file": (raw(METRICS, b""), "not valid JSON (Expecting value: line 1 column 1 (char 0))"),
    "fifo": (raw(METRICS, fifo=True), "not a regular file (a FIFO)"),
    "folder": (raw(METRICS, folder=True), "not a regular file (a folder)"),
    "device-file": (raw(METRICS, link="/dev/urandom"), "not a regular file (a device or socket)"),
}


@pytest.mark.parametrize("spoil, message", METRICS_CASES.values(), ids=METRICS_CASES.keys())
@pytest.mark.slow
def test_hostile_metrics(spoil, message, run, tiny_run, capsys, no_hang):
    spoil(run)
    expected = f"{run / METRICS}: {message}"
    with pytest.raises(MetricsError) as info:
        load_metrics(run)
    assert str(info.value) == expected
    assert_cli_error(["plot", "curves", str(run), "--out", str(run / "c.png")], expected, capsys)
    assert_cli_error(["report", str(run), "--data-dir", str(tiny_run[1]), "--device", "cpu"], expected, capsys)
    assert not (run / "c.png").exists()


@pytest.mark.slow
def test_a_diverged_runs_null_loss_is_drawn_as_a_gap(run, tiny_run, capsys):
    """Strict JSON has no NaN: mnistlab writes a diverged loss as null and reads it back as NaN."""
    edit_json(METRICS, lambda m: m["epochs"][1].update(train_loss=None, test_loss=None))(run)
    rows = load_metrics(run)["epochs"]
    assert math.isnan(rows[1]["train_loss"]) and math.isnan(rows[1]["test_loss"]) and rows[0]["train_loss"] > 0
    assert main(["plot", "curves", str(run), "--out", str(run / "c.png")]) == 0
    assert main(["report", str(run), "--data-dir", str(tiny_run[1]), "--device", "cpu"]) == 0
    assert "<td>nan</td>" in (run / "report.html").read_text(encoding="utf-8")


@pytest.mark.slow
def test_free_form_settings_may_hold_any_character_but_a_lone_surrogate(run, tiny_run):
    odd = "my data\n\x1b[31m"
    edit_json(METRICS, lambda m: m["config"].update(data_dir=odd))(run)
    config(lambda c: c["dataset"].update(source=odd))(run)
    assert load_metrics(run)["config"]["data_dir"] == odd
    assert load_checkpoint(run).config["dataset"]["source"] == odd
    assert main(["report", str(run), "--data-dir", str(tiny_run[1]), "--device", "cpu"]) == 0


def test_metrics_keeps_only_the_fields_it_checked(run):
    edit_json(METRICS, lambda m: m.update(evil={"a": [[[[1]]]]}) or m["epochs"][0].update(note="x"))(run)
    metrics = load_metrics(run / METRICS)
    assert "evil" not in metrics and "note" not in metrics["epochs"][0]
    assert set(metrics) == {"epochs", "config", "dataset", "device", "wall_seconds", "train_seconds", "eval_seconds",
                            "time_to_target", "calibration", "mnistlab_version", "torch_version"}


# --- model plugins ---------------------------------------------------------------------------------------------------

PLUGIN_MODULE = '''
from typing import Annotated

from torch import nn

from mnistlab.models import Range


def linear_probe(scale: Annotated[float, Range(0.5, 2.0)] = 1.0) -> nn.Module:
    """A plugin model: one linear layer."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """An installed plugin package, as pip leaves one: a module and a dist-info with entry_points.txt."""
    import mnistlab.models as models

    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))  # what plugins register stays in this test
    site = tmp_path / "site"
    (site / "fake_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "fake_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\n"
                                                                   "Version: 1.0\n")
    (site / "fake_plugin-1.0.dist-info" / "entry_points.txt").write_text(
        "[mnistlab.models]\nlinear_probe = fake_plugin_models:linear_probe\n"
        "broken = fake_plugin_broken:model\nnot_callable = fake_plugin_models:__doc__\n")
    (site / "fake_plugin_models.py").write_text(PLUGIN_MODULE)
    (site / "fake_plugin_broken.py").write_text("raise ImportError('needs torchvision\\n(not installed)')\n")
    monkeypatch.syspath_prepend(str(site))
    for module in ("fake_plugin_models", "fake_plugin_broken"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    return site


def test_plugin_models_are_listed_without_being_imported(plugin):
    from mnistlab.models import list_models

    assert list_models() == ["broken", "cnn", "cnn_small", "linear_probe", "mlp", "not_callable"]
    assert "fake_plugin_models" not in sys.modules and "fake_plugin_broken" not in sys.modules


@pytest.mark.slow
def test_a_plugin_model_trains_saves_and_loads_from_the_cli(plugin, tiny_run, tmp_path, capsys):
    from mnistlab.training import TrainConfig, train_run

    run = train_run(TrainConfig(model="linear_probe", model_args={"scale": 1.5}, epochs=1, device="cpu",
                            data_dir=str(tiny_run[1]), out=str(tmp_path / "run"), progress=False)).dir
    assert main(["evaluate", str(run), "--data-dir", str(tiny_run[1]), "--device", "cpu"]) == 0
    assert "linear_probe (7,850 parameters) on cpu" in capsys.readouterr().out
    config(lambda c: c["model"]["args"].update(scale=3))(run)
    assert_cli_error(["evaluate", str(run)], f"{run / CONFIG}: field 'model.args.scale' "
                     "must be a finite number from 0.5 to 2, got 3", capsys)


@pytest.mark.parametrize("name, message", [
    ("broken", "field 'model.name': model 'broken': plugin fake_plugin_broken:model (package fake-plugin) failed to "
               "load: ImportError: needs torchvision (not installed)"),
    ("not_callable", "field 'model.name': model 'not_callable': plugin fake_plugin_models:__doc__ (package "
                     "fake-plugin) is not a function or class"),
    ("uninstalled", "field 'model.name': unknown model 'uninstalled'; choose from: broken, cnn, cnn_small, "
                    "linear_probe, mlp, not_callable"),
], ids=["import-fails", "not-callable", "not-installed"])
def test_a_plugin_that_fails_is_a_one_line_error(name, message, plugin, run, digit_png, capsys):
    setting("model", "name", name)(run)
    expected = f"{run / CONFIG}: {message}"
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(run)
    assert str(info.value) == expected
    assert_cli_error(["predict", str(run), str(digit_png)], expected, capsys)

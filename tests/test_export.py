"""`mnistlab export`, and `predict`/`serve` with an exported ONNX file: same answers as the checkpoint,
without torch on the ONNX path, and hostile ONNX files refused in one line.

The reference is the checkpoint itself (`Checkpoint.probabilities`), on 1,000 real MNIST test digits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import mnistlab
import mnistlab.onnx_model as onnx_model
from mnistlab import OnnxModelError, load_onnx, predict
from mnistlab.cli import main
from mnistlab.data import load_mnist
from mnistlab.export import ExportConfig, export
from mnistlab.records import METADATA_KEY

from .conftest import serving

# The issue asks for TorchScript, which torch 2.13 deprecates (in favour of torch.export) on every load.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "examples" / "digits"
N_TEST = 1000


@pytest.fixture(scope="module")
def checkpoint(mnist_mlp) -> mnistlab.Checkpoint:
    return mnistlab.load_checkpoint(mnist_mlp)


@pytest.fixture(scope="module")
def exported(mnist_mlp, tmp_path_factory) -> dict[str, Path]:
    """The MNIST MLP exported three ways: ONNX for uint8 input (the default), ONNX for float input, TorchScript."""
    folder = tmp_path_factory.mktemp("exported")
    return {"uint8": export(mnist_mlp, ExportConfig(out=str(folder / "uint8.onnx"))),
            "float": export(mnist_mlp, ExportConfig(input="float", out=str(folder / "float.onnx"))),
            "torchscript": export(mnist_mlp, ExportConfig(format="torchscript", out=str(folder / "model.pt")))}


@pytest.fixture(scope="module")
def test_digits(checkpoint) -> tuple[np.ndarray, np.ndarray]:
    """1,000 MNIST test digits as uint8 (N, 28, 28), and the checkpoint's probabilities for them."""
    pixels = load_mnist().test.images[:N_TEST].numpy()
    return pixels, checkpoint.probabilities(pixels.astype(np.float32) / 255)


def as_input(pixels: np.ndarray, kind: str) -> np.ndarray:
    return pixels if kind == "uint8" else pixels.astype(np.float32) / 255


# --- the same answers as the checkpoint -----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["uint8", "float"])
@pytest.mark.parametrize("batch", [1, N_TEST], ids=["one-at-a-time", "one-batch"])
@pytest.mark.slow
def test_onnx_gives_the_checkpoint_s_probabilities(exported, test_digits, kind, batch):
    pixels, expected = test_digits
    session = onnxruntime.InferenceSession(str(exported[kind]), providers=["CPUExecutionProvider"])
    x = as_input(pixels, kind)
    got = np.concatenate([session.run(["probabilities"], {"pixels": x[i:i + batch]})[0]
                          for i in range(0, N_TEST, batch)])
    assert got.shape == (N_TEST, 10) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    assert (got.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize("kind", ["uint8", "float"])
@pytest.mark.parametrize("batch", [1, N_TEST], ids=["one-at-a-time", "one-batch"])
@pytest.mark.slow
def test_torchscript_gives_the_checkpoint_s_probabilities_for_either_dtype(exported, test_digits, kind, batch):
    pixels, expected = test_digits
    module = torch.jit.load(str(exported["torchscript"]))
    x = torch.from_numpy(as_input(pixels, kind))
    with torch.inference_mode():
        got = torch.cat([module(x[i:i + batch]) for i in range(0, N_TEST, batch)]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_the_metadata_says_what_the_file_takes_and_returns(exported, checkpoint):
    model = onnx.load(str(exported["uint8"]))
    props = {p.key: p.value for p in model.metadata_props}
    record = json.loads(props[METADATA_KEY])
    assert record["classes"] == list(checkpoint.classes) == json.loads(props["classes"])
    assert record["input"]["dtype"] == "uint8" and record["input"]["shape"] == ["N", 28, 28]
    assert "white ink on black" in record["input"]["convention"] and "0-255" in record["input"]["scale"]
    assert record["input"]["layout"] == "digit"  # MNIST's: 20×20 box, centred by mass
    assert record["normalization"]["mean"] == checkpoint.mean and record["normalization"]["std"] == checkpoint.std
    assert record["mnistlab_version"] == mnistlab.__version__ == props["mnistlab_version"]
    assert record["dataset"]["name"] == props["dataset"] == "mnist" and props["model"] == "mlp"
    assert "uint8" in props["input"] and "float32 (N, 10)" in props["output"]
    float_record = json.loads({p.key: p.value for p in onnx.load(str(exported["float"])).metadata_props}[METADATA_KEY])
    assert float_record["input"]["dtype"] == "float32" and "0-1" in float_record["input"]["scale"]
    # The batch dimension is free, named; the rest is fixed.
    [pixels] = model.graph.input
    dims = pixels.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [28, 28]
    files = {"mnistlab.json": ""}
    torch.jit.load(str(exported["torchscript"]), _extra_files=files)
    script_record = json.loads(files["mnistlab.json"])
    assert script_record["classes"] == record["classes"] and script_record["input"]["dtype"] == "uint8 or float32"


@pytest.mark.slow
def test_export_writes_into_the_run_folder_by_default(mnist_mlp, tmp_path, capsys):
    import shutil

    run = shutil.copytree(mnist_mlp, tmp_path / "run")
    assert main(["export", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'model.onnx'}"
    assert main(["export", str(run), "--format", "torchscript"]) == 0
    assert (run / "model.pt").is_file() and load_onnx(run / "model.onnx").classes == tuple("0123456789")
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left behind


@pytest.mark.parametrize("argv, message", [
    (["export", "{tmp}/no-such-run"], "no such checkpoint"),
    (["export", "{run}", "--out", "{tmp}"], "is a folder; give a file name"),
    (["export", "{run}", "--out", "{tmp}/file.txt/model.onnx"], "not a folder"),
    (["export", "{run}", "--out", "{run}/model.safetensors"], "is the checkpoint's own file"),
    (["export", "{run}", "--format", "torchscript", "--out", "{run}/config.json"], "is the checkpoint's own file"),
], ids=["missing-run", "out-is-a-folder", "out-under-a-file", "out-is-the-weights", "out-is-the-config"])
@pytest.mark.slow
def test_export_refuses_bad_paths_in_one_line(argv, message, mnist_mlp, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    code = main([a.format(tmp=tmp_path, run=mnist_mlp) for a in argv])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and err.startswith("mnistlab: error: ") and message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["export"], ["export", "r", "--format", "pickle"], ["export", "r", "--input", "int"],
                                  ["export", "r", "--out", ""]], ids=["no-run", "format", "input", "empty-out"])
def test_export_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2


# --- predict and serve with the ONNX file -----------------------------------------------------------------------

def predict_json(capsys, model: Path, *images) -> tuple[int, list[dict]]:
    code = main(["predict", str(model), *map(str, images), "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("kind", ["uint8", "float"])
@pytest.mark.slow
def test_predict_with_onnx_gives_the_checkpoint_s_labels(exported, checkpoint, kind, capsys):
    code, with_checkpoint = predict_json(capsys, checkpoint.path, DIGITS)
    assert predict_json(capsys, exported[kind], DIGITS)[0] == code == 1  # blank.png has no digit
    with_onnx = predict_json(capsys, exported[kind], DIGITS)[1]
    assert [r.get("label") for r in with_onnx] == [r.get("label") for r in with_checkpoint]
    assert [r.get("class") for r in with_onnx] == [r.get("class") for r in with_checkpoint]
    assert [r.get("error") for r in with_onnx] == [r.get("error") for r in with_checkpoint]
    for a, b in zip(with_onnx, with_checkpoint, strict=True):
        if "label" in a:  # float input: the same pixels; uint8: the pixels rounded to 0-255
            np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-4 if kind == "float" else 0.02)


@pytest.mark.slow
def test_the_table_names_classes_that_are_not_digits(exported, tmp_path, capsys):
    model = onnx.load(str(exported["uint8"]))
    props = {p.key: p for p in model.metadata_props}
    record = json.loads(props[METADATA_KEY].value)
    record["classes"] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
    props[METADATA_KEY].value = json.dumps(record)
    onnx.save(model, tmp_path / "fashion.onnx")
    assert main(["predict", str(tmp_path / "fashion.onnx"), str(DIGITS / "scan-0.png")]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:4] == ["file", "label", "class", "confidence"] and row.split()[1:3] == ["0", "T-shirt/top"]
    [answer] = predict(load_onnx(tmp_path / "fashion.onnx"), DIGITS / "scan-0.png")
    assert answer.to_dict()["class"] == "T-shirt/top" and answer.to_dict()["top_k"][0]["class"] == "T-shirt/top"


@pytest.mark.slow
def test_serve_with_onnx_answers_the_api(exported, checkpoint):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from PIL import Image

    from mnistlab.serve import create_app, serving_size

    client = TestClient(create_app(exported["float"]), base_url="http://localhost")  # a name the server answers to
    body = (DIGITS / "paint-3.png").read_bytes()
    answer = client.post("/api/predict", content=body, headers={"Content-Type": "image/png"}).json()
    [expected] = predict(checkpoint, serving_size(Image.open(DIGITS / "paint-3.png")))  # as the server reads it
    assert answer["label"] == expected.label == 3 and answer["class"] == "3"
    np.testing.assert_allclose(answer["probabilities"], expected.probabilities, atol=1e-4)
    info = client.get("/api/model").json()
    assert info["architecture"] == "mlp" and info["classes"] == list("0123456789") and info["name"] == "float.onnx"
    assert info["parameters"] == checkpoint.parameter_count and info["test_accuracy"] == checkpoint.metrics["test_acc"]


# A Python that cannot import torch: what a deployment without PyTorch is.
NO_TORCH = textwrap.dedent("""
    import sys

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)  # as when it is not installed

    sys.meta_path.insert(0, NoTorch())
    from mnistlab.cli import main

    code = main(sys.argv[1:])
    print("torch imported" if "torch" in sys.modules else "torch not imported", file=sys.stderr)
    sys.exit(code)
""")


def without_torch(*argv: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(no_torch_command(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=SOURCE_ENV, **kwargs)


def no_torch_command(*argv: str) -> list[str]:
    return [sys.executable, "-c", NO_TORCH, *argv]


SOURCE_ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}  # this checkout's mnistlab, in a subprocess


@pytest.mark.slow
def test_without_torch_an_export_scores_labelled_images_and_training_says_what_is_missing(exported):
    process = without_torch("evaluate", str(exported["uint8"]), "--images", str(ROOT / "examples" / "my-digits"),
                            "--json")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert json.loads(out)["images"] == 20 and err.strip() == "torch not imported"
    process = without_torch("train", "--epochs", "1")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1 and out == ""
    assert err.splitlines()[0] == "mnistlab: error: train needs torch, which is not installed: pip install torch"


@pytest.mark.parametrize("kind", ["uint8", "float"])
@pytest.mark.slow
def test_evaluate_an_export_reproduces_the_checkpoint_s_score(exported, mnist_mlp, kind, capsys):
    assert main(["evaluate", str(mnist_mlp), "--device", "cpu"]) == 0
    of_checkpoint = capsys.readouterr().out.splitlines()
    assert main(["evaluate", str(exported[kind])]) == 0
    of_export = capsys.readouterr().out.splitlines()
    assert of_export[0].endswith("on onnxruntime (CPU)") and of_export[1] == of_checkpoint[1] == (
        "MNIST test set, from the bundled copy")
    assert of_export[2:] == of_checkpoint[2:]  # loss, accuracy and "reproduced exactly", to the printed digit
    assert "reproduced exactly" in of_export[-1]
    # and on a folder of labelled images, the same answers
    assert main(["evaluate", str(mnist_mlp), "--images", str(ROOT / "examples" / "my-digits"), "--json"]) == 0
    by_checkpoint = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(exported[kind]), "--images", str(ROOT / "examples" / "my-digits"), "--json"]) == 0
    by_export = json.loads(capsys.readouterr().out)
    assert by_export["accuracy"] == by_checkpoint["accuracy"] and by_export["checkpoint"] == str(exported[kind])


@pytest.mark.slow
def test_predict_with_onnx_runs_without_torch(exported):
    process = without_torch("predict", str(exported["uint8"]), str(DIGITS / "paint-3.png"), "--json")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert json.loads(out)[0]["label"] == 3 and err.strip() == "torch not imported"


@pytest.mark.slow
def test_serve_with_onnx_runs_without_torch(exported):
    pytest.importorskip("fastapi")
    with serving(no_torch_command("serve", str(exported["uint8"]), "--port", "0"), env=SOURCE_ENV) as (url, process):
        request = urllib.request.Request(f"{url}api/predict", data=(DIGITS / "scan-0.png").read_bytes(),
                                         headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.loads(response.read())["label"] == 0
    assert process.errors.strip().endswith("torch not imported"), process.errors


# --- hostile ONNX files: one line, exit 1 ----------------------------------------------------------------------

def record(**changes) -> dict:
    """A valid metadata record for a model with uint8 input, with `changes` applied."""
    good = {"format": "mnistlab.export", "format_version": 1, "mnistlab_version": "0.1.0", "model": {"name": "mlp"},
            "classes": list("0123456789"), "input": {"dtype": "uint8"}}
    return {**good, **changes}


def graph_model(*, dtype: int = TensorProto.UINT8, input_shape=("N", 28, 28), output_shape=("N", 10),
                names=("pixels", "probabilities"), metadata: dict | str | None = None, extra_input: bool = False,
                computed_classes: int = 10) -> onnx.ModelProto:
    """A small model in the export's shape (flatten, matmul, softmax) with one thing changed at a time."""
    weights = numpy_helper.from_array(np.full((784, computed_classes), 0.01, np.float32), "W")
    flat = numpy_helper.from_array(np.array([-1, 784], np.int64), "flat")
    nodes = [helper.make_node("Cast", [names[0]], ["x"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["x", "flat"], ["rows"]),
             helper.make_node("MatMul", ["rows", "W"], ["logits"]),
             helper.make_node("Softmax", ["logits"], [names[1]], axis=1)]
    inputs = [helper.make_tensor_value_info(names[0], dtype, list(input_shape))]
    if extra_input:
        inputs.append(helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info(names[1], TensorProto.FLOAT,
                                                                                  list(output_shape))],
                              [weights, flat])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    if metadata is not None:
        value = metadata if isinstance(metadata, str) else json.dumps(metadata)
        model.metadata_props.add(key=METADATA_KEY, value=value)
    return model


def save(model: onnx.ModelProto):
    return lambda path: path.write_bytes(model.SerializeToString())


def with_external_data(path: Path) -> None:
    model = graph_model(metadata=record())
    onnx.save(model, path, save_as_external_data=True, location="weights.bin", size_threshold=0)


def fifo(path: Path) -> None:
    os.mkfifo(path)


HOSTILE = {
    "missing": (lambda path: None, "no such file"),
    "a-folder": (lambda path: path.mkdir(), "not a regular file (a folder)"),
    "a-fifo": (fifo, "not a regular file (a FIFO)"),
    "empty": (lambda path: path.write_bytes(b""), "the file is empty"),
    "random-bytes": (lambda path: path.write_bytes(np.random.default_rng(0).bytes(5000)), "not a usable ONNX model"),
    "text": (lambda path: path.write_text("not a model\n"), "not a usable ONNX model"),
    "truncated-export": (None, "not a usable ONNX model"),
    "external-data": (with_external_data, "not a usable ONNX model"),
    "no-metadata": (save(graph_model()), "not an mnistlab export (no 'mnistlab' metadata"),
    "foreign-wrong-shape-no-metadata": (save(graph_model(input_shape=("N", 784))), "not an mnistlab export"),
    "metadata-not-json": (save(graph_model(metadata="{nope")), "metadata 'mnistlab': not valid JSON"),
    "metadata-nan": (save(graph_model(metadata='{"format": NaN}')), "metadata 'mnistlab': not valid JSON"),
    "metadata-a-list": (save(graph_model(metadata="[1, 2]")), "not an mnistlab export (metadata 'mnistlab' has no"),
    "metadata-other-format": (save(graph_model(metadata=record(format="other"))), "not an mnistlab export"),
    "metadata-newer-version": (save(graph_model(metadata=record(format_version=2))), "format version 2 is not"),
    "metadata-nine-classes": (save(graph_model(metadata=record(classes=list("012345678")))),
                              "field 'classes' must be a non-empty list of 10 class names"),
    "metadata-class-with-newline": (save(graph_model(metadata=record(classes=["a\nb", *"123456789"]))),
                                    "field 'classes[0]'"),
    "metadata-huge": (save(graph_model(metadata=record(padding="x" * 100_000))), "bytes (at most 65,536)"),
    "metadata-unknown-dtype": (save(graph_model(metadata=record(input={"dtype": "int64"}))),
                               "field 'input.dtype' must be \"uint8\" or \"float32\""),
    "metadata-unknown-layout": (save(graph_model(metadata=record(input={"dtype": "uint8", "layout": "stretch"}))),
                                "field 'input.layout' must be \"digit\" or \"fill\", got 'stretch'"),
    "metadata-layout-number": (save(graph_model(metadata=record(input={"dtype": "uint8", "layout": 1}))),
                               "field 'input.layout' must be \"digit\" or \"fill\", got 1"),
    "metadata-without-input": (save(graph_model(metadata={k: v for k, v in record().items() if k != "input"})),
                               "field 'input' is missing"),
    "dtype-disagrees-with-metadata": (save(graph_model(dtype=TensorProto.FLOAT, metadata=record())),
                                      "expected one: pixels tensor(uint8) (N, 28, 28)"),
    "flat-input": (save(graph_model(input_shape=("N", 784), metadata=record())), "the model's inputs are"),
    "fixed-batch": (save(graph_model(input_shape=(1, 28, 28), metadata=record())), "(N, 28, 28)"),
    "two-inputs": (save(graph_model(extra_input=True, metadata=record())), "the model's inputs are pixels"),
    "input-renamed": (save(graph_model(names=("image", "probabilities"), metadata=record())),
                      "the model's inputs are image"),
    "five-outputs-declared": (save(graph_model(output_shape=("N", 5), computed_classes=5, metadata=record())),
                              "the model's outputs are probabilities tensor(float) ('N', 5)"),
    "output-renamed": (save(graph_model(names=("pixels", "logits_out"), metadata=record())),
                       "the model's outputs are logits_out"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.slow
def test_a_hostile_onnx_file_is_refused_in_one_line(name, exported, tmp_path, capsys, no_hang):
    make, message = HOSTILE[name]
    path = tmp_path / "model.onnx"
    if name == "truncated-export":
        data = exported["uint8"].read_bytes()
        path.write_bytes(data[:len(data) // 2])
    else:
        make(path)
    with pytest.raises(OnnxModelError) as refused:
        load_onnx(path)
    assert str(refused.value).startswith(f"{path}: ") and message in str(refused.value), str(refused.value)
    assert "\n" not in str(refused.value)
    for argv in (["predict", str(path), str(DIGITS / "paint-3.png")], ["serve", str(path), "--port", "0"]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 1 and out == "" and err == f"mnistlab: error: {refused.value}\n", err


def test_a_file_name_cannot_break_the_error_line_or_drive_the_terminal(tmp_path, capsys):
    path = tmp_path / "evil\n\x1b[31mname.onnx"
    path.write_bytes(b"junk")
    assert main(["predict", str(path), str(DIGITS / "paint-3.png")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "evil\\n\\x1b[31mname.onnx: not a usable ONNX model" in err


def test_the_hostile_cases_builder_makes_a_loadable_model_when_nothing_is_changed(tmp_path):
    """So that each hostile case above is refused for the one thing it changes."""
    path = tmp_path / "fine.onnx"
    save(graph_model(metadata=record()))(path)
    model = load_onnx(path)
    assert model.classes == tuple("0123456789") and model.model_name == "mlp"
    assert model.probabilities(np.zeros((3, 28, 28), np.float32)).shape == (3, 10)


@pytest.mark.slow
def test_a_file_over_the_size_limit_is_refused_before_it_is_read(exported, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(onnx_model, "MAX_ONNX_BYTES", 1000)
    assert main(["predict", str(exported["uint8"]), str(DIGITS / "paint-3.png")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mnistlab: error: {exported['uint8']}: too large (") and err.count("\n") == 1
    monkeypatch.undo()
    sparse = tmp_path / "sparse.onnx"  # claims a terabyte; reading it would take hours
    with open(sparse, "wb") as file:
        file.truncate(1 << 40)
    with pytest.raises(OnnxModelError, match=r"too large \(1,099,511,627,776 bytes; at most 536,870,912\)"):
        load_onnx(sparse)


def test_a_model_that_computes_another_shape_than_it_declares_fails_in_one_line(tmp_path, capsys):
    path = tmp_path / "liar.onnx"
    save(graph_model(computed_classes=5, metadata=record()))(path)  # declares (N, 10), computes (N, 5)
    code = main(["predict", str(path), str(DIGITS / "paint-3.png")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"mnistlab: error: {path}: "), err


def test_a_model_with_non_finite_output_gives_errors_not_answers(tmp_path):
    model = graph_model(metadata=record())
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full((784, 10), np.nan, np.float32), "W"))
    save(model)(tmp_path / "nan.onnx")
    [answer] = predict(load_onnx(tmp_path / "nan.onnx"), DIGITS / "paint-3.png")
    assert not answer.ok and answer.error.startswith("the model's output is not a number")


@pytest.mark.slow
def test_onnx_sessions_use_the_threads_they_are_given(exported):
    assert load_onnx(exported["uint8"], threads=1).session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("name", mnistlab.list_models())
@pytest.mark.slow
def test_every_registered_model_exports_to_onnx_with_the_same_probabilities(name, tmp_path):
    """Untrained, on random pixels: what matters is that torch.export captures each model's code."""
    torch.manual_seed(0)
    model = mnistlab.create_model(name).eval()
    from mnistlab.checkpoints import save_checkpoint

    run = save_checkpoint(tmp_path / "run", model, name, {}, mean=0.2, std=0.4, dataset={"name": "mnist"},
                          metrics={}, train_config={})
    pixels = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    expected = mnistlab.load_checkpoint(run).probabilities(pixels.astype(np.float32) / 255)
    got = load_onnx(export(run)).session.run(None, {"pixels": pixels})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("config, message", [
    (ExportConfig(format="tflite"), "format: expected one of onnx, torchscript, got 'tflite'"),
    (ExportConfig(input="int8"), "input: expected one of uint8, float, got 'int8'"),
])
def test_a_bad_export_option_is_refused_at_the_call(config, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        export(tmp_path / "no-such-run", config)  # before the run is even looked for

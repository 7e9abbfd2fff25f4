"""The figures: what they draw (checked on the Figure) and the PNGs they make (checked with Pillow)."""

import shutil

import numpy as np
import pytest
import torch
from matplotlib.colors import same_color
from PIL import Image
from torch import nn

from mnistlab.cli import main
from mnistlab.data import load_mnist, normalize
from mnistlab.plots import (
    DPI,
    RIGHT_COLOR,
    WRONG_COLOR,
    PlotError,
    SplitPredictions,
    compute_predictions,
    confusion_counts,
    confusion_matrix,
    mistakes_gallery,
    pixel_view,
    prediction_grid,
    save_figure,
    training_curves,
)
from mnistlab.training import evaluate

from .conftest import make_dataset

SWAPPED = (4, 9)  # the stub model's known mistakes: it reads every 4 as a 9 and every 9 as a 4


class BandReader(nn.Module):
    """Reads conftest's synthetic digits (class k lights rows 2+2k and 3+2k) with 4 and 9 swapped."""

    def forward(self, x):  # (B, 1, 28, 28)
        bands = x[:, 0, 2:22, 4:24].mean(2).reshape(-1, 10, 2).mean(2)  # (B, 10): brightness of each band
        order = list(range(10))
        order[4], order[9] = 9, 4
        return 1.5 * bands[:, order]


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    return load_mnist(make_dataset(tmp_path_factory.mktemp("plots") / "data")).test


@pytest.fixture(scope="module")
def predictions(test_split) -> SplitPredictions:
    return compute_predictions(BandReader(), test_split, batch_size=50)


def check_png(path, fig) -> np.ndarray:
    """The PNG has the figure's size × DPI in pixels and is not blank; return its pixels."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (round(fig.get_figwidth() * DPI), round(fig.get_figheight() * DPI))
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
    assert pixels.var() > 0
    return pixels


def test_predictions_are_the_models_and_agree_with_evaluate(predictions, test_split):
    assert predictions.probs.shape == (128, 10)
    torch.testing.assert_close(predictions.probs.sum(1), torch.ones(128))
    expected_wrong = torch.isin(test_split.labels, torch.tensor(SWAPPED))
    assert torch.equal(predictions.wrong, expected_wrong) and expected_wrong.any()
    _, acc = evaluate(BandReader(), test_split, batch_size=50)
    assert predictions.accuracy == acc


def test_pixel_view_writes_every_value_readably(test_split, tmp_path):
    image = test_split.images[3]
    fig = pixel_view(image, int(test_split.labels[3]))
    ax = fig.axes[0]
    assert f"label {int(test_split.labels[3])}" in ax.get_title()
    assert ax.get_xlabel() == "column" and ax.get_ylabel() == "row"
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t for t in ax.texts}
    assert len(cells) == 28 * 28
    for (row, col), text in cells.items():
        value = int(image[row, col])
        assert text.get_text() == str(value)
        # dark text on light cells, light text on dark ones
        assert same_color(text.get_color(), "black" if value > 0.45 * 255 else "white")
    check_png(save_figure(fig, tmp_path / "pixels.png"), fig)


def test_pixel_view_normalized_shows_the_model_input(test_split):
    image = test_split.images[0]
    fig = pixel_view(image, normalized=True)
    expected = normalize(image)[0, 0]
    texts = fig.axes[0].texts
    assert [t.get_text() for t in texts[:3]] == [f"{v:.1f}".replace("-0.0", "0.0") for v in expected[0, :3].tolist()]
    assert {t.get_text() for t in texts} >= {"2.8"}  # 255 → (1 - 0.1307) / 0.3081
    assert "normalised" in fig.axes[0].get_title()
    with pytest.raises(PlotError, match="expected one 28x28 image"):
        pixel_view(torch.zeros(3, 28, 28))


def grid_cells(fig):
    """(index, caption, colour) of each drawn cell of a prediction grid, in reading order."""
    return [(int(ax.get_title().lstrip("#")), ax.get_xlabel(), ax.xaxis.label.get_color())
            for ax in fig.axes if ax.get_xlabel()]


def test_prediction_grid_is_red_exactly_where_the_model_is_wrong(predictions, tmp_path):
    fig = prediction_grid(predictions, rows=4, cols=6)
    cells = grid_cells(fig)
    assert [index for index, _, _ in cells] == list(range(24))  # no seed: the first digits, in order
    labels, preds = predictions.labels.tolist(), predictions.preds.tolist()
    for index, caption, color in cells:
        assert caption == f"pred {preds[index]} / true {labels[index]}"
        assert same_color(color, WRONG_COLOR if labels[index] in SWAPPED else RIGHT_COLOR)
    colors = {same_color(c, WRONG_COLOR) for _, _, c in cells}
    assert colors == {True, False}  # the sample holds both kinds
    assert f"{sum(labels[i] in SWAPPED for i in range(24))} wrong" in fig._suptitle.get_text()
    check_png(save_figure(fig, tmp_path / "grid.png"), fig)


def test_prediction_grid_errors_only_and_seeded_samples(predictions):
    n_wrong = int(predictions.wrong.sum())
    errors = grid_cells(prediction_grid(predictions, rows=10, cols=10, errors_only=True))
    assert len(errors) == n_wrong  # fewer mistakes than cells: the rest stay empty
    assert all(same_color(c, WRONG_COLOR) for _, _, c in errors)
    first = grid_cells(prediction_grid(predictions, rows=2, cols=3, seed=5))
    assert first == grid_cells(prediction_grid(predictions, rows=2, cols=3, seed=5))
    assert first != grid_cells(prediction_grid(predictions, rows=2, cols=3, seed=6))
    assert [i for i, _, _ in first] != list(range(6))


def test_prediction_grid_without_mistakes_says_so(predictions):
    perfect = SplitPredictions(predictions.images, predictions.labels, torch.eye(10)[predictions.labels])
    for fig in (prediction_grid(perfect, errors_only=True), mistakes_gallery(perfect)):
        assert not fig.axes and fig.texts[0].get_text() == "No mistakes: all 128 digits are right"


def history(epochs: int, offset: float = 0.0) -> list[dict]:
    return [{"epoch": e, "train_loss": 1 / e + offset, "train_acc": 0.9 + e / 100, "test_loss": 1.2 / e,
             "test_acc": 0.88 + e / 100} for e in range(1, epochs + 1)]


def test_training_curves_have_one_point_per_epoch(tmp_path):
    fig = training_curves(history(3))
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_xlabel() == acc_ax.get_xlabel() == "epoch" and "loss" in loss_ax.get_ylabel()
    for ax in (loss_ax, acc_ax):
        assert [line.get_label() for line in ax.lines] == ["train", "test"]
        for line in ax.lines:
            assert list(line.get_xdata()) == [1, 2, 3]
    assert list(acc_ax.lines[1].get_ydata()) == pytest.approx([89, 90, 91])  # percent
    check_png(save_figure(fig, tmp_path / "curves.png"), fig)


def test_training_curves_overlay_several_runs_with_a_legend():
    fig = training_curves({"mlp-s1": history(3), "mlp-s2": history(5, 0.1)})
    for ax in fig.axes:
        assert [len(line.get_xdata()) for line in ax.lines] == [3, 3, 5, 5]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["mlp-s1", "mlp-s2", "train", "test"]
    with pytest.raises(PlotError, match="at least one epoch"):
        training_curves({"empty": []})


def test_confusion_matrix_writes_the_counts(predictions, tmp_path):
    fig = confusion_matrix(predictions)
    ax = fig.axes[0]
    counts = confusion_counts(predictions)
    labels = predictions.labels
    assert counts[4, 9] == (labels == 4).sum() and counts[9, 4] == (labels == 9).sum()
    assert counts[4, 4] == counts[9, 9] == 0 and counts.sum() == len(labels)
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(t, p): str(int(counts[t, p])) for t in range(10) for p in range(10)}
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted digit", "true digit")
    check_png(save_figure(fig, tmp_path / "confusion.png"), fig)


def test_mistakes_gallery_shows_the_most_confident_first_with_top_3(predictions, tmp_path):
    fig = mistakes_gallery(predictions, count=6, cols=3)
    shown = [ax for ax in fig.axes if ax.get_title()]
    indices = [int(ax.get_title().split(":")[0].lstrip("#")) for ax in shown]
    assert len(indices) == 6 and all(predictions.wrong[i] for i in indices)
    confidence = predictions.probs.max(1).values
    assert confidence[indices].tolist() == sorted(confidence[indices].tolist(), reverse=True)
    assert confidence[indices[-1]] >= confidence[predictions.wrong].sort(descending=True).values[5]
    for index, ax in zip(indices, shown, strict=True):
        lines = ax.get_xlabel().splitlines()
        top = predictions.probs[index].topk(3)
        assert [line.split(":")[0] for line in lines] == [str(d) for d in top.indices.tolist()]
        assert lines[0].endswith(f"{top.values[0].item():.1%}")
        true = int(predictions.labels[index])
        assert [line.endswith("true") for line in lines] == [d == true for d in top.indices.tolist()]
    check_png(save_figure(fig, tmp_path / "mistakes.png"), fig)


def test_save_figure_is_atomic(tmp_path):
    fig = training_curves(history(2))
    path = save_figure(fig, tmp_path / "sub" / "c.png", dpi=50)
    assert Image.open(path).size == (550, 230)
    assert [p.name for p in path.parent.iterdir()] == ["c.png"]


# --- the command line ------------------------------------------------------------------------------

def test_show_writes_a_digit_by_index(tiny_run, tmp_path, capsys, monkeypatch):
    _, data_dir = tiny_run
    monkeypatch.chdir(tmp_path)
    assert main(["show", "3", "--split", "test", "--data-dir", str(data_dir)]) == 0
    assert capsys.readouterr().out.strip() == "wrote test-3.png"
    assert Image.open(tmp_path / "test-3.png").size == (1000, 1060)
    assert main(["show", "0", "--normalized", "--data-dir", str(data_dir), "--out", "n.png"]) == 0
    assert (tmp_path / "n.png").is_file()
    assert main(["show", "128", "--split", "test", "--data-dir", str(data_dir)]) == 1
    assert capsys.readouterr().err.strip() == ("mnistlab: error: index 128 is out of range: "
                                               "the test split has 128 digits (0-127)")


def test_show_the_first_real_test_digit(tmp_path):
    out = tmp_path / "seven.png"
    assert main(["show", "0", "--split", "test", "--out", str(out)]) == 0
    assert np.asarray(Image.open(out).convert("L")).var() > 0


def test_show_an_image_file_as_the_model_sees_it(tmp_path, capsys):
    pytest.importorskip("mnistlab.preprocessing", reason="the image preprocessing module is not in this tree yet")
    photo = Image.new("L", (120, 160), 235)  # dark ink on light paper, as a phone photo has it
    photo.paste(30, (52, 20, 68, 140))  # a "1"
    photo.save(tmp_path / "one.png")
    assert main(["show", str(tmp_path / "one.png"), "--out", str(tmp_path / "seen.png")]) == 0
    pixels = np.asarray(Image.open(tmp_path / "seen.png").convert("L"))
    assert pixels.var() > 0
    assert main(["show", str(tmp_path / "missing.png")]) == 1
    assert "missing.png" in capsys.readouterr().err


def test_plot_commands_write_into_the_run_folder(tiny_run, tmp_path, capsys):
    run = shutil.copytree(tiny_run[0], tmp_path / "run")
    data = ["--data-dir", str(tiny_run[1]), "--device", "cpu"]
    for argv, name in ((["grid", str(run)], "predictions.png"), (["grid", str(run), "--errors-only"],
                                                                 "predictions-errors.png"),
                       (["confusion", str(run)], "confusion.png"), (["mistakes", str(run)], "mistakes.png"),
                       (["curves", str(run)], "curves.png")):
        assert main(["plot", *argv, *(data if argv[0] != "curves" else [])]) == 0
        assert capsys.readouterr().out.strip() == f"wrote {run / name}"
        assert np.asarray(Image.open(run / name).convert("L")).var() > 0


def test_plot_grid_flags_and_curves_of_several_runs(tiny_run, tmp_path, capsys, monkeypatch):
    run, data_dir = tiny_run
    out = tmp_path / "g.png"
    assert main(["plot", "grid", str(run), "--rows", "2", "--cols", "7", "--seed", "3", "--data-dir", str(data_dir),
                 "--out", str(out)]) == 0
    assert Image.open(out).size == (round(1.55 * 7 * DPI), round((1.8 * 2 + 0.75) * DPI))
    other = shutil.copytree(run, tmp_path / "b" / run.name)  # the same folder name: told apart by path
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "curves", str(run), str(other)]) == 0
    assert capsys.readouterr().out.strip().endswith("wrote curves.png")


@pytest.mark.parametrize("argv, message", [
    (["plot", "grid", "RUN", "--rows", "0"], "argument --rows: must be ≥ 1"),
    (["plot", "grid", "RUN", "--rows", "30", "--cols", "30"], "--rows × --cols must be at most 400"),
    (["plot", "grid", "RUN", "--out", "x.png", "--show"], "not allowed with argument"),
    (["plot", "mistakes", "RUN", "--count", "many"], "expected a whole number"),
    (["plot", "curves"], "the following arguments are required: RUN"),
    (["plot"], "the following arguments are required: FIGURE"),
    (["show", "1", "--split", "validation"], "invalid choice: 'validation'"),
])
def test_bad_picture_flags_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint_and_no_display_are_one_line_errors(tmp_path, tiny_run, capsys, monkeypatch):
    assert main(["plot", "confusion", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err.strip() == f"mnistlab: error: {tmp_path / 'nothing'}: no such checkpoint"
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "get_backend", lambda: "agg")  # what matplotlib falls back to without a display
    assert main(["plot", "curves", str(tiny_run[0]), "--show"]) == 1
    assert "--show needs a display" in capsys.readouterr().err

"""The figures: what they draw (checked on the Figure) and the PNGs they make (checked with Pillow)."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.colors import same_color
from matplotlib.text import Text
from PIL import Image
from torch import nn

from mnistlab.cli import main
from mnistlab.data import load_mnist, normalize
from mnistlab.evaluation import compute_predictions, evaluate
from mnistlab.plots import (
    DPI,
    RIGHT_COLOR,
    WRONG_COLOR,
    CellText,
    PlotError,
    SplitPredictions,
    confusion_counts,
    confusion_matrix,
    mistakes_gallery,
    pixel_view,
    prediction_grid,
    save_figure,
    training_curves,
)

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


def cell_texts(fig) -> list[tuple[float, float, str, object]]:
    """(x, y, text, colour) of every CellText string in `fig`, in data units."""
    found = []
    for cells in fig.findobj(CellText):
        colors = cells.get_facecolors()
        for i, ((x, y), text) in enumerate(zip(cells.get_offsets().tolist(), cells.texts, strict=True)):
            found.append((x, y, text, colors[i % len(colors)]))
    return found


def test_pixel_view_writes_every_value_readably(test_split, tmp_path):
    image = test_split.images[3]
    fig = pixel_view(image, int(test_split.labels[3]))
    ax = fig.axes[0]
    assert f"label {int(test_split.labels[3])}" in ax.get_title()
    assert ax.get_xlabel() == "column" and ax.get_ylabel() == "row"
    values, columns, rows = fig.findobj(CellText)
    cells = {(round(y), round(x)): (text, color) for x, y, text, color in cell_texts(values.figure)[:28 * 28]}
    assert len(values.texts) == len(cells) == 28 * 28
    for (row, col), (text, color) in cells.items():
        value = int(image[row, col])
        assert text == str(value)
        # dark text on light cells, light text on dark ones
        assert same_color(color, "black" if value > 0.45 * 255 else "white")
    assert columns.texts == rows.texts == [str(i) for i in range(28)]
    assert all(y > 27.5 for _, y in columns.get_offsets()) and all(x < -0.5 for x, _ in rows.get_offsets())
    check_png(save_figure(fig, tmp_path / "pixels.png"), fig)


def test_pixel_view_normalized_shows_the_model_input(test_split):
    image = test_split.images[0]
    fig = pixel_view(image, normalized=True)
    expected = normalize(image)[0, 0]
    texts = fig.findobj(CellText)[0].texts
    assert texts[:3] == [f"{v:.1f}".replace("-0.0", "0.0") for v in expected[0, :3].tolist()]
    assert set(texts) >= {"2.8"}  # 255 → (1 - 0.1307) / 0.3081
    assert "normalised" in fig.axes[0].get_title()
    with pytest.raises(PlotError, match="expected one 28x28 image"):
        pixel_view(torch.zeros(3, 28, 28))


CELL = (34, 40)  # a prediction grid's cell, in digit pixels


def grid_cells(fig) -> list[tuple[int, int, int, str, bool]]:
    """(row, column, index, caption, wrong) of each digit in a prediction grid, in reading order.

    A digit is found by its "#index" label above it; its caption is the coloured text below it.
    """
    texts = cell_texts(fig)
    captions = {(round(x), round(y)): (text, color) for x, y, text, color in texts if text.startswith("pred")}
    found = []
    for x, y, text, _ in texts:
        if text.startswith("#"):
            below = [(cy, c, col) for (cx, cy), (c, col) in captions.items() if cx == round(x) and cy > y]
            _, caption, color = min(below)
            assert same_color(color, WRONG_COLOR) or same_color(color, RIGHT_COLOR)
            found.append((int(y // CELL[1]), int(x // CELL[0]), int(text[1:]), caption, same_color(color, WRONG_COLOR)))
    return sorted(found)


def test_prediction_grid_has_one_column_per_digit(predictions, tmp_path):
    fig = prediction_grid(predictions, rows=3)
    cells = grid_cells(fig)
    labels, preds = predictions.labels.tolist(), predictions.preds.tolist()
    assert {col for _, col, _, _, _ in cells} == set(range(10))  # every digit appears
    for _, col, index, caption, wrong in cells:
        assert labels[index] == col  # each column holds digits of its class
        assert caption == f"pred {preds[index]}"
        assert wrong == (labels[index] in SWAPPED)
    for col in range(10):  # no seed: the first digits of each class, in order
        column = [index for _, c, index, _, _ in cells if c == col]
        assert column == [i for i, label in enumerate(labels) if label == col][:3]
    headers = [text for _, y, text, _ in cell_texts(fig) if y < 9]
    assert headers == [str(d) for d in range(10)]
    assert f"{sum(w for *_, w in cells)} wrong here" in fig._suptitle.get_text()
    check_png(save_figure(fig, tmp_path / "grid.png"), fig)


def test_prediction_grid_by_class_errors_only_and_seeded(predictions):
    cells = grid_cells(prediction_grid(predictions, rows=4, errors_only=True))
    labels = predictions.labels
    assert cells and all(wrong for *_, wrong in cells)
    assert {col for _, col, _, _, _ in cells} == set(SWAPPED)  # the only digits it gets wrong
    fig = prediction_grid(predictions, rows=4, errors_only=True)
    nones = [(round(x // CELL[0])) for x, _, text, _ in cell_texts(fig) if text == "none"]
    assert nones == [d for d in range(10) if d not in SWAPPED]  # a column without mistakes says so
    first = grid_cells(prediction_grid(predictions, rows=2, seed=5))
    assert first == grid_cells(prediction_grid(predictions, rows=2, seed=5))
    assert first != grid_cells(prediction_grid(predictions, rows=2, seed=6))
    assert all(int(labels[index]) == col for _, col, index, _, _ in first)


def test_prediction_grid_random_mode(predictions, tmp_path):
    fig = prediction_grid(predictions, rows=4, cols=6, mode="random")
    cells = grid_cells(fig)
    assert [index for _, _, index, _, _ in cells] == list(range(24))  # no seed: the first digits, in order
    assert [(row, col) for row, col, *_ in cells] == [divmod(i, 6) for i in range(24)]
    labels, preds = predictions.labels.tolist(), predictions.preds.tolist()
    for _, _, index, caption, wrong in cells:
        assert caption == f"pred {preds[index]} / true {labels[index]}"
        assert wrong == (labels[index] in SWAPPED)
    assert {wrong for *_, wrong in cells} == {True, False}  # the sample holds both kinds
    check_png(save_figure(fig, tmp_path / "grid.png"), fig)
    n_wrong = int(predictions.wrong.sum())
    errors = grid_cells(prediction_grid(predictions, rows=10, cols=10, mode="random", errors_only=True))
    assert len(errors) == n_wrong and all(wrong for *_, wrong in errors)  # fewer mistakes than cells
    seeded = grid_cells(prediction_grid(predictions, rows=2, cols=3, mode="random", seed=5))
    assert [index for _, _, index, _, _ in seeded] != list(range(6))
    with pytest.raises(PlotError, match="mode must be one of class, random"):
        prediction_grid(predictions, mode="by-class")


@pytest.mark.parametrize("draw", [
    pytest.param(lambda p: prediction_grid(p, rows=0), id="grid-no-rows"),
    pytest.param(lambda p: prediction_grid(p, mode="random", cols=0), id="random-grid-no-columns"),
    pytest.param(lambda p: prediction_grid(p, rows=-3, errors_only=True), id="errors-grid-negative-rows"),
    pytest.param(lambda p: mistakes_gallery(p, count=0), id="no-mistakes-asked-for"),
    pytest.param(lambda p: mistakes_gallery(p, cols=0), id="gallery-no-columns"),
    pytest.param(lambda p: prediction_grid(p, seed=-1), id="negative-seed"),
    pytest.param(lambda p: prediction_grid(p, mode="random", seed=2**64), id="seed-past-torchs-range"),
])
def test_grids_that_cannot_be_drawn_are_refused_in_one_line(draw, predictions):
    with pytest.raises(PlotError, match=r"^(rows|cols|count|seed): must be a whole number from"):
        draw(predictions)


def test_wrong_digits_are_framed_thick_and_red(predictions):
    fig = prediction_grid(predictions, rows=3)
    frames = fig.findobj(PatchCollection)[0]
    style = {(int(path.vertices[:, 0].min() // CELL[0]), int(path.vertices[:, 1].min() // CELL[1])): (width, color)
             for path, width, color in zip(frames.get_paths(), frames.get_linewidths(), frames.get_edgecolors(),
                                           strict=True)}
    cells = grid_cells(fig)
    assert len(style) == len(cells)
    for row, col, *_, wrong in cells:
        width, color = style[col, row]
        assert same_color(color, WRONG_COLOR if wrong else RIGHT_COLOR)
        assert width == (2.5 if wrong else 1)


def test_prediction_grid_without_mistakes_says_so(predictions):
    perfect = SplitPredictions(predictions.images, predictions.labels, torch.eye(10)[predictions.labels])
    for fig in (prediction_grid(perfect, errors_only=True), prediction_grid(perfect, mode="random", errors_only=True),
                mistakes_gallery(perfect)):
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
    cells = {(round(y), round(x)): text for x, y, text, _ in cell_texts(fig)}
    assert cells == {(t, p): str(int(counts[t, p])) for t in range(10) for p in range(10)}
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted digit", "true digit")
    check_png(save_figure(fig, tmp_path / "confusion.png"), fig)


def made_up_predictions(pairs: dict[tuple[int, int], int]) -> SplitPredictions:
    """Predictions with `count` digits of each (true, predicted) pair."""
    labels = torch.tensor([true for (true, _), count in pairs.items() for _ in range(count)])
    preds = torch.tensor([pred for (_, pred), count in pairs.items() for _ in range(count)])
    return SplitPredictions(torch.zeros(len(labels), 28, 28, dtype=torch.uint8), labels, torch.eye(10)[preds])


def rendered_cells(fig) -> np.ndarray:
    """(10, 10, 3) RGB of each confusion cell as drawn, sampled near its corner (away from the count)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].astype(float) / 255
    ax = fig.axes[0]
    rgb = np.zeros((10, 10, 3))
    for true in range(10):
        for pred in range(10):
            x, y = ax.transData.transform((pred - 0.35, true - 0.35))
            rgb[true, pred] = pixels[round(canvas.get_width_height()[1] - y), round(x)]
    return rgb


def test_confusion_matrix_colours_show_where_the_errors_are():
    pairs = {(d, d): 1000 for d in range(10)} | {(4, 9): 17, (7, 2): 5, (3, 5): 1}
    rgb = rendered_cells(confusion_matrix(made_up_predictions(pairs)))
    white = np.ones(3)
    assert np.abs(rgb[0, 1] - white).max() < 0.02  # an empty cell stays quiet
    distance = {cell: np.linalg.norm(rgb[cell] - white) for cell in ((4, 9), (7, 2), (3, 5))}
    assert distance[4, 9] > 0.8  # 17 errors: a strong colour, as visible as the 1,000 right answers
    assert distance[4, 9] > distance[7, 2] > distance[3, 5] > 0.15  # more errors, darker; one error still shows
    assert np.linalg.norm(rgb[4, 4] - white) > 0.8  # the diagonal is coloured on its own scale
    assert not np.allclose(rgb[4, 4], rgb[4, 9], atol=0.2)  # in another colour than the errors


def test_mistakes_gallery_shows_the_most_confident_first_with_top_3(predictions, tmp_path):
    fig = mistakes_gallery(predictions, count=6, cols=3)
    texts = cell_texts(fig)
    titles = [(x, y, text) for x, y, text, _ in texts if text.startswith("#")]
    indices = [int(text.split(":")[0].lstrip("#")) for _, _, text in sorted(titles, key=lambda t: (t[1], t[0]))]
    assert len(indices) == 6 and all(predictions.wrong[i] for i in indices)
    confidence = predictions.probs.max(1).values
    assert confidence[indices].tolist() == sorted(confidence[indices].tolist(), reverse=True)
    assert confidence[indices[-1]] >= confidence[predictions.wrong].sort(descending=True).values[5]
    lines = [text for _, _, text, _ in texts if not text.startswith("#")]
    for i, index in enumerate(indices):
        shown = lines[3 * i:3 * i + 3]
        top = predictions.probs[index].topk(3)
        assert [line.split(":")[0] for line in shown] == [str(d) for d in top.indices.tolist()]
        assert shown[0].endswith(f"{top.values[0].item():.1%}") or shown[0].endswith("true")
        true = int(predictions.labels[index])
        assert [line.endswith("true") for line in shown] == [d == true for d in top.indices.tolist()]
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
    assert capsys.readouterr().out.strip() == "wrote runs/show/test-3.png"
    assert Image.open(tmp_path / "runs" / "show" / "test-3.png").size == (1000, 1060)
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


@pytest.mark.slow
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
    assert main(["plot", "grid", str(run), "--random", "--rows", "2", "--cols", "7", "--seed", "3",
                 "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert Image.open(out).size == (7 * 34 * 4, 2 * 40 * 4 + 75)
    assert main(["plot", "grid", str(run), "--rows", "2", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    assert Image.open(out).size == (10 * 34 * 4, 2 * 40 * 4 + 9 * 4 + 75)  # one column per digit, under headers
    other = shutil.copytree(run, tmp_path / "b" / run.name)  # the same folder name: told apart by path
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "curves", str(run), str(other)]) == 0
    assert capsys.readouterr().out.strip().endswith("wrote runs/curves.png")


@pytest.mark.parametrize("index, message", [
    pytest.param("²", "'²' is not an index: write it with the digits 0-9", id="superscript-two"),
    pytest.param("٣", "'٣' is not an index: write it with the digits 0-9", id="arabic-indic-three"),
    pytest.param("１２", "'１２' is not an index: write it with the digits 0-9", id="fullwidth-twelve"),
    pytest.param("-1", "index -1 is out of range: the train split has 512 digits (0-511)", id="negative"),
    pytest.param("512", "index 512 is out of range", id="one-past-the-end"),
    pytest.param("9" * 30, "index 99999999999999999999... is out of range", id="thirty-digits"),
    pytest.param("9" * 5000, "index 99999999999999999999... is out of range", id="past-pythons-int-limit"),
    pytest.param("+0x10", "+0x10: ", id="hex-is-a-file-name"),
    pytest.param("0" * 30 + "512", "index 00000000000000000000... is out of range", id="leading-zeros"),
])
def test_show_refuses_indices_it_cannot_use_in_one_line(index, message, tiny_data, capsys):
    assert main(["show", index, "--data-dir", str(tiny_data), "--out", "never.png"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mnistlab: error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["plot", "grid", "RUN", "--rows", "0"], "argument --rows: must be from 1 to 400, got 0"),
    (["plot", "grid", "RUN", "--random", "--rows", "30", "--cols", "30"], "--rows × --cols must be at most 400"),
    (["plot", "grid", "RUN", "--rows", "41"], "--rows × the 10 digits must be at most 400"),
    (["plot", "grid", "RUN", "--cols", "4"], "--cols needs --random"),
    (["plot", "grid", "RUN", "--seed", "-1"], "argument --seed: must be from 0 to 18,446,744,073,709,551,615, got -1"),
    (["plot", "grid", "RUN", "--seed", str(2**64)], "argument --seed: must be from 0 to 18,446,744,073,709,551,615"),
    (["plot", "grid", "RUN", "--seed", "1e3"], "argument --seed: expected a whole number"),
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
    assert capsys.readouterr().err.strip() == (f"mnistlab: error: {tmp_path / 'nothing'}: no such checkpoint; the "
                                               "shipped models need no training: pretrained:cnn, pretrained:cnn_small, "
                                               "pretrained:mlp (`mnistlab models`)")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "get_backend", lambda: "agg")  # what matplotlib falls back to without a display
    assert main(["plot", "curves", str(tiny_run[0]), "--show"]) == 1
    assert "--show needs a display" in capsys.readouterr().err


# Names from anyone's checkpoint or file name: matplotlib would read "$...$" as TeX and fail on it.
TEX_LIKE = ("$\\frac{$", "a$b$c", "$$", "$x^$", "\\", "%s%d", "{0}", "<b>", "é", "ok")


@pytest.mark.parametrize("figure", ["grid", "random-grid", "confusion", "mistakes", "curves", "pixels"])
@pytest.mark.slow
def test_names_with_dollar_signs_are_drawn_as_they_are(predictions, figure, tmp_path):
    named = dataclasses.replace(predictions, classes=TEX_LIKE)
    fig = {"grid": lambda: prediction_grid(named, rows=2),
           "random-grid": lambda: prediction_grid(named, mode="random", rows=2, cols=3, seed=0),
           "confusion": lambda: confusion_matrix(named),
           "mistakes": lambda: mistakes_gallery(named, count=4),
           "curves": lambda: training_curves({"$\\frac{$ run": history(2), "a$b$": history(2, 0.1)}, title="$x^$"),
           "pixels": lambda: pixel_view(named.images[0], title="$\\frac{$.png as the model sees it")}[figure]()
    with Image.open(save_figure(fig, tmp_path / "named.png")) as png:  # drawing raised: "Expected \frac{num}{den}"
        assert np.asarray(png.convert("L")).var() > 0
    shown = [t.get_text() for t in fig.findobj(Text)] + [s for c in fig.findobj(CellText) for s in c.texts]
    if figure == "confusion":
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(TEX_LIKE)
    assert any("$" in text for text in shown)

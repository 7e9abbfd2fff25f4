"""Real MNIST, real training: the accuracy the README promises."""

import pytest

from mnistlab import load_checkpoint
from mnistlab.training import TrainConfig, evaluate, train_run


@pytest.mark.slow
def test_a_third_of_mnist_for_two_epochs_reaches_94_percent(tmp_path):
    run = train_run(TrainConfig(epochs=2, train_limit=20000, device="cpu", out=str(tmp_path / "r"), progress=False))
    assert run.final.test_acc >= 0.94


@pytest.mark.slow
def test_the_default_recipe_reaches_97_percent_and_reproduces(tmp_path):
    run = train_run(TrainConfig(device="cpu", out=str(tmp_path / "r"), progress=False))
    assert len(run.history) == 5
    assert run.final.test_acc >= 0.97
    checkpoint = load_checkpoint(run.dir)
    from mnistlab.data import load_mnist

    _, acc = evaluate(checkpoint.model, load_mnist().test, checkpoint.mean, checkpoint.std)
    assert acc == run.final.test_acc

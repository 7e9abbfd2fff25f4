import pytest
import torch

from mnistlab.models import create_model, list_models, model_defaults, register_model


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_a_batch_to_ten_finite_logits(name):
    model = create_model(name)
    logits = model(torch.randn(7, 1, 28, 28))
    assert logits.shape == (7, 10)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_mlp_is_the_seed_architecture():
    model = create_model("mlp")
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(128, 784), (128,), (10, 128), (10,)]
    assert model_defaults("mlp") == {"hidden": 128}
    assert sum(p.numel() for p in create_model("mlp", hidden=32).parameters()) == 784 * 32 + 32 + 330


def test_unknown_model_and_argument_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'resnet'; choose from: .*mlp"):
        create_model("resnet")
    with pytest.raises(ValueError, match="argument 'width' is unknown"):
        create_model("mlp", width=3)
    with pytest.raises(ValueError, match="argument 'hidden' must be a whole number from 1 to 16,384, got 0"):
        create_model("mlp", hidden=0)


def test_registering_is_one_decorator(monkeypatch):
    import mnistlab.models as models

    monkeypatch.setattr(models, "_MODELS", dict(models._MODELS))

    @register_model
    def linear_probe() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))

    assert "linear_probe" in list_models()
    assert create_model("linear_probe")(torch.zeros(2, 1, 28, 28)).shape == (2, 10)

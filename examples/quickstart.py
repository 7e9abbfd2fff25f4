"""The classic MNIST script's whole flow, in mnistlab's library API.

Load the data, look at a digit, train the classic MLP, evaluate it from its checkpoint, then plot
the training curves and a grid of predictions. Everything goes into one folder:

    python examples/quickstart.py [FOLDER]      # default: runs/quickstart
"""

import sys
from pathlib import Path

import mnistlab

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")

# The data: 60,000 training and 10,000 test digits, uint8 tensors of shape (N, 28, 28).
data = mnistlab.load_mnist()
print(f"train {tuple(data.train.images.shape)}, test {tuple(data.test.images.shape)}")

# One digit as the network receives it: 784 numbers.
digit = mnistlab.pixel_view(data.train.images[0], int(data.train.labels[0]))

# Train the classic recipe: 784-128-10 MLP, Adam, batch 64, 5 epochs. The run folder `out` must be
# new (or an earlier run, with overwrite=True): train() writes it whole, so the pictures come after.
run = mnistlab.train(mnistlab.TrainConfig(epochs=5, seed=1, out=str(out)))
mnistlab.save_figure(digit, out / "digit.png")

# Evaluate from the checkpoint alone: the same accuracy as at the end of training.
checkpoint = mnistlab.load_checkpoint(out)
loss, accuracy = mnistlab.evaluate(checkpoint.model, data.test, checkpoint.mean, checkpoint.std)
print(f"test loss {loss:.4f}, test accuracy {accuracy:.2%} (recorded {run.final.test_acc:.2%})")

# The pictures: loss and accuracy per epoch, and five test digits of each class with their predictions.
mnistlab.save_figure(mnistlab.training_curves(run.history), out / "curves.png")
predictions = mnistlab.compute_predictions(checkpoint.model, data.test, checkpoint.mean, checkpoint.std)
mnistlab.save_figure(mnistlab.prediction_grid(predictions, seed=0), out / "predictions.png")
mnistlab.save_figure(mnistlab.mistakes_gallery(predictions), out / "mistakes.png")
print(f"pictures in {out}: digit.png, curves.png, predictions.png, mistakes.png")

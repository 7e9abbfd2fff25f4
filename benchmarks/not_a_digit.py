"""Does a model say "not a digit" to marks that are not digits, and only to them?

Digits: MNIST's 10,000 test digits (fed as they are, as `evaluate` reads them) and the 1,797 UCI
digits of scikit-learn's `load_digits`, drawn as 64×64 dark-on-light scans and read through
`mnistlab.predict`'s preprocessing (as benchmarks/outside_mnist.py draws them).

Non-digits, none of them seen in training:
- the training families of `mnistlab.outliers` (pairs, side by side, turned digits, scribbles, crosses,
  zigzags, spirals, hatching, random marks), made from MNIST's *test* digits with other seeds;
- the family held out of training entirely: hand-drawn-like symbols from wobbly strokes (+ = % # → * ☆);
- Fashion-MNIST's 10,000 test images, when Debian's dataset-fashion-mnist is installed, read through
  `predict`'s preprocessing as a photo of a garment would be.

For each model: the share of digits refused at each strictness (`--reject`), the share of non-digits
accepted as digits (by family, the marks together, and everything together), the AUROC of the rule's
score (digits against non-digits) and the share of non-digits
accepted when the threshold keeps 95% of MNIST's test digits (FPR at 95% recall); both again for the
max-softmax baseline of the same model, its calibrated confidence. An image in which `predict` finds no
digit at all (some of Fashion's faint garments) is answered as no digit: it counts as refused, and scores
below every answer. Each model uses its own "reject" record; a model without one gets thresholds fit here
as training fits them, on the last 5,000 training images (which such a model was trained on: its
thresholds are the more lenient for it). With --baseline, the same architecture trained without outlier
exposure is measured the same way.

    python benchmarks/not_a_digit.py runs/cnn-oe --baseline pretrained:cnn
"""

from __future__ import annotations

import argparse
import datetime
import platform

import numpy as np
import torch

import mnistlab
from mnistlab.data import load_mnist, load_test_split
from mnistlab.errors import DataError
from mnistlab.outliers import HELD_OUT_FAMILIES, TRAINING_FAMILIES, make_outliers
from mnistlab.rejection import STRICTNESS, fit_rule, rule_of, score, score_temperature_of

SEED = 10_007  # not a training seed: training draws its marks with the run's seed (1 for the shipped models)
PER_FAMILY = 1_000  # marks of each family
FASHION = "fashion-mnist"  # garments, not marks: reported apart from the marks as well as with them


def uci_images() -> tuple[list, np.ndarray]:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from outside_mnist import uci_digits

    return uci_digits()


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The probability that a digit scores above a non-digit."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(positive)), np.zeros(len(negative))], np.r_[positive, negative]))


def fpr_at_recall(positive: np.ndarray, negative: np.ndarray, recall: float = 0.95) -> float:
    threshold = np.quantile(positive, 1 - recall)
    return float((negative >= threshold).mean())


def materials(fashion: bool) -> dict[str, np.ndarray]:
    """The non-digit sets as uint8 (N, 28, 28) in MNIST's framing, by name; Fashion's as it is stored."""
    test = load_mnist(progress=False).test
    sets = {name: make_outliers(test.images, test.labels, PER_FAMILY, SEED + k, families=(name,)).numpy()
            for k, name in enumerate([*TRAINING_FAMILIES, *HELD_OUT_FAMILIES])}
    if fashion:
        try:
            sets[FASHION] = load_test_split(FASHION, progress=False)[0].images.numpy()
        except DataError as e:
            print(f"(Fashion-MNIST left out: {e})")
    return sets


def measure(model, mnist: np.ndarray, mnist_labels: np.ndarray, uci: list, uci_labels: np.ndarray,
            sets: dict[str, np.ndarray], held_out: np.ndarray) -> dict:
    def framed(pixels: np.ndarray) -> np.ndarray:  # already in MNIST's framing, as `evaluate` reads them
        return model.probabilities(pixels.astype(np.float32) / 255)

    def read(images, invert: str = "auto") -> np.ndarray:  # through `predict`'s preprocessing
        rows = mnistlab.predict(model, images, batch_size=512, reject="off", invert=invert, progress=False)
        return np.array([p.probabilities if p.probabilities else [np.nan] * 10 for p in rows])

    digits = {"MNIST test": (framed(mnist), mnist_labels), "UCI": (read(uci), uci_labels)}
    others = {name: (read(list(images), invert="no") if name == FASHION else framed(images))
              for name, images in sets.items()}
    rule = rule_of(model.config)
    recorded = rule.held_out_digits is not None
    return {"digits": digits, "others": others,
            "rule": rule if recorded else fit_rule(framed(held_out), model.temperature,
                                                   score_temperature_of(model.config)),
            "recorded": recorded}


def benchmark_score(probabilities: np.ndarray, rule=None) -> np.ndarray:
    """The rule's score (without a rule: the answer's confidence, its calibrated max-softmax); an image
    `predict` found no digit in (a NaN row: "no digit found", exit code 1) is answered as no digit at all, so
    it scores below every answer."""
    scores = rule.scores(probabilities) if rule else score(probabilities)
    return np.where(np.isfinite(probabilities).all(1), scores, -1.0)


def answered(rule, probabilities: np.ndarray, strictness: str) -> np.ndarray:
    """Which images are answered as digits at `strictness`: neither refused nor found empty."""
    return ~rule.refuses(probabilities, strictness) & np.isfinite(probabilities).all(1)


def report(name: str, result: dict) -> None:
    rule, digits, others = result["rule"], result["digits"], result["others"]
    source = "its record" if result["recorded"] else "the last 5,000 training images (no record)"
    print(f"\n### {name}: thresholds {', '.join(f'{k} {v:.4f}' for k, v in rule.thresholds.items())} from {source}\n")
    print("| digits | " + " | ".join(f"refused ({s})" for s in STRICTNESS[1:]) +
          " | accuracy, all | accuracy, answered (normal) |")
    print("|---|" + "---|" * (len(STRICTNESS) - 1) + "---|---|")
    for set_name, (p, labels) in digits.items():
        right = np.nan_to_num(p, nan=-1).argmax(1) == labels
        refused = {s: ~answered(rule, p, s) for s in STRICTNESS[1:]}
        print(f"| {set_name} | " + " | ".join(f"{r.mean():.2%}" for r in refused.values()) +
              f" | {right.mean():.2%} | {right[~refused['normal']].mean():.2%} |")
    print("\n| non-digits | " + " | ".join(f"accepted ({s})" for s in STRICTNESS[1:]) + " |")
    print("|---|" + "---|" * (len(STRICTNESS) - 1))
    marks = np.concatenate([p for set_name, p in others.items() if set_name != FASHION])
    for set_name, p in [*others.items(), ("all marks (Fashion left out)", marks),
                        ("all non-digits", np.concatenate(list(others.values())))]:
        print(f"| {set_name} | " + " | ".join(f"{answered(rule, p, s).mean():.1%}" for s in STRICTNESS[1:]) + " |")
    every_other = np.concatenate(list(others.values()))
    for scored_by, scoring in (("the rule's score", rule), ("the confidence (calibrated max-softmax)", None)):
        negative = benchmark_score(every_other, scoring)
        for set_name, (p, _) in digits.items():
            positive = benchmark_score(p, scoring)
            print(f"\n{set_name} against all non-digits, by {scored_by}: AUROC {auroc(positive, negative):.4f}, "
                  f"FPR at 95% recall {fpr_at_recall(positive, negative):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the model to measure: a run folder or pretrained:NAME")
    parser.add_argument("--baseline", help="the same architecture trained without outlier exposure")
    parser.add_argument("--no-fashion", action="store_true", help="leave Fashion-MNIST's test images out")
    args = parser.parse_args()
    data = load_mnist(progress=False)
    test, held_out = data.test, data.train.images[-5_000:].numpy()
    uci, uci_labels = uci_images()
    sets = materials(not args.no_fashion)
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"{datetime.date.today()}; non-digits: {', '.join(f'{k} {len(v):,}' for k, v in sets.items())}")
    for run in [args.run, *([args.baseline] if args.baseline else [])]:
        model = mnistlab.load_model(run, device="cpu")
        report(run, measure(model, test.images.numpy(), test.labels.numpy(), uci, uci_labels, sets, held_out))


if __name__ == "__main__":
    main()

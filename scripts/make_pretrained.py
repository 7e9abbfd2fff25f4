"""Re-create the pretrained weights in src/mnistlab/pretrained/ and rewrite their SHA-256 pins.

Each model is trained by the project's own command (`mnistlab train`, exactly the line below; its
config.json records that line, the seed, the versions and the data's SHA-256), the `cnn` then trained
further from those weights by a second line (`--init`, with outlier exposure), then the files that
ship are copied into the package, each folder replaced whole, and the pins in
src/mnistlab/pretrained.py are rewritten to the new files' digests. `make pretrained` runs this.

    python scripts/make_pretrained.py                       # train all three (~13 min on 2 quiet cores)
    python scripts/make_pretrained.py cnn_small mlp         # some of them
    python scripts/make_pretrained.py --from runs/pretrained  # install runs already trained by these commands

Each run holds the last 5,000 training images out and calibrates its confidence on them, as every
`mnistlab train` does (`--calibration-size`'s default), so the folders carry their "calibration".
(The weights shipped before that hold-out were calibrated afterwards by scripts/calibrate_pretrained.py.)

Nothing is installed unless every asked-for model trained, and a run that was not made by its command
here (another model, recipe or seed) is refused.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "mnistlab"
PINS_MODULE = PACKAGE / "pretrained.py"
TARGET = PACKAGE / "pretrained"

# name → the `mnistlab train` flags that make it (besides --out); seed 1, each model's own recipe.
COMMANDS = {
    "cnn": ["--model", "cnn", "--recipe", "best", "--seed", "1"],
    "cnn_small": ["--model", "cnn_small", "--recipe", "fast", "--seed", "1"],
    "mlp": ["--model", "mlp", "--recipe", "classic", "--seed", "1"],
}
# name → the flags of a second `mnistlab train` that starts from the first's weights (`--init`, added after them).
# The cnn learns "not a digit" so: outlier exposure from the start cost it accuracy (docs/benchmarks.md, "Not a digit").
FURTHER = {
    "cnn": ["--model", "cnn", "--epochs", "1", "--lr", "5e-4", "--schedule", "cosine", "--outlier-exposure", "0.5",
            "--seed", "3"],
}
COMMON_FLAGS = ["--no-progress", "--verbose"]
# What ships: the checkpoint, its metrics and the training curves. report.html is left out (it embeds
# every figure: most of a megabyte); `mnistlab report pretrained:NAME` writes it into the current folder.
SHIPPED = ("model.safetensors", "config.json", "metrics.json", "curves.png")
MAX_FOLDER_BYTES = 1 << 20  # each model ships in the wheel, so each stays within about 1 MB


def train(name: str, work: Path) -> Path:
    """Train `name` into work/name with its command (and the one after it, if any); return the run folder."""
    out = work / name
    stages = [COMMANDS[name]] + ([[*FURTHER[name], "--init", str(work / f"{name}-first")]] if name in FURTHER else [])
    for number, flags in enumerate(stages, 1):
        into = out if number == len(stages) else work / f"{name}-first"
        command = [str(Path(sys.executable).parent / "mnistlab"), "train", *flags, *COMMON_FLAGS, "--out", str(into)]
        print(f"$ {shlex.join(command)}", flush=True)
        subprocess.run(command, check=True)
    return out


def check_run(name: str, run: Path) -> None:
    """The run in `run` was made by `name`'s (last) command, and its files fit in the package."""
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    recorded = shlex.split(config.get("command", ""))
    flags = recorded[2:] if recorded[:2] == ["mnistlab", "train"] else []
    expected = FURTHER.get(name, COMMANDS[name])
    if flags[:len(expected)] != expected:
        sys.exit(f"{run}: was not made by `mnistlab train {shlex.join(expected)} ...` "
                 f"(its config.json records {config.get('command')!r})")
    size = sum((run / file).stat().st_size for file in SHIPPED)
    if size > MAX_FOLDER_BYTES:
        sys.exit(f"{run}: its shipped files take {size:,} bytes, more than {MAX_FOLDER_BYTES:,}")


def install(name: str, run: Path) -> dict[str, str]:
    """Copy the shipped files of `run` into the package's folder for `name`, replaced whole; their SHA-256."""
    sys.path.insert(0, str(PACKAGE.parent))
    from mnistlab.pretrained import file_sha256

    TARGET.mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=TARGET, prefix=f".{name}.tmp-"))
    staging.chmod(0o755)  # mkdtemp's folder is private; an installed package's is readable by all
    for file in SHIPPED:
        shutil.copyfile(run / file, staging / file)
    old = TARGET / name
    if old.exists():
        shutil.rmtree(old)
    staging.rename(old)
    return {file: file_sha256(old / file) for file in SHIPPED}


def write_pins(pins: dict[str, dict[str, str]]) -> None:
    """Rewrite the block between `# BEGIN PINS` and `# END PINS` in pretrained.py."""
    lines = ["PINS: dict[str, dict[str, str]] = {"]
    for name, files in pins.items():
        lines.append(f"    {name!r}: {{".replace("'", '"'))
        lines += [f'        "{file}": "{digest}",' for file, digest in files.items()]
        lines.append("    },")
    lines.append("}")
    text = PINS_MODULE.read_text(encoding="utf-8")
    block = re.compile(r"(# BEGIN PINS\n).*?(# END PINS\n)", re.S)
    if not block.search(text):
        sys.exit(f"{PINS_MODULE}: no '# BEGIN PINS' ... '# END PINS' block")
    PINS_MODULE.write_text(block.sub(lambda m: m[1] + "\n".join(lines) + "\n" + m[2], text), encoding="utf-8")


def current_pins() -> dict[str, dict[str, str]]:
    sys.path.insert(0, str(PACKAGE.parent))
    from mnistlab.pretrained import PINS

    return dict(PINS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"models to re-create: {', '.join(COMMANDS)} (default: all)")
    parser.add_argument("--from", dest="source", metavar="DIR", type=Path,
                        help="install DIR/NAME, runs already trained by the commands above, instead of training")
    parser.add_argument("--work", metavar="DIR", type=Path, default=ROOT / "build" / "pretrained-runs",
                        help="where the runs are trained (default: build/pretrained-runs, replaced)")
    args = parser.parse_args()
    names = args.names or list(COMMANDS)
    unknown = [name for name in names if name not in COMMANDS]
    if unknown:
        parser.error(f"no pretrained model named {', '.join(unknown)}; choose from {', '.join(COMMANDS)}")
    if args.source:
        runs = {name: args.source / name for name in names}
    else:
        for folder in [args.work / name for name in names] + [args.work / f"{name}-first" for name in names]:
            if folder.exists():
                shutil.rmtree(folder)
        runs = {name: train(name, args.work) for name in names}
    for name, run in runs.items():
        check_run(name, run)
    pins = current_pins()
    for name, run in runs.items():
        pins[name] = install(name, run)
        print(f"installed {TARGET / name} from {run}")
    write_pins({name: pins[name] for name in COMMANDS if name in pins})
    print(f"pinned in {PINS_MODULE}")


if __name__ == "__main__":
    main()

"""The public API (`mnistlab.__all__`) and the layers that the import contracts in pyproject.toml enforce."""

import ast
import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mnistlab
import mnistlab.errors as errors

PACKAGE = Path(mnistlab.__file__).parent


@pytest.mark.slow
def test_import_mnistlab_loads_no_torch_and_every_public_name_resolves():
    code = ("import sys, mnistlab\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'import mnistlab loaded more'\n"
            "missing = [n for n in mnistlab.__all__ if getattr(mnistlab, n, None) is None]\n"
            "assert not missing, missing\n"
            "from mnistlab import *  # noqa: F403\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        mnistlab.nonsense  # noqa: B018


def test_the_names_type_checkers_see_are_the_names_exported():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    [block] = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    seen = {alias.asname or alias.name for node in block.body for alias in node.names}
    assert seen | {"__version__"} == set(mnistlab.__all__)
    assert len(mnistlab.__all__) == len(set(mnistlab.__all__))
    assert (PACKAGE / "py.typed").is_file()


def test_every_error_class_lives_in_errors_and_is_exported():
    classes = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, Exception) and value.__module__ == errors.__name__}
    assert "CheckpointError" in classes and "ImageError" in classes
    assert classes <= set(mnistlab.__all__)
    for path in PACKAGE.rglob("*.py"):  # no error class is declared anywhere else (a private one may be)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error") and path.name != "errors.py":
                assert node.name.startswith("_"), f"{path.name} declares {node.name}: it belongs in errors.py"


def test_one_predict_serves_every_kind_of_model():
    from mnistlab.checkpoints import Checkpoint
    from mnistlab.classifier import Classifier
    from mnistlab.onnx_model import OnnxModel

    for kind in (Classifier, Checkpoint, OnnxModel):
        assert not hasattr(kind, "predict"), f"{kind.__name__}.predict: use mnistlab.predict(model, images)"


def test_no_module_imports_the_package_root():
    """A module that imported `mnistlab` itself would close a cycle through `__init__`'s table of every name."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        depth = len(path.relative_to(PACKAGE).parts)  # 1 for mnistlab/x.py, 2 for mnistlab/cli/x.py
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == depth and node.module is None:
                names = [a.name for a in node.names if not (PACKAGE / a.name).is_dir()
                         and not (PACKAGE / f"{a.name}.py").is_file()]  # a submodule is fine
                assert not names, f"{path.name} imports {names} from the package root: import from their module"


@pytest.mark.skipif(shutil.which("lint-imports", path=str(Path(sys.executable).parent)) is None,
                    reason="import-linter is not installed (pip install 'mnistlab[test]')")
def test_the_import_contracts_hold_and_can_fail(tmp_path):
    lint = str(Path(sys.executable).parent / "lint-imports")
    root = Path(__file__).parents[1]
    result = subprocess.run([lint, "--no-cache"], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]
    # A deferred import from a leaf up to the loader is both a layer breach and a cycle.
    source = tmp_path / "src"
    shutil.copytree(PACKAGE, source / "mnistlab", ignore=shutil.ignore_patterns("__pycache__", "bundled"))
    leaf = source / "mnistlab" / "classifier.py"
    upward = "\n\ndef _upward():\n    from .model_loading import load_model\n\n    return load_model\n"
    leaf.write_text(leaf.read_text() + upward)
    shutil.copy(root / "pyproject.toml", tmp_path)
    result = subprocess.run([lint, "--no-cache"], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(source), "PATH": str(Path(sys.executable).parent)})
    assert result.returncode == 1, result.stdout[-3000:]
    assert "mnistlab.classifier is not allowed to import mnistlab.model_loading" in result.stdout
    assert "No cycles are allowed in mnistlab" in result.stdout

"""`mnistlab export`: a run as one ONNX or TorchScript file that runs without mnistlab."""

from __future__ import annotations

import argparse

from ..config import EXPORT_FORMATS, EXPORT_INPUTS, ExportConfig, default
from ._args import output_path
from ._output import existed, say, wrote


def add_commands(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser(
        "export", help="write a run's model as one ONNX or TorchScript file for deployment",
        description="Export a run's model as one file that takes raw 28×28 pixels (N, 28, 28), white on "
                    "black and placed as the run's dataset places its images, and returns the class "
                    "probabilities (N, 10): the normalisation and the softmax are inside. Its metadata names "
                    "the classes and the input convention. "
                    "ONNX needs the export extra: pip install 'mnistlab[export]'.")
    export.add_argument("run", metavar="RUN", help="the run folder to export, or pretrained:NAME (`mnistlab models`)")
    export.add_argument("--format", choices=EXPORT_FORMATS, default=default(ExportConfig, "format"),
                        help="onnx (for onnxruntime, no PyTorch) or torchscript (torch.jit.load) "
                             f"(default: {default(ExportConfig, 'format')})")
    export.add_argument("--input", choices=EXPORT_INPUTS, default=default(ExportConfig, "input"),
                        help="ONNX input: uint8 pixels 0-255 or float 0-1; TorchScript takes both "
                             f"(default: {default(ExportConfig, 'input')})")
    export.add_argument("--out", type=output_path, metavar="FILE",
                        help="file to write (default: RUN/model.onnx or RUN/model.pt; for pretrained:NAME, "
                             "runs/pretrained-NAME/model.onnx or .pt)")
    export.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..export import export
    from ..pretrained import outputs_folder

    default = outputs_folder(args.run) / EXPORT_FORMATS[args.format]
    replaced = args.out is None and existed(default)
    say(f"exporting {args.run} as {args.format}...")
    out = export(args.run, ExportConfig(format=args.format, input=args.input, out=args.out))
    wrote(out, replaced=replaced)
    return 0

"""Every error mnistlab raises, and how text from outside (a file name, a library's message) is shown in
one error line.

`MnistlabError` is the base of every problem reported to a user as one line, without a traceback; its
subclasses say which part of mnistlab met it. This module imports only `re` and `stat`, so the command
line can catch them all without importing torch.
"""

import re
import stat

# What a path that is not a regular file is, by its `stat.S_IFMT` type, for messages.
FILE_TYPE_NAMES = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
                   stat.S_IFCHR: "a device", stat.S_IFBLK: "a device", stat.S_IFLNK: "a symbolic link"}


class MnistlabError(Exception):
    """A user-facing problem: a bad file, value or device. The message names what and why."""


class OutputError(MnistlabError, OSError):
    """An output cannot be written where it was asked for: a bad path, no permission, a full disk."""


class RunExistsError(OutputError):
    """The output folder already holds a run, and replacing it was not asked for.

    The message names the library's argument (`overwrite=True`); the command line words it for its flag
    (`for_flag("--overwrite")`), so that each interface speaks its own language.
    """

    def __init__(self, target: object, argument: str = "overwrite=True"):
        self.target = target
        super().__init__(f"{target}: already holds a run; pass {argument} to replace it, or choose another folder")

    def for_flag(self, flag: str) -> OutputError:
        """The same error, as the command line says it."""
        return OutputError(f"{self.target}: already holds a run; use {flag} to replace it, or choose another folder")


# --- inputs: data, images, devices, settings -------------------------------------------------------------------

class DataError(MnistlabError, ValueError):
    """A dataset file is missing, truncated, corrupt or inconsistent, or cannot be fetched; the message names it."""


class ImageError(MnistlabError, ValueError):
    """An image file cannot be used: missing, unreadable, not an image, truncated or too large."""


class NoDigitError(ImageError):
    """The image is blank, or its marks are too faint or too small to be a digit."""


class LabelledError(MnistlabError, ValueError):
    """A labelled-images folder cannot be read or written."""


class DeviceError(MnistlabError, ValueError):
    """The requested device does not exist on this machine."""


class ModelError(MnistlabError, ValueError):
    """An unknown model, an argument of the wrong type or range, or a model plugin that fails to load."""


# --- records: files mnistlab wrote, read back -------------------------------------------------------------------

class SchemaError(ValueError):
    """A file or value that is not what its schema says; the message does not name the file."""


class MissingFileError(SchemaError):
    """The file does not exist (callers often say more: which folder lacks it)."""


class FieldError(SchemaError):
    """One field is missing or of the wrong type or range."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem  # e.g. "normalization.std", "must be a finite number > 0, got 0"
        super().__init__(f"field '{field}' {problem}" if field else problem)


class ForeignRecordError(SchemaError):
    """A record without the format mark it must carry: another tool's file, or not a record at all."""


class NotRegularFileError(OSError):
    """`_io.open_regular_file` met a folder, FIFO, socket, device (or a symbolic link it was told not to follow);
    `file_type` is its `stat.S_IFMT` value."""

    def __init__(self, file_type: int):
        self.file_type = file_type
        self.kind = FILE_TYPE_NAMES.get(file_type, "an unknown kind of file")  # "a FIFO"
        super().__init__(f"not a regular file ({self.kind})")


class CheckpointError(MnistlabError, ValueError):
    """A checkpoint is missing, truncated, foreign, or its weights do not fit its config."""


class OnnxModelError(MnistlabError, ValueError):
    """An ONNX file is missing, unreadable, too large, not an ONNX model, or not one that mnistlab exported."""


class PretrainedError(MnistlabError, ValueError):
    """An unknown `pretrained:` name, or a pretrained folder whose files are not the pinned ones."""


class MetricsError(MnistlabError, ValueError):
    """A run's metrics.json is missing or malformed; the message names the file and the field."""


# --- work: training, pictures, export, serving ------------------------------------------------------------------

class TrainingError(MnistlabError, RuntimeError):
    """Training cannot go on: the loss or the weights stopped being finite numbers."""


class PlotError(MnistlabError, ValueError):
    """A figure cannot be drawn or shown (no display for --show, an unusable input)."""


class PictureError(MnistlabError):
    """A picture of a finished run could not be drawn or written; the run itself is saved (`run`, a `Run`)."""

    def __init__(self, message: str, run: object = None):
        super().__init__(message)
        self.run = run


class ExportError(MnistlabError, ValueError):
    """The model cannot be exported: an exporter's failure, or a missing package."""


class FinetuneError(MnistlabError, ValueError):
    """The images folder, the base model or a setting cannot be fine-tuned with (`mnistlab finetune`)."""


class ServeError(MnistlabError, ValueError):
    """The server cannot start: an address that cannot be bound, a bad setting."""


class PortInUseError(ServeError):
    """The port the server is to listen on is taken by another program."""


class ApiError(Exception):
    """A request the API refuses: answered as JSON `{"detail": message}` with `status`."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


# --- outside text in an error line ------------------------------------------------------------------------------

def escape(text: str) -> str:
    """`text` with what a terminal would act on or hide made visible, as Python writes it in a string:
    a newline as \\n, a tab as \\t, ESC as \\x1b, a byte that is not UTF-8 (from a file name) as
    \\xff, an invisible format character as \\u202e; a backslash as \\\\. Printable text is unchanged."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(escape_char(c) for c in text)


def one_line(text: object, limit: int | None = 300, *, fold: bool = True) -> str:
    """`text` as (part of) one error line: only what a terminal would act on is escaped (ESC, a newline),
    as `escape` does, and backslashes are kept (the text may hold names that `escape` wrote already).

    Args:
        text: a library's exception, a tensor's name, or a whole message (`str()` of it is used).
        limit: the most characters kept (None: all).
        fold: fold runs of white space into one space first, so that a library's multi-line message
            reads as one sentence; False for a message of mnistlab's own, whose names are escaped.
    """
    text = " ".join(str(text).split()) if fold else str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else escape_char(c) for c in text)
    return text if limit is None else text[:limit]


def escape_char(c: str) -> str:
    """One character as `escape` writes it."""
    if c == "\\":
        return "\\\\"
    if c.isprintable():
        return c
    if "\udc80" <= c <= "\udcff":  # an undecodable byte of a file name (Python's surrogateescape)
        return f"\\x{ord(c) - 0xDC00:02x}"
    return repr(c)[1:-1]  # \n, \t, \x1b, \u202e...


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_surrogates(text: str) -> str:
    """`text` with each lone surrogate (how Python holds a byte of a file name that is not UTF-8) written as
    `escape` writes it (`\\xff`), the rest as it is: no UTF-8 file, JSON reader or terminal takes a lone surrogate."""
    return _LONE_SURROGATE.sub(lambda match: escape_char(match.group()), text)

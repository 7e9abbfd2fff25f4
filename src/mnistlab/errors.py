"""The base of every error mnistlab reports to a user as one line (no traceback), and how text from
outside (a file name) is shown in such a line.

It lives in a module of its own, free of torch, so the CLI can catch it without importing torch.
"""


class MnistlabError(Exception):
    """A user-facing problem: a bad file, value or device. The message names what and why."""


class OutputError(MnistlabError, OSError):
    """An output cannot be written where it was asked for: a bad path, no permission, a full disk."""


class PretrainedError(MnistlabError, ValueError):
    """An unknown `pretrained:` name, or a pretrained folder whose files are not the pinned ones."""


def escape(text: str) -> str:
    """`text` with what a terminal would act on or hide made visible, as Python writes it in a string:
    a newline as \\n, a tab as \\t, ESC as \\x1b, a byte that is not UTF-8 (from a file name) as
    \\xff, an invisible format character as \\u202e; a backslash as \\\\. Printable text is unchanged."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(escape_char(c) for c in text)


def one_line(message: str) -> str:
    """An error message as one line: only what a terminal would act on is escaped (a file name's newline, ESC)."""
    return message if message.isprintable() else "".join(c if c.isprintable() else escape_char(c) for c in message)


def escape_char(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if c.isprintable():
        return c
    if "\udc80" <= c <= "\udcff":  # an undecodable byte of a file name (Python's surrogateescape)
        return f"\\x{ord(c) - 0xDC00:02x}"
    return repr(c)[1:-1]  # \n, \t, \x1b, \u202e...

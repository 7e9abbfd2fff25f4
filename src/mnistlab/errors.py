"""The base of every error mnistlab reports to a user as one line (no traceback).

It lives in a module of its own, free of torch, so the CLI can catch it without importing torch.
"""


class MnistlabError(Exception):
    """A user-facing problem: a bad file, value or device. The message names what and why."""


class OutputError(MnistlabError, OSError):
    """An output cannot be written where it was asked for: a bad path, no permission, a full disk."""

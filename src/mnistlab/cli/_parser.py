"""`CommandParser`: argparse's parser, with usage errors that put the line that matters first."""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Iterable
from typing import NoReturn


def closest(word: str, names: Iterable[str]) -> str | None:
    """The name a mistyped `word` most likely meant ("trian" → "train"), or None if none is close."""
    matches = difflib.get_close_matches(word, list(names), n=1)
    return matches[0] if matches else None


class CommandParser(argparse.ArgumentParser):
    """argparse's parser, with usage errors in two lines: the error that matters, then a short hint.

    argparse prints the whole usage first, which buries the one line the user needs; the hint is
    the closest valid name ("did you mean 'mnistlab train'?") or where the usage is (`--help`).
    Sub-commands are made with the same class, so each reports under its own name (`mnistlab train`).
    """

    def error(self, message: str) -> NoReturn:
        self.usage_error(message, self.__dict__.pop("_did_you_mean", None))

    def usage_error(self, message: str, did_you_mean: str | None = None) -> NoReturn:
        """Exit 2 with `message`, then `did you mean '...'?` if given, else a pointer to this command's --help."""
        hint = f"did you mean '{did_you_mean}'?" if did_you_mean else f"see '{self.prog} --help'"
        self.exit(2, f"{self.prog}: error: {message}\n{hint}\n")

    def config_error(self, error: ValueError, did_you_mean: str | None = None) -> NoReturn:
        """A config's error as its flag's: "train_limit: must be ..." → "argument --train-limit: must be ..."."""
        field, separator, rest = str(error).partition(": ")
        flags = {action.dest: action.option_strings[-1] if action.option_strings else action.metavar or action.dest
                 for action in self._actions}
        self.usage_error(f"argument {flags[field]}: {rest}" if separator and field in flags else str(error),
                         did_you_mean)

    def _check_value(self, action: argparse.Action, value: object) -> None:
        """argparse's check of a value against `choices`; a near miss also leaves its correction for `error`."""
        if action.choices is not None and value not in action.choices and isinstance(value, str):
            match = closest(value, [str(choice) for choice in action.choices])
            if match:
                self._did_you_mean = f"{action.option_strings[-1]} {match}" if action.option_strings \
                    else f"{self.prog} {match}"
        super()._check_value(action, value)

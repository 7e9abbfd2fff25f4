"""mnistlab's version, as the installed package's metadata gives it (a leaf: `import mnistlab` reads it)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mnistlab")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

"""Choosing the device: `auto` means CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch

from .config import DEVICES as DEVICE_CHOICES
from .errors import DeviceError


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def resolve_device(name: str = "auto") -> torch.device:
    """Turn 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps' into an available `torch.device`."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    kind, _, index = name.partition(":")
    if kind == "cpu" and not index:
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' was requested but CUDA is not available on this machine")
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise DeviceError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
        return torch.device(name)
    if kind == "mps" and not index:
        if not _mps_available():
            raise DeviceError("device 'mps' was requested but Apple MPS is not available on this machine")
        return torch.device("mps")
    raise DeviceError(f"unknown device {name!r}; choose from {', '.join(DEVICE_CHOICES)} or cuda:N")

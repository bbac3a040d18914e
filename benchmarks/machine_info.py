"""What every benchmark records about where it ran: the CPU (or GPU) model and thread count."""

from __future__ import annotations

import platform

import torch


def describe_machine(device: torch.device | None = None) -> str:
    """The GPU's name for a CUDA ``device``, else the CPU's model name and torch's threads."""
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            name = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"{name}, {torch.get_num_threads()} threads"

"""What every benchmark records about where it ran: the CPU (or GPU) model and thread count.

Run as a script, it prints the whole environment as one JSON line (``--device cuda`` fails
where torch sees no GPU):

    python benchmarks/machine_info.py --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version

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


def main() -> None:
    """Print Python's, torch's, lenetish's and the machine's particulars as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="the device to describe, e.g. cuda")
    device = torch.device(parser.parse_args().device)
    import lenetish

    packages: dict[str, str | None] = {}
    for name in ("torchvision", "numpy", "safetensors", "pytest", "hypothesis"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    cuda = torch.cuda.is_available()
    row = {
        "benchmark": "environment",
        "machine": describe_machine(device),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "capability": list(torch.cuda.get_device_capability(device)) if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "bf16": torch.cuda.is_bf16_supported() if cuda else None,
        "lenetish": lenetish.__version__,
        "lenetish_path": os.path.dirname(lenetish.__file__),
        "packages": packages,
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()

"""A zoo of user-style MNIST networks (not lenetish's own) that the model-zoo tests run everywhere.

Each is written the way a user would write it: the blog post's class (``.view``), the
pytorch/examples MNIST network (``torch.flatten``, dropout, log_softmax), a logits CNN with
BatchNorm, torchvision's ResNet-18 with a 1-channel stem, an MLP that flattens by itself,
networks returning a tuple or a dict, one with float64 buffers and one with a forward hook.

Run as ``torchrun ... -m tests.zoo_models OUT SPEC [SPEC ...]`` it trains each model
data-parallel for one epoch on synthetic digits (SPEC is a name, or ``NAME@channels_last`` for
``channels_last=True``) and writes, per process, ``OUT/{SPEC}-rank{R}.safetensors`` and
``OUT/{SPEC}-history{R}.json``, or ``OUT/{SPEC}-error{R}.json`` (the error's type and message)
if the fit raised.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tests.blog_net import Net as BlogNet


class ExamplesNet(nn.Module):
    """pytorch/examples' MNIST network: two convs, max-pool, dropout, two fcs, log_softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        """Log-probabilities ``(N, 10)`` of ``(N, 1, 28, 28)``."""
        x = F.relu(self.conv1(x))  # (N, 32, 26, 26)
        x = F.relu(self.conv2(x))  # (N, 64, 24, 24)
        x = F.max_pool2d(x, 2)  # (N, 64, 12, 12)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)  # (N, 9216)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


class BatchNormCNN(nn.Module):
    """A logits CNN with BatchNorm after each convolution (``nn.Sequential``, ``nn.Flatten``)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 16, 14, 14)
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (N, 32, 7, 7)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 7 * 7, 10))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, 10)``."""
        return self.head(self.features(x))


def resnet18_mnist() -> nn.Module:
    """ResNet-18 of torchvision for 10 classes with a 1-channel 3x3 stem and no max-pool."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    model.maxpool = nn.Identity()
    return model


class MLP(nn.Module):
    """Two hidden layers on the flattened image; flattens ``(N, 1, 28, 28)`` itself."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, 10)``."""
        x = x.view(x.shape[0], -1)  # (N, 784)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class _SmallCNN(nn.Module):
    """One conv, pool and a linear head (the base of the output-shape and buffer variants)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 14 * 14, 10)

    def features(self, x: Tensor) -> Tensor:
        """Flattened pooled features ``(N, 1568)``."""
        return torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1)


class TupleNet(_SmallCNN):
    """Returns ``(logits, features)``, as feature-extracting user models often do."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``(N, 10)`` and features ``(N, 1568)``."""
        features = self.features(x)
        return self.fc(features), features


class DictNet(_SmallCNN):
    """Returns ``{"logits": ..., "features": ...}``."""

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """Logits ``(N, 10)`` and features ``(N, 1568)`` by name."""
        features = self.features(x)
        return {"logits": self.fc(features), "features": features}


class Float64BufferNet(_SmallCNN):
    """Normalises with float64 buffers (0-d mean and std, a float64 class prior) itself."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(0.1307, dtype=torch.float64))
        self.register_buffer("std", torch.tensor(0.3081, dtype=torch.float64))
        self.register_buffer("log_prior", torch.full((10,), -2.302585, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(N, 10)`` (float32: 0-d buffers do not promote a batch)."""
        x = (x - self.mean) / self.std
        return self.fc(self.features(x)) + self.log_prior.to(x.dtype)


class HookedNet(_SmallCNN):
    """Log-probabilities; a forward hook on ``fc`` keeps its latest output in ``activations``."""

    def __init__(self) -> None:
        super().__init__()
        self.activations: dict[str, Tensor] = {}
        store = self.activations

        def keep(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            store["fc"] = output.detach()

        self.fc.register_forward_hook(keep)

    def forward(self, x: Tensor) -> Tensor:
        """Log-probabilities ``(N, 10)``."""
        return F.log_softmax(self.fc(self.features(x)), dim=1)


#: Every model of the zoo by name: a factory building it (each call a fresh, seeded network).
ZOO: dict[str, Callable[[], nn.Module]] = {
    "blog": BlogNet,
    "examples": ExamplesNet,
    "batchnorm": BatchNormCNN,
    "resnet18": resnet18_mnist,
    "mlp": MLP,
    "tuple": TupleNet,
    "dict": DictNet,
    "float64_buffer": Float64BufferNet,
    "hooked": HookedNet,
}


def build(name: str, *, seed: int = 0) -> nn.Module:
    """A fresh ``name`` network, initialised under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ZOO[name]()


def main() -> None:
    """Train each named model data-parallel for one epoch; write weights, History or error."""
    from lenetish import Trainer, make_loaders, save_weights
    from lenetish.distributed import exit_together
    from tests.conftest import write_fake_mnist

    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("specs", nargs="+", help="NAME, or NAME@channels_last for True")
    args = parser.parse_args()
    rank = int(os.environ.get("RANK", "0"))
    data = write_fake_mnist(args.out / f"data{rank}", num_train=96, num_test=8)
    loaders = make_loaders(data, batch_size=16, val_size=32, device="cpu", download=False)
    for spec in args.specs:
        name, _, option = spec.partition("@")
        layout: bool | str = True if option == "channels_last" else "auto"
        trainer = Trainer(
            build(name), epochs=1, device="cpu", seed=0, channels_last=layout, progress=False
        )
        try:
            history = trainer.fit(loaders.train, loaders.val)
        except Exception as error:  # recorded for the test, which names what it expects
            failure = {"type": type(error).__name__, "message": str(error)}
            (args.out / f"{spec}-error{rank}.json").write_text(json.dumps(failure))
            continue
        save_weights(trainer.module, args.out / f"{spec}-rank{rank}.safetensors")
        history.to_json(args.out / f"{spec}-history{rank}.json")
    exit_together(0)


if __name__ == "__main__":
    main()

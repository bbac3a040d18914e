"""What logit_digits relies on when it embeds lenetish: ``python -m logit_digits.embedding``.

Each function is one contract, written with no ``cast`` or ``type: ignore`` so that
``mypy --strict`` checks lenetish's types as the project uses them:

* the dataset a fit trained on travels with the model (``predict`` needs no ``dataset=``);
* ``configure_optimizers`` may return ``(optimizer, scheduler)``, and ``scheduler="onecycle"``
  peaks at the optimizer's own learning rate;
* an ONNX export carries the output kind and the normalisation a consumer needs;
* ``ModelStack(SmallConvNet, k).unstack()``, ``evaluate(stack)`` and ``load_weights`` keep
  the project's own types, and ``make_loaders`` without transforms gives ``TensorLoader`` splits.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, StepLR

from lenetish import (
    ModelStack,
    TensorLoader,
    Trainer,
    evaluate,
    export_model,
    load_weights,
    make_loaders,
    predict,
    save_weights,
)
from lenetish.catalog import DATASETS
from logit_digits.model import SmallConvNet


def _loader(count: int, *, seed: int) -> TensorLoader:
    """Noisy patterns recorded as Fashion-MNIST data (as ``make_loaders`` would record it)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (count,), generator=generator)
    images = torch.randn(count, 1, 28, 28, generator=generator) + labels.view(-1, 1, 1, 1) / 5
    return TensorLoader(images, labels, batch_size=32, info=DATASETS["fashion-mnist"])


class SteppedTrainer(Trainer):
    """A Trainer whose optimizer and schedule the project builds itself, as in Lightning."""

    def configure_optimizers(self) -> tuple[Optimizer, LRScheduler]:
        """SGD at 0.05, halved after every epoch."""
        optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9)
        return optimizer, StepLR(optimizer, step_size=1, gamma=0.5)


def dataset_travels_with_the_model() -> str:
    """After a fit on Fashion-MNIST data, predict names Fashion-MNIST's classes."""
    model = SmallConvNet()
    Trainer(model, epochs=1, device="cpu", progress=False).fit(_loader(64, seed=0))
    classes = predict(model, torch.zeros(1, 28, 28)).classes
    assert classes is not None and classes[0] == "T-shirt/top", classes
    return classes[0]


def optimizer_with_its_schedule() -> list[float]:
    """The returned StepLR halves the lr after each epoch."""
    trainer = SteppedTrainer(SmallConvNet(), epochs=2, device="cpu", progress=False)
    rates = [row["lr"] for row in trainer.fit(_loader(64, seed=1))]
    assert rates == [0.05, 0.025], rates
    return rates


def onnx_says_what_it_returns(folder: Path) -> str | None:
    """SmallConvNet returns logits: the ONNX output and metadata say so (needs onnx)."""
    try:
        import onnx
    except ImportError:
        return None
    path = export_model(SmallConvNet().eval(), folder / "small.onnx", format="onnx")
    proto = onnx.load(str(path))
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert proto.graph.output[0].name == "logits" == metadata["lenetish.output"]
    return str(metadata["lenetish.mean"])


def types_are_the_projects_own(folder: Path) -> float:
    """Stacks, their scores and loaded weights keep SmallConvNet's type, no cast needed."""
    stack = ModelStack(SmallConvNet, 2)
    Trainer(stack, epochs=1, device="cpu", progress=False).fit(_loader(64, seed=2))
    first: SmallConvNet = stack.unstack()[0]
    scores = evaluate(stack, _loader(32, seed=3))
    path = folder / "first.safetensors"
    save_weights(first, path)
    again: SmallConvNet = load_weights(SmallConvNet(), path)
    assert torch.equal(again.head.weight, first.head.weight)
    return scores.member_accuracy[0]


def loaders_are_typed() -> int:
    """make_loaders without transforms gives TensorLoaders: their attributes type-check."""
    loaders = make_loaders(subset=200, val_size=50, batch_size=50)
    assert loaders.val is not None
    return loaders.train.num_samples + loaders.val.num_samples


def main() -> int:
    """Run every contract; print one line each."""
    with tempfile.TemporaryDirectory() as folder:
        print("dataset:", dataset_travels_with_the_model())
        print("schedule:", optimizer_with_its_schedule())
        print("onnx mean:", onnx_says_what_it_returns(Path(folder)))
        print("member accuracy:", types_are_the_projects_own(Path(folder)))
        print("training samples:", loaders_are_typed())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

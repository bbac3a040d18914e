"""Tests of lenetish.training._streams: Keras' steps_per_epoch and Lightning's overfit_batches."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lenetish import (
    BatchOutput,
    Callback,
    CheckpointError,
    InvalidArgumentError,
    MNISTConvNet,
    Trainer,
    TrainState,
    load_checkpoint,
)
from lenetish.saving.checkpoint import save_checkpoint


def _tagged(count: int, size: int = 2) -> list[tuple[Tensor, Tensor]]:
    """``count`` batches whose first pixel holds the batch's index."""
    batches = []
    for index in range(count):
        images = torch.randn(size, 1, 28, 28, generator=torch.Generator().manual_seed(index))
        images[:, 0, 0, 0] = float(index)
        batches.append((images, torch.full((size,), index % 10)))
    return batches


class SeesBatches(Trainer):
    """Records the tag of every training batch it trains on."""

    def __init__(self, model: torch.nn.Module, **options: Any) -> None:
        super().__init__(model, device="cpu", progress=False, channels_last=False,
                         num_sanity_val_steps=0, **options)  # fmt: skip
        self.seen: list[int] = []

    def training_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
        self.seen.append(int(images[0, 0, 0, 0]))
        return super().training_step(images, labels)


class Passes:
    """A list of batches that records what ``set_epoch`` was told."""

    def __init__(self, batches: list[tuple[Tensor, Tensor]]) -> None:
        self.batches, self.told = batches, list[int]()

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def set_epoch(self, epoch: int) -> None:
        self.told.append(epoch)


def _shuffled_loader(seed: int = 3) -> DataLoader[tuple[Tensor, ...]]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(20, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (20,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=4, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))  # fmt: skip


def _same_weights(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    return all(
        torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters(), strict=True)
    )


def test_steps_per_epoch_continues_the_loader_across_epochs_like_keras() -> None:
    """5 batches, steps_per_epoch=2: epochs take 0 1 | 2 3 | 4 0 | 1 2, passes told apart."""
    loader = Passes(_tagged(5))
    trainer = SeesBatches(MNISTConvNet(), epochs=4, steps_per_epoch=2)
    history = trainer.fit(loader)
    assert trainer.seen == [0, 1, 2, 3, 4, 0, 1, 2]
    assert loader.told == [0, 1] and len(history) == 4 and trainer.state.steps_per_epoch == 2


def test_steps_per_epoch_resumes_inside_a_pass_bit_identical(tmp_path: Path) -> None:
    """A checkpoint between epochs in the middle of a shuffled pass resumes exactly."""

    class SaveAfter(Callback):
        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            if state.epoch == 1:  # 6 of the pass's 5 batches drawn: inside the second pass
                trainer.save_checkpoint(tmp_path / "epoch2.pt")

    torch.manual_seed(0)
    straight = MNISTConvNet()
    resumed = copy.deepcopy(straight)
    first = SeesBatches(straight, epochs=4, steps_per_epoch=3, seed=1, callbacks=[SaveAfter()])
    first.fit(_shuffled_loader())
    second = SeesBatches(resumed, epochs=4, steps_per_epoch=3, seed=1)
    second.fit(_shuffled_loader(), resume=tmp_path / "epoch2.pt")
    assert second.seen == first.seen[6:] and _same_weights(straight, resumed)


def test_steps_per_epoch_mid_epoch_checkpoint_across_a_pass_resumes_bit_identical(
    tmp_path: Path,
) -> None:
    """Written inside an epoch after a new pass began in it: the resumed fit draws on exactly."""

    class SaveAt(Callback):
        order = 1000

        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            if state.epoch == 1 and state.batch_index == 2:  # the pass of 5 ended at batch 1
                trainer.save_checkpoint(tmp_path / "mid.pt")

    torch.manual_seed(0)
    straight = MNISTConvNet()
    resumed = copy.deepcopy(straight)
    SeesBatches(straight, epochs=3, steps_per_epoch=4, seed=2, callbacks=[SaveAt()]).fit(
        _shuffled_loader()
    )
    SeesBatches(resumed, epochs=3, steps_per_epoch=4, seed=2).fit(
        _shuffled_loader(), resume=tmp_path / "mid.pt"
    )
    assert _same_weights(straight, resumed)


def test_a_damaged_steps_per_epoch_position_is_a_checkpoint_error(tmp_path: Path) -> None:
    """A position with a negative count is refused by name before training."""
    trainer = SeesBatches(MNISTConvNet(), epochs=1, steps_per_epoch=2)
    trainer.fit(_tagged(3))
    state = trainer.checkpoint_state()
    state["stream"]["drawn"] = -1
    save_checkpoint(tmp_path / "bad.pt", state)
    again = SeesBatches(MNISTConvNet(), epochs=2, steps_per_epoch=2)
    with pytest.raises(CheckpointError, match="steps_per_epoch position is damaged"):
        again.fit(_tagged(3), resume=tmp_path / "bad.pt")
    assert load_checkpoint(tmp_path / "bad.pt")["stream"]["drawn"] == -1


def test_a_shorter_loader_at_resume_is_a_checkpoint_error(tmp_path: Path) -> None:
    """A pass the checkpoint had drawn 4 batches of, now 2 long: named, not a wrong order."""
    trainer = SeesBatches(MNISTConvNet(), epochs=1, steps_per_epoch=4)
    trainer.fit(_tagged(6))
    trainer.save_checkpoint(tmp_path / "c.pt")
    again = SeesBatches(MNISTConvNet(), epochs=2, steps_per_epoch=4)
    with pytest.raises(CheckpointError, match="now yields 2"):
        again.fit(_tagged(2), resume=tmp_path / "c.pt")


def test_overfit_batches_trains_on_the_same_first_batches_every_epoch_like_lightning() -> None:
    """overfit_batches=2 of a shuffled loader: the same two batches each epoch, 2 validated."""
    validated: list[int] = []

    class CountsValidation(SeesBatches):
        def validation_step(self, images: Tensor, labels: Tensor) -> BatchOutput:
            validated.append(len(labels))
            return super().validation_step(images, labels)

    batches: Any = _tagged(8)
    loader = DataLoader(batches, batch_size=None, shuffle=True)  # batches in random order
    trainer = CountsValidation(MNISTConvNet(), epochs=3, overfit_batches=2)
    trainer.fit(loader, loader)
    assert len(trainer.seen) == 6 and trainer.seen[:2] * 3 == trainer.seen
    assert validated == [2, 2] * 3


def test_overfit_batches_memorises_its_batches() -> None:
    """Trained long enough on 2 fixed batches, the seed network fits them."""
    torch.manual_seed(0)
    trainer = SeesBatches(MNISTConvNet(), epochs=40, overfit_batches=2)
    history = trainer.fit(_shuffled_loader(), _shuffled_loader())
    assert history[-1]["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"overfit_batches": 2, "limit_train_batches": 3}, "give one of them"),
        ({"steps_per_epoch": 2, "fast_dev_run": True}, "give one of them"),
        ({"steps_per_epoch": 0}, "steps_per_epoch must be an integer >= 1"),
        ({"overfit_batches": 1.5}, r"must be in \(0, 1\]"),
    ],
)
def test_settings_that_decide_the_batches_twice_are_refused(
    options: dict[str, Any], match: str
) -> None:
    """overfit_batches and steps_per_epoch each alone, and in range."""
    with pytest.raises(InvalidArgumentError, match=match):
        Trainer(MNISTConvNet(), device="cpu", **options)

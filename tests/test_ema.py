"""Tests of lenetish.ema: the weight average kept during training."""

from __future__ import annotations

import pytest
import torch

from lenetish import EMA, InvalidArgumentError, ModelCheckpoint, Trainer, load_checkpoint
from tests.training_helpers import digit_batches, quick_trainer


def test_average_follows_the_formula() -> None:
    """After training the model holds decay-weighted averages of the step weights."""
    snapshots: list[dict[str, torch.Tensor]] = []
    from lenetish import BatchOutput, Callback, TrainState

    class Snapshot(Callback):
        order = -30  # before EMA, after the step

        def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

        def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
            snapshots.append({k: v.clone() for k, v in trainer.model.state_dict().items()})

    trainer = quick_trainer(callbacks=[Snapshot(), EMA(decay=0.5)])
    trainer.fit(digit_batches(30, 10))
    expected = snapshots[0]["fc2.bias"]
    for snapshot in snapshots[1:]:
        expected = 0.5 * expected + 0.5 * snapshot["fc2.bias"]
    torch.testing.assert_close(trainer.model.fc2.bias.detach(), expected)


def test_apply_at_end_can_be_turned_off() -> None:
    """With apply_at_end=False the model keeps its last weights."""
    ema = EMA(decay=0.9, apply_at_end=False)
    trainer = quick_trainer(callbacks=[ema])
    trainer.fit(digit_batches(30, 10))
    assert ema.shadow is not None
    assert not torch.equal(ema.shadow["fc2.bias"], trainer.model.fc2.bias.detach())


def test_average_is_saved_in_checkpoints(tmp_path: object) -> None:
    """The average is part of the checkpoint, so a resumed run continues it."""
    quick_trainer(callbacks=[EMA(), ModelCheckpoint(tmp_path)]).fit(digit_batches(20, 10))
    shadow = load_checkpoint(tmp_path / "last.pt")["callbacks"]["lenetish.EMA"]["shadow"]  # type: ignore[operator]
    assert set(shadow) >= {"conv1.weight", "fc2.bias"}


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_decay_outside_unit_interval_is_refused(decay: float) -> None:
    """The decay must be in [0, 1)."""
    with pytest.raises(InvalidArgumentError, match=r"decay must be in \[0, 1\)"):
        EMA(decay)


def test_batch_norm_statistics_are_copied_not_averaged() -> None:
    """Buffers follow the model (as documented); only parameters are averaged."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
        torch.nn.Linear(4 * 26 * 26, 10), torch.nn.LogSoftmax(dim=1),
    )  # fmt: skip
    ema = EMA(decay=0.9, apply_at_end=False)
    trainer = Trainer(model, device="cpu", progress=False, callbacks=[ema])
    trainer.fit(digit_batches(20, 10))
    assert ema.shadow is not None
    assert torch.equal(ema.shadow["1.running_mean"], model[1].running_mean)

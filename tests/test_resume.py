"""Tests of lenetish.training.resume: checkpoint state keyed by callback, and putting it back."""

from __future__ import annotations

import datetime
import logging
import math
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, Sampler, TensorDataset

from lenetish import (
    BatchOutput,
    Callback,
    CheckpointError,
    EarlyStopping,
    LRSchedule,
    MNISTConvNet,
    ModelCheckpoint,
    TensorLoader,
    Trainer,
    TrainState,
)
from lenetish.saving.checkpoint import load_checkpoint, save_checkpoint
from tests.training_helpers import digit_batches, quick_trainer


class Tally(Callback):
    """Adds ``amount`` to a running total after every epoch; the total is its state."""

    def __init__(self, key: str, amount: int) -> None:
        self.state_key = key
        self.amount = amount
        self.total = 0

    def reset(self) -> None:
        self.total = 0

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        self.total += self.amount

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total = state["total"]


def _two_epochs(folder: Path, callbacks: list[Callback]) -> Path:
    """Fit 2 of 3 epochs with ``callbacks`` and a checkpoint; return the checkpoint."""
    trainer = quick_trainer(epochs=2, callbacks=[*callbacks, ModelCheckpoint(folder)])
    trainer.fit(digit_batches(20, 10))
    return folder / "last.pt"


def test_callbacks_resume_by_key_when_their_order_changes(tmp_path: Path) -> None:
    """Two callbacks of one class get their own states back though the list is reversed."""
    checkpoint = _two_epochs(tmp_path, [Tally("a", 1), Tally("b", 10)])
    a, b = Tally("a", 1), Tally("b", 10)
    quick_trainer(epochs=3, callbacks=[b, a]).fit(digit_batches(20, 10), resume=checkpoint)
    assert (a.total, b.total) == (3, 30)


def test_built_in_monitors_resume_by_their_settings(tmp_path: Path) -> None:
    """Two EarlyStopping watching different metrics resume into the right objects."""
    checkpoint = _two_epochs(tmp_path, [EarlyStopping("loss"), EarlyStopping("accuracy")])
    saved = load_checkpoint(checkpoint)["callbacks"]
    by_loss, by_accuracy = EarlyStopping("loss"), EarlyStopping("accuracy")
    trainer = quick_trainer(epochs=2, callbacks=[by_accuracy, by_loss])
    trainer.fit(digit_batches(20, 10), resume=checkpoint)  # nothing left to train
    assert by_loss.watch.best == saved["lenetish.EarlyStopping[monitor=loss]"]["best"]
    assert by_accuracy.watch.best == saved["lenetish.EarlyStopping[monitor=accuracy]"]["best"]
    assert by_loss.watch.best != by_accuracy.watch.best


def test_checkpoints_of_lenetish_0_1_resume_their_callbacks(tmp_path: Path) -> None:
    """States saved under 0.1's keys (class name, '#2' for repeats) are still found."""
    checkpoint = _two_epochs(tmp_path, [Tally("a", 1), Tally("b", 10)])
    state = load_checkpoint(checkpoint)
    callbacks = state["callbacks"]
    state["callbacks"] = {"Tally": callbacks["a"], "Tally#2": callbacks["b"]}
    save_checkpoint(tmp_path / "old.pt", state)
    a, b = Tally("a", 1), Tally("b", 10)
    quick_trainer(epochs=3, callbacks=[a, b]).fit(digit_batches(20, 10), resume=tmp_path / "old.pt")
    assert (a.total, b.total) == (3, 30)


def test_reset_runs_before_a_resumed_state_is_loaded(tmp_path: Path) -> None:
    """A callback that sets up per-fit state in reset() can load a saved state into it."""

    class SetUpInReset(Callback):
        def reset(self) -> None:
            self.seen: list[int] = []

        def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
            self.seen.append(state.epoch + 1)

        def state_dict(self) -> dict[str, Any]:
            return {"seen": list(self.seen)}

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.seen.extend(state["seen"])

    checkpoint = _two_epochs(tmp_path, [SetUpInReset()])
    callback = SetUpInReset()
    quick_trainer(epochs=3, callbacks=[callback]).fit(digit_batches(20, 10), resume=checkpoint)
    assert callback.seen == [1, 2, 3]


def test_a_callback_missing_from_the_checkpoint_starts_fresh_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stateful callback the checkpoint does not know is reset and named in a warning."""
    checkpoint = _two_epochs(tmp_path, [])
    late = Tally("late", 5)
    with caplog.at_level(logging.WARNING, "lenetish"):
        quick_trainer(epochs=3, callbacks=[late]).fit(digit_batches(20, 10), resume=checkpoint)
    assert "no state for callback late" in caplog.text
    assert late.total == 5


def test_resuming_a_finished_run_with_fewer_epochs_is_refused(tmp_path: Path) -> None:
    """A 4-epoch last.pt resumed with epochs=1 raises instead of training nothing."""
    quick_trainer(epochs=4, callbacks=[ModelCheckpoint(tmp_path)]).fit(digit_batches(10, 10))
    with pytest.raises(CheckpointError, match=r"already trained 4 epochs.*pass epochs > 4"):
        quick_trainer(epochs=1).fit(digit_batches(10, 10), resume=tmp_path / "last.pt")


def test_resuming_a_finished_run_with_its_own_epochs_trains_nothing(tmp_path: Path) -> None:
    """A resume with the checkpoint's own epoch count is a finished run: no error, no epoch."""
    quick_trainer(epochs=2, callbacks=[ModelCheckpoint(tmp_path)]).fit(digit_batches(10, 10))
    history = quick_trainer(epochs=2).fit(digit_batches(10, 10), resume=tmp_path / "last.pt")
    assert [row["epoch"] for row in history] == [1, 2]


def test_a_saved_callback_state_without_its_callback_warns(tmp_path: Path) -> None:
    """A state no callback of the resumed fit claims is named in a warning saying to add it."""
    checkpoint = _two_epochs(tmp_path, [Tally("a", 1)])
    saver = ModelCheckpoint(tmp_path)
    with pytest.warns(UserWarning, match=r"state of callback 'a'.*dropped.*add the callback"):
        quick_trainer(epochs=3, callbacks=[saver]).fit(digit_batches(20, 10), resume=checkpoint)


class SaveAtStep(Callback):
    """Writes a checkpoint from on_batch_end after one optimizer step, then (maybe) stops."""

    def __init__(self, step: int, path: Path, *, stop: bool = True) -> None:
        self.step, self.path, self.stop = step, path, stop

    def on_batch_end(self, trainer: Trainer, state: TrainState, output: BatchOutput) -> None:
        if state.global_step == self.step:
            trainer.save_checkpoint(self.path)
            trainer.should_stop = self.stop


def _train(kind: str) -> Iterable[tuple[Tensor, Tensor]]:
    """Six batches of ten digits per epoch: a list, a TensorLoader or a shuffling DataLoader.

    ``data_loader`` shuffles with torch's global generator, ``loader_generator`` with a
    ``generator=`` of its own, ``sampler_generator`` with a RandomSampler's own generator
    inside a BatchSampler.
    """
    batches = digit_batches(60, 10)
    if kind == "list":
        return batches
    images = torch.cat([images for images, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    if kind == "tensor_loader":
        return TensorLoader(images, labels, batch_size=10, shuffle=True, seed=5)
    data = TensorDataset(images, labels)
    if kind == "loader_generator":
        return DataLoader(data, batch_size=10, shuffle=True, generator=_generator(1))
    if kind == "sampler_generator":
        sampler = RandomSampler(data, generator=_generator(2))
        return DataLoader(data, batch_sampler=BatchSampler(sampler, 10, drop_last=False))
    return DataLoader(data, batch_size=10, shuffle=True)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _dropout_trainer(weights_seed: int, callbacks: list[Callback] | None = None) -> Trainer:
    """A seeded 2-epoch CPU fit whose result depends on torch's RNG (dropout) and the lr plan."""
    torch.manual_seed(weights_seed)
    return Trainer(
        MNISTConvNet(dropout=0.3),
        optimizer="sgd",
        lr=0.05,
        epochs=2,
        scheduler="onecycle",
        callbacks=callbacks or [],
        device="cpu",
        precision="32",
        seed=3,
        progress=False,
    )


def _rows(history: Iterable[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


@pytest.mark.parametrize(
    "kind", ["list", "tensor_loader", "data_loader", "loader_generator", "sampler_generator"]
)
@pytest.mark.parametrize("step", [8, 6, 12], ids=["inside-epoch-2", "end-of-epoch-1", "last"])
def test_a_mid_epoch_checkpoint_resumes_bit_identical_to_an_uninterrupted_run(
    tmp_path: Path, kind: str, step: int
) -> None:
    """A fit stopped after a checkpoint written in on_batch_end resumes to the same weights."""
    straight = _dropout_trainer(0)
    expected = straight.fit(_train(kind))
    _dropout_trainer(0, [SaveAtStep(step, tmp_path / "mid.pt")]).fit(_train(kind))
    resumed = _dropout_trainer(1)
    history = resumed.fit(_train(kind), resume=tmp_path / "mid.pt")
    for name, weights in straight.model.state_dict().items():
        assert torch.equal(weights, resumed.model.state_dict()[name]), name
    assert _rows(history) == _rows(expected)


def test_a_checkpoint_written_inside_an_epoch_records_it_as_unfinished(tmp_path: Path) -> None:
    """Two batches into epoch 2: one epoch finished, two batches of the next done."""
    _dropout_trainer(0, [SaveAtStep(8, tmp_path / "mid.pt", stop=False)]).fit(_train("list"))
    checkpoint = load_checkpoint(tmp_path / "mid.pt")
    assert (checkpoint["epoch"], checkpoint["mid_epoch"]["batches_done"]) == (1, 2)
    assert checkpoint["global_step"] == 8
    assert len(checkpoint["callbacks"]["lenetish.History"]["rows"]) == 1


def test_a_mid_epoch_checkpoint_with_fewer_batches_is_refused(tmp_path: Path) -> None:
    """Resuming after batch 4 of an epoch with a 2-batch loader names both counts."""
    _dropout_trainer(0, [SaveAtStep(4, tmp_path / "mid.pt")]).fit(_train("list"))
    with pytest.raises(CheckpointError, match=r"after 4 batches of epoch 1.*loader has 2"):
        _dropout_trainer(0).fit(digit_batches(60, 10)[:2], resume=tmp_path / "mid.pt")


def test_resuming_a_mid_epoch_checkpoint_needs_epochs_to_reach_that_epoch(
    tmp_path: Path,
) -> None:
    """A checkpoint inside epoch 2 resumed with epochs=1 says it already trained 1 epoch."""
    _dropout_trainer(0, [SaveAtStep(8, tmp_path / "mid.pt")]).fit(_train("list"))
    trainer = quick_trainer(epochs=1, optimizer="sgd", lr=0.05, scheduler="onecycle")
    with pytest.raises(
        CheckpointError, match=r"already trained 1 epoch and part of epoch 2.*epochs > 1"
    ):
        trainer.fit(_train("list"), resume=tmp_path / "mid.pt")


class NoLength:
    """Re-iterable batches without a len(), as a generator-backed loader would be."""

    def __init__(self, batches: list[tuple[Tensor, Tensor]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return iter(self.batches)


def test_a_mid_epoch_checkpoint_resumed_with_a_shorter_loader_without_length_is_refused(
    tmp_path: Path,
) -> None:
    """A loader with no len() that runs out before the saved batch count names both counts."""
    quick_trainer(epochs=2, callbacks=[SaveAtStep(4, tmp_path / "mid.pt")]).fit(_train("list"))
    with pytest.raises(CheckpointError, match=r"after 4 batches of epoch 1.*now yields 2"):
        quick_trainer(epochs=2).fit(NoLength(digit_batches(60, 10)[:2]), resume=tmp_path / "mid.pt")


def test_a_mid_epoch_checkpoint_resumed_with_other_metrics_is_refused(tmp_path: Path) -> None:
    """Resuming inside an epoch with another metrics= says its running score does not load."""

    def hits(outputs: Tensor, targets: Tensor) -> Tensor:
        return (outputs.argmax(1) == targets).float().mean()

    saver = SaveAtStep(4, tmp_path / "mid.pt")
    quick_trainer(epochs=2, metrics={"hits": hits}, callbacks=[saver]).fit(_train("list"))
    with pytest.raises(
        CheckpointError, match=r"running score of its unfinished epoch 1 does not load"
    ):
        quick_trainer(epochs=2).fit(_train("list"), resume=tmp_path / "mid.pt")


class Averages(Callback):
    """Keeps what NumPy computes: np.mean's np.float64, np.int64 counts and an array."""

    state_key = "tests.Averages"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.mean: Any = None
        self.count: Any = None
        self.per_epoch: Any = np.zeros(0)

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        self.per_epoch = np.append(self.per_epoch, state.metrics["loss"])
        self.mean, self.count = np.mean(self.per_epoch), np.int64(len(self.per_epoch))

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "count": self.count, "per_epoch": self.per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.count = state["mean"], state["count"]
        self.per_epoch = np.asarray(state["per_epoch"])


def test_a_callback_holding_numpy_values_resumes_with_them_equal(tmp_path: Path) -> None:
    """np.float64, np.int64 and an array in a callback's state save, resume and come back equal."""
    first = Averages()
    checkpoint = _two_epochs(tmp_path, [first])
    resumed = Averages()
    quick_trainer(epochs=2, callbacks=[resumed]).fit(digit_batches(20, 10), resume=checkpoint)
    assert (resumed.mean, resumed.count) == (first.mean, first.count)
    assert np.array_equal(resumed.per_epoch, first.per_epoch)


def test_a_numpy_array_in_a_callback_state_is_saved_as_a_tensor_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An array is saved as a tensor of its dtype, with a warning naming the callback."""
    with caplog.at_level(logging.WARNING, "lenetish"):
        checkpoint = _two_epochs(tmp_path, [Averages()])
    saved = load_checkpoint(checkpoint)["callbacks"]["tests.Averages"]["per_epoch"]
    assert isinstance(saved, Tensor) and saved.dtype == torch.float64 and saved.shape == (2,)
    assert "Averages (state_key 'tests.Averages'): the NumPy array at state['per_epoch']" in (
        caplog.text
    )


class Window(Callback):
    """A moving window of losses kept in a deque: loading would refuse it."""

    state_key = "tests.Window"

    def __init__(self) -> None:
        self.recent: deque[float] = deque(maxlen=3)

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        self.recent.append(state.metrics["loss"])

    def state_dict(self) -> dict[str, Any]:
        return {"recent": self.recent}


def test_a_deque_in_a_callback_state_is_refused_at_save_time_by_name(tmp_path: Path) -> None:
    """ModelCheckpoint refuses a deque in a callback's state, naming class, key and place."""
    with pytest.raises(
        CheckpointError,
        match=r"callback Window \(state_key 'tests.Window'\) cannot be saved so that it "
        r"resumes: its state_dict\(\) holds a collections.deque at state\['recent'\].*"
        r"may hold only tensors.*collections.deque\(saved, maxlen=\.\.\.\)",
    ):
        _two_epochs(tmp_path, [Window()])
    assert not (tmp_path / "last.pt").exists()


def test_an_object_in_a_callback_state_is_refused_by_save_checkpoint(tmp_path: Path) -> None:
    """trainer.save_checkpoint refuses any object loading would refuse, naming its place."""

    class Opaque(Callback):
        def state_dict(self) -> dict[str, Any]:
            return {"log": [1, {"when": datetime.date(2026, 12, 3)}]}

    trainer = quick_trainer(epochs=1, callbacks=[Opaque()])
    trainer.fit(digit_batches(10, 10))
    with pytest.raises(
        CheckpointError, match=r"holds a datetime.date at state\['log'\]\[1\]\['when'\]"
    ):
        trainer.save_checkpoint(tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()


def _with_numpy_state(folder: Path) -> Path:
    """A checkpoint as earlier versions wrote it: a callback's state holding np.float64."""
    checkpoint = _two_epochs(folder, [Tally("tests.Tally", 1)])
    state = load_checkpoint(checkpoint)
    state["callbacks"]["tests.Tally"]["total"] = np.float64(2.0)
    torch.save(state, folder / "old.pt")  # no check: as lenetish before the save-time check
    return folder / "old.pt"


def test_resuming_a_checkpoint_with_numpy_callback_state_names_the_callback(
    tmp_path: Path,
) -> None:
    """The refusal of such a file names the callback's key, the place and what NumPy held."""
    old = _with_numpy_state(tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"the state of callback 'tests.Tally' holds a NumPy scalar .* at "
        r"state\['total'\].*weights_only=False\), replace those values",
    ):
        quick_trainer(epochs=3, callbacks=[Tally("tests.Tally", 1)]).fit(
            digit_batches(20, 10), resume=old
        )


def test_the_repair_the_refusal_advises_resumes(tmp_path: Path) -> None:
    """Loading the trusted file unsafely, converting the value and saving it makes it resume."""
    old = _with_numpy_state(tmp_path)
    state = torch.load(old, weights_only=False)
    state["callbacks"]["tests.Tally"]["total"] = float(state["callbacks"]["tests.Tally"]["total"])
    torch.save(state, old)
    tally = Tally("tests.Tally", 1)
    quick_trainer(epochs=3, callbacks=[tally]).fit(digit_batches(20, 10), resume=old)
    assert tally.total == 3


class Planted:
    """Unpickles by calling open(path, 'w'): loading it would create the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return open, (str(self.path), "w")


def test_naming_the_callback_of_a_refused_file_runs_nothing_from_it(tmp_path: Path) -> None:
    """Finding which callback holds a refused object reads the file without running it."""
    checkpoint = _two_epochs(tmp_path, [Tally("tests.Tally", 1)])
    state = load_checkpoint(checkpoint)
    planted = tmp_path / "planted"
    state["callbacks"]["tests.Tally"]["total"] = Planted(planted)
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(
        CheckpointError,
        match=r"callback 'tests.Tally' holds an object built by io.open at state\['total'\]",
    ):
        load_checkpoint(tmp_path / "evil.pt")
    assert not planted.exists()


class StopAfterEpoch(Callback):
    """Ends the fit after the given (1-based) epoch, as an interrupted run would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer: Trainer, state: TrainState) -> None:
        if state.epoch + 1 == self.epoch:
            trainer.should_stop = True


def _equal_weights(first: Trainer, second: Trainer) -> bool:
    return all(
        torch.equal(a, b)
        for a, b in zip(
            first.model.state_dict().values(), second.model.state_dict().values(), strict=True
        )
    )


def _damaged_copy(source: Path, folder: Path, change: Any) -> Path:
    """``source`` with ``change(state)`` applied, written as torch.save would (no checks)."""
    state = load_checkpoint(source)
    change(state)
    torch.save(state, folder / "damaged.pt")
    return folder / "damaged.pt"


def _own_generator_loader() -> DataLoader[tuple[Tensor, ...]]:
    """The issue's loader: a shuffling DataLoader with generator=Generator().manual_seed(1)."""
    images, labels = (torch.cat(parts) for parts in zip(*digit_batches(60, 10), strict=True))
    return DataLoader(
        TensorDataset(images, labels), batch_size=10, shuffle=True, generator=_generator(1)
    )


def test_a_data_loader_with_its_own_generator_resumes_bit_identical(tmp_path: Path) -> None:
    """3 epochs straight equal 2 epochs, a checkpoint and a resume, with the loader's generator."""
    straight = quick_trainer(epochs=3, seed=3)
    straight.fit(_own_generator_loader())
    saver = ModelCheckpoint(tmp_path)
    quick_trainer(epochs=3, seed=3, callbacks=[StopAfterEpoch(2), saver]).fit(
        _own_generator_loader()
    )
    resumed = quick_trainer(epochs=3, seed=3, callbacks=[ModelCheckpoint(tmp_path)])
    resumed.fit(_own_generator_loader(), resume=tmp_path / "last.pt")
    assert _equal_weights(straight, resumed)


def test_a_checkpoint_holds_the_loader_generator_state_of_the_epoch_it_resumes(
    tmp_path: Path,
) -> None:
    """Inside epoch 2 the saved state is the one before epoch 2's iterator drew from it."""
    loader = _train("loader_generator")
    assert isinstance(loader, DataLoader) and loader.generator is not None
    states: list[Tensor] = []

    class Record(Callback):
        order = -100  # before the epoch's iterator is made, like the loop's own record

        def on_epoch_start(self, trainer: Trainer, state: TrainState) -> None:
            assert isinstance(loader, DataLoader) and loader.generator is not None
            states.append(loader.generator.get_state())

    _dropout_trainer(0, [Record(), SaveAtStep(8, tmp_path / "mid.pt")]).fit(loader)
    saved = load_checkpoint(tmp_path / "mid.pt")["loader_rng"]
    assert list(saved) == ["generator"] and torch.equal(saved["generator"], states[1])


class EvensThenOdds(Sampler[int]):
    """A sampler of its own with no generator attribute: the even indices, then the odd."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __iter__(self) -> Iterator[int]:
        return iter([*range(0, self.size, 2), *range(1, self.size, 2)])

    def __len__(self) -> int:
        return self.size


def test_a_sampler_without_a_generator_attribute_warns_once_naming_the_loader(
    tmp_path: Path,
) -> None:
    """Two checkpoints of a loader whose sampler lenetish cannot see into give one warning."""
    images, labels = (torch.cat(parts) for parts in zip(*digit_batches(20, 10), strict=True))
    loader = DataLoader(TensorDataset(images, labels), batch_size=10, sampler=EvensThenOdds(20))
    with pytest.warns(
        UserWarning,
        match=r"training loader \(DataLoader with EvensThenOdds\) has a sampler lenetish does "
        r"not know \(sampler \(EvensThenOdds\)\) with no `generator` attribute",
    ) as caught:
        quick_trainer(epochs=2, callbacks=[ModelCheckpoint(tmp_path)]).fit(loader)
    assert sum("does not know" in str(warning.message) for warning in caught) == 1


@pytest.mark.parametrize(
    ("saved", "message"),
    [
        (
            {"generator": torch.zeros(5056, dtype=torch.uint8)},
            r"damaged: loader_rng\['generator'\] is not a generator state",
        ),
        ([1, 2], "damaged: loader_rng must map places to generator states, not list"),
    ],
    ids=["all-zero-state", "a-list"],
)
def test_a_damaged_loader_generator_state_is_refused(
    tmp_path: Path, saved: object, message: str
) -> None:
    """A loader generator state its generator refuses is a CheckpointError naming the place."""
    quick_trainer(epochs=1, callbacks=[ModelCheckpoint(tmp_path)]).fit(_train("loader_generator"))
    damaged = _damaged_copy(
        tmp_path / "last.pt", tmp_path, lambda state: state.__setitem__("loader_rng", saved)
    )
    with pytest.raises(CheckpointError, match=message):
        quick_trainer(epochs=2).fit(_train("loader_generator"), resume=damaged)


def test_a_loader_with_other_generators_resumes_saying_the_order_will_differ(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Resuming a generator= loader's checkpoint with a sampler's generator logs both places."""
    quick_trainer(epochs=1, callbacks=[ModelCheckpoint(tmp_path)]).fit(_train("loader_generator"))
    with caplog.at_level(logging.WARNING, "lenetish"):
        quick_trainer(epochs=2).fit(_train("sampler_generator"), resume=tmp_path / "last.pt")
    assert (
        "holds the states of the loader generators ['generator'], but this fit's training "
        "loader (DataLoader with RandomSampler) has ['batch_sampler.sampler.generator']"
    ) in caplog.text


def test_a_checkpoint_without_loader_states_says_the_order_will_differ(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint of an earlier lenetish (no loader_rng) resumes, logging the new order."""
    quick_trainer(epochs=1, callbacks=[ModelCheckpoint(tmp_path)]).fit(_train("loader_generator"))
    state = load_checkpoint(tmp_path / "last.pt")
    del state["loader_rng"]
    torch.save(state, tmp_path / "old.pt")
    with caplog.at_level(logging.WARNING, "lenetish"):
        quick_trainer(epochs=2).fit(_train("loader_generator"), resume=tmp_path / "old.pt")
    assert "holds no state of the training loader's generators (generator" in caplog.text


def test_a_strided_one_dimensional_adam_moment_resumes_as_a_dense_one(tmp_path: Path) -> None:
    """A 1-D moment saved as a stride-2 view trains like the same values laid out densely."""
    quick_trainer(epochs=1, callbacks=[ModelCheckpoint(tmp_path)]).fit(digit_batches(20, 10))
    state = load_checkpoint(tmp_path / "last.pt")
    for entry in state["optimizer"]["state"].values():
        moment = entry["exp_avg"]
        if moment.dim() == 1:
            entry["exp_avg"] = torch.zeros(2 * moment.numel())[::2].copy_(moment)
    torch.save(state, tmp_path / "strided.pt")
    dense, strided = quick_trainer(epochs=2), quick_trainer(epochs=2)
    dense.fit(digit_batches(20, 10), resume=tmp_path / "last.pt")
    strided.fit(digit_batches(20, 10), resume=tmp_path / "strided.pt")
    assert _equal_weights(dense, strided)


@pytest.fixture(scope="module")
def one_cycle_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Epoch 1 of 2 of an SGD fit with the one-cycle schedule."""
    folder = tmp_path_factory.mktemp("one_cycle")
    callbacks = [StopAfterEpoch(1), ModelCheckpoint(folder)]
    _one_cycle(callbacks).fit(digit_batches(20, 10))
    return folder / "last.pt"


def _one_cycle(callbacks: list[Callback] | None = None) -> Trainer:
    return quick_trainer(
        epochs=2, optimizer="sgd", lr=0.05, scheduler="onecycle", callbacks=callbacks or []
    )


def test_a_negative_one_cycle_peak_is_refused(one_cycle_checkpoint: Path, tmp_path: Path) -> None:
    """A max_lr of -0.05 in the optimizer's group (the peak a resumed one-cycle reads) raises."""
    damaged = _damaged_copy(
        one_cycle_checkpoint,
        tmp_path,
        lambda state: state["optimizer"]["param_groups"][0].__setitem__("max_lr", -0.05),
    )
    with pytest.raises(
        CheckpointError,
        match=r"param_groups\[0\].max_lr is -0.05; a learning rate must be a finite number > 0",
    ):
        _one_cycle().fit(digit_batches(20, 10), resume=damaged)


@pytest.mark.parametrize("rate", [-0.002, math.nan, math.inf], ids=["negative", "nan", "inf"])
def test_an_impossible_learning_rate_in_the_schedule_state_is_refused(
    one_cycle_checkpoint: Path, tmp_path: Path, rate: float
) -> None:
    """A scheduler state whose base_lrs is negative or not finite raises naming the callback."""

    def change(state: dict[str, Any]) -> None:
        state["callbacks"]["lenetish.Trainer.scheduler"]["base_lrs"] = [rate]

    damaged = _damaged_copy(one_cycle_checkpoint, tmp_path, change)
    with pytest.raises(
        CheckpointError,
        match=r"state of callback lenetish.Trainer.scheduler does not load \(ValueError: "
        r"state\['base_lrs'\] holds .*; a learning rate must be a finite number >= 0",
    ):
        _one_cycle().fit(digit_batches(20, 10), resume=damaged)


@pytest.mark.parametrize("kind", ["EarlyStopping", "ModelCheckpoint"])
def test_a_best_value_nothing_can_beat_is_refused(tmp_path: Path, kind: str) -> None:
    """A minimised loss whose saved best is -inf (every epoch would look worse) raises."""

    def monitors() -> list[Callback]:
        if kind == "ModelCheckpoint":
            return [ModelCheckpoint(tmp_path, monitor="loss", save_best=True)]
        return [EarlyStopping("loss", patience=3), ModelCheckpoint(tmp_path)]

    first = monitors()
    quick_trainer(epochs=1, callbacks=first).fit(digit_batches(20, 10))
    damaged = _damaged_copy(
        tmp_path / "last.pt",
        tmp_path,
        lambda state: state["callbacks"][first[0].state_key].update(best=-math.inf),
    )
    with pytest.raises(
        CheckpointError, match=r"the best 'loss' is -inf, which no value beats in mode 'min'"
    ):
        quick_trainer(epochs=3, callbacks=monitors()).fit(digit_batches(20, 10), resume=damaged)


def test_a_plateau_best_nothing_can_beat_is_refused(tmp_path: Path) -> None:
    """A ReduceLROnPlateau (mode min) whose saved best is -inf, cutting the lr forever, raises."""

    def schedule() -> LRSchedule:
        return LRSchedule(lambda optimizer: ReduceLROnPlateau(optimizer), monitor="loss")

    first = schedule()
    quick_trainer(epochs=1, callbacks=[first, ModelCheckpoint(tmp_path)]).fit(digit_batches(20, 10))
    damaged = _damaged_copy(
        tmp_path / "last.pt",
        tmp_path,
        lambda state: state["callbacks"][first.state_key].update(best=-math.inf),
    )
    with pytest.raises(
        CheckpointError,
        match=r"state\['best'\] is -inf; a plateau scheduler's best must be a finite number "
        r"or inf \(mode 'min', no value yet\)",
    ):
        quick_trainer(epochs=2, callbacks=[schedule()]).fit(digit_batches(20, 10), resume=damaged)


def test_a_best_value_of_the_worst_infinity_resumes(tmp_path: Path) -> None:
    """A minimised loss whose best is +inf (a first value that overflowed) resumes and improves."""
    stopping = EarlyStopping("loss", patience=3, check_finite=False)
    quick_trainer(epochs=1, callbacks=[stopping, ModelCheckpoint(tmp_path)]).fit(
        digit_batches(20, 10)
    )
    damaged = _damaged_copy(
        tmp_path / "last.pt",
        tmp_path,
        lambda state: state["callbacks"]["lenetish.EarlyStopping[monitor=loss]"].update(
            best=math.inf
        ),
    )
    resumed = EarlyStopping("loss", patience=3, check_finite=False)
    quick_trainer(epochs=2, callbacks=[resumed]).fit(digit_batches(20, 10), resume=damaged)
    assert math.isfinite(resumed.watch.best) and resumed.watch.best_epoch == 2


class Hits:
    """A metric object declaring higher_is_better, so mode='auto' is decided at fit start."""

    higher_is_better = True

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.right, self.seen = 0, 0

    def update(self, outputs: Tensor, targets: Tensor) -> None:
        self.right += int((outputs.argmax(1) == targets).sum())
        self.seen += int(targets.numel())

    def compute(self) -> float:
        return self.right / max(self.seen, 1)


def test_an_unbeatable_best_of_an_auto_mode_monitor_is_refused_at_fit_start(
    tmp_path: Path,
) -> None:
    """With mode='auto' decided at fit start, a best of +inf for a maximised metric raises then."""
    options: dict[str, Any] = {"metrics": {"hits": Hits()}}
    quick_trainer(
        epochs=1, callbacks=[EarlyStopping("hits"), ModelCheckpoint(tmp_path)], **options
    ).fit(digit_batches(20, 10))
    damaged = _damaged_copy(
        tmp_path / "last.pt",
        tmp_path,
        lambda state: state["callbacks"]["lenetish.EarlyStopping[monitor=hits]"].update(
            best=math.inf
        ),
    )
    trainer = quick_trainer(epochs=2, callbacks=[EarlyStopping("hits")], **options)
    with pytest.raises(
        CheckpointError,
        match=r"EarlyStopping: the checkpoint's state is damaged: the best 'hits' is inf, "
        r"which no value beats in mode 'max'",
    ):
        trainer.fit(digit_batches(20, 10), resume=damaged)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("_correct", torch.tensor(-8), r"_correct counts -8 correct predictions of 20 samples"),
        ("_correct", torch.tensor(208320), r"_correct counts 208320 .* \(an accuracy in \[0, 1\]"),
        ("_loss_sum", torch.tensor(math.nan, dtype=torch.float64), "_loss_sum holds NaN"),
        ("_seen", 2000, r"counts 2000 samples, but the 2 batches it had trained hold 20"),
    ],
    ids=["negative-accuracy", "accuracy-above-one", "nan-loss", "more-samples-than-batches"],
)
def test_an_impossible_mid_epoch_score_is_refused(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    """A running score no batches could add up to raises CheckpointError before training on."""
    _dropout_trainer(0, [SaveAtStep(8, tmp_path / "mid.pt")]).fit(_train("list"))
    damaged = _damaged_copy(
        tmp_path / "mid.pt",
        tmp_path,
        lambda state: state["mid_epoch"]["score"].__setitem__(field, value),
    )
    with pytest.raises(CheckpointError, match=message):
        _dropout_trainer(1).fit(_train("list"), resume=damaged)


class AddConvGroup(Callback):
    """A fine-tuning callback: conv1 joins the optimizer as a second group at fit start."""

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        conv1 = trainer.module.conv1
        assert isinstance(conv1, torch.nn.Module)
        trainer.optimizer.add_param_group({"params": list(conv1.parameters()), "lr": 5e-4})


def _head_trainer(epochs: int, callbacks: list[Callback]) -> Trainer:
    """A seeded CPU trainer whose optimizer starts with every parameter but conv1's."""
    torch.manual_seed(0)
    model = MNISTConvNet()
    head = [p for name, p in model.named_parameters() if not name.startswith("conv1.")]
    return Trainer(
        model,
        optimizer=lambda parameters: torch.optim.Adam(head, lr=1e-3),
        epochs=epochs,
        callbacks=callbacks,
        device="cpu",
        progress=False,
    )


def test_lightning_finetuning_resumes_after_a_callback_added_a_param_group(
    tmp_path: Path,
) -> None:
    """A group added in on_fit_start resumes: 2 epochs and a resume to 3 equal 3 straight."""
    straight = _head_trainer(3, [AddConvGroup()])
    straight.fit(digit_batches(20, 10))
    _head_trainer(2, [AddConvGroup(), ModelCheckpoint(tmp_path)]).fit(digit_batches(20, 10))
    resumed = _head_trainer(3, [AddConvGroup(), ModelCheckpoint(tmp_path)])
    resumed.fit(digit_batches(20, 10), resume=tmp_path / "last.pt")
    assert len(resumed.optimizer.param_groups) == 2
    assert _equal_weights(straight, resumed)


def test_a_checkpoint_written_before_the_added_group_exists_holds_the_resumed_optimizer(
    tmp_path: Path,
) -> None:
    """Saved before the first resumed batch, the file holds the checkpoint's two groups."""
    _head_trainer(2, [AddConvGroup(), ModelCheckpoint(tmp_path)]).fit(digit_batches(20, 10))
    saved = load_checkpoint(tmp_path / "last.pt")
    callbacks = [SaveAtFitStart(tmp_path / "early.pt"), AddConvGroup(), ModelCheckpoint(tmp_path)]
    _head_trainer(3, callbacks).fit(digit_batches(20, 10), resume=tmp_path / "last.pt")
    written = load_checkpoint(tmp_path / "early.pt")["optimizer"]
    assert len(written["param_groups"]) == 2
    assert all(
        torch.equal(saved["optimizer"]["state"][key]["exp_avg"], moments["exp_avg"])
        for key, moments in written["state"].items()
    )


class SaveAtFitStart(Callback):
    """Writes a checkpoint from on_fit_start, before the callbacks after it run."""

    order = -100

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        trainer.save_checkpoint(self.path)


def test_resuming_without_the_callback_that_added_a_group_names_the_groups(
    tmp_path: Path,
) -> None:
    """A resume whose callbacks add no group says so, instead of calling the file damaged."""
    _head_trainer(2, [AddConvGroup(), ModelCheckpoint(tmp_path)]).fit(digit_batches(20, 10))
    with pytest.raises(
        CheckpointError,
        match=r"last.pt holds an optimizer state of 2 parameter groups, and this fit's Adam has "
        r"1 when its first batch starts; a callback that adds groups",
    ):
        _head_trainer(3, [ModelCheckpoint(tmp_path)]).fit(
            digit_batches(20, 10), resume=tmp_path / "last.pt"
        )

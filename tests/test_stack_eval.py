"""Tests of lenetish.stack.evaluation: evaluate and predict with a ModelStack."""

from __future__ import annotations

import statistics

import pytest
import torch

from lenetish import InvalidArgumentError, MNISTConvNet, ModelStack, evaluate, predict
from lenetish.stack.evaluation import StackEvalResult
from tests.training_helpers import digit_batches


def test_each_members_accuracy_is_its_own_evaluation() -> None:
    """member_accuracy and member_loss equal evaluate() of each unstacked member."""
    stack, batches = ModelStack(MNISTConvNet, 3), digit_batches(60, 20)
    result = evaluate(stack, batches, precision="32")
    assert isinstance(result, StackEvalResult)
    for index, member in enumerate(stack.unstack()):
        alone = evaluate(member, batches, precision="32")
        assert result.member_accuracy[index] == alone.accuracy
        assert result.member_loss[index] == pytest.approx(alone.loss, rel=1e-6)


def test_the_ensemble_scores_are_those_of_the_list_of_members() -> None:
    """accuracy, loss and confusion are the ensemble's, as evaluate() of the member list."""
    stack, batches = ModelStack(MNISTConvNet, 3), digit_batches(60, 20)
    result, members = (
        evaluate(stack, batches, tta=True, precision="32"),
        evaluate(stack.unstack(), batches, tta=True, precision="32"),
    )
    assert result.accuracy == members.accuracy
    assert result.loss == pytest.approx(members.loss, rel=1e-6)
    assert torch.equal(result.confusion, members.confusion)


def test_mean_and_standard_deviation_summarise_the_members() -> None:
    """mean_accuracy and std_accuracy are the members' mean and sample deviation."""
    result = evaluate(ModelStack(MNISTConvNet, 3), digit_batches(60, 20))
    assert isinstance(result, StackEvalResult)
    assert result.mean_accuracy == pytest.approx(statistics.fmean(result.member_accuracy))
    assert result.std_accuracy == pytest.approx(statistics.stdev(result.member_accuracy))


def test_predict_with_a_stack_predicts_with_its_ensemble() -> None:
    """predict(stack) gives the probabilities of predict(list of members)."""
    stack, images = ModelStack(MNISTConvNet, 2), torch.randint(0, 256, (5, 28, 28)).byte()
    together, apart = predict(stack, images), predict(stack.unstack(), images)
    torch.testing.assert_close(together.probabilities, apart.probabilities)


def test_evaluating_a_stack_leaves_its_training_mode() -> None:
    """evaluate() puts the stack back in training mode afterwards."""
    stack = ModelStack(MNISTConvNet, 2)
    evaluate(stack, digit_batches(20, 10))
    assert stack.training


def test_an_empty_loader_is_refused_for_a_stack() -> None:
    """A loader without samples is an error, as for one network."""
    with pytest.raises(InvalidArgumentError, match="the loader yielded no samples"):
        evaluate(ModelStack(MNISTConvNet, 2), [])


def test_a_stack_with_another_number_of_classes_is_refused() -> None:
    """num_classes that differs from the members' outputs is a named error, as for one model."""
    stack, batches = ModelStack(MNISTConvNet, 2), digit_batches(20, 20)
    with pytest.raises(InvalidArgumentError, match="gives 10 outputs per image but num_classes=5"):
        evaluate(stack, batches, num_classes=5)

"""The networks lenetish trains: ``MNISTConvNet``, the seed blog post's CNN, kept exactly."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lenetish._checks import check_fraction, check_positive_int
from lenetish.errors import InputShapeError

__all__ = ["MODELS", "MNISTConvNet", "MNISTWideNet"]

IMAGE_SHAPE = (1, 28, 28)


def check_image_batch(images: Tensor) -> None:
    """Raise :class:`InputShapeError` unless ``images`` has shape ``(N, 1, 28, 28)``."""
    if images.dim() != 4 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise InputShapeError(
            f"expected a batch of shape (N, 1, 28, 28), got {tuple(images.shape)}; "
            "add the batch and channel dimensions with images.reshape(-1, 1, 28, 28)"
        )


class MNISTConvNet(nn.Module):
    """The seed's small CNN for 28x28 greyscale digits, returning log-probabilities.

    With the defaults this is exactly the blog post's network (252,866 parameters)::

        conv1 1->24, 3x3  -> ReLU -> max-pool 2x2   (24x13x13)
        conv2 24->48, 3x3 -> ReLU -> max-pool 2x2   (48x5x5)
        flatten 1200 -> fc1 200 -> ReLU -> fc2 10 -> log_softmax

    Args:
        conv1_channels: output channels of the first convolution.
        conv2_channels: output channels of the second convolution.
        hidden: width of the hidden fully connected layer.
        dropout: dropout probability before each fully connected layer (0 disables it,
            keeping the seed network).
        num_classes: number of output classes.

    Raises:
        InvalidArgumentError: a width is not positive or ``dropout`` is outside ``[0, 1)``.

    Example:
        >>> model = MNISTConvNet()
        >>> sum(p.numel() for p in model.parameters())
        252866
        >>> model(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    #: Runs channels-last and under bf16 autocast with the same results (measured), so
    #: lenetish's automatic speed-ups apply without a check (see :mod:`lenetish.layout`).
    lenetish_fast_path: ClassVar[bool] = True

    def __init__(
        self,
        *,
        conv1_channels: int = 24,
        conv2_channels: int = 48,
        hidden: int = 200,
        dropout: float = 0.0,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        widths = {
            "conv1_channels": conv1_channels,
            "conv2_channels": conv2_channels,
            "hidden": hidden,
            "num_classes": num_classes,
        }
        for name, value in widths.items():
            check_positive_int(name, value)
        check_fraction("dropout", dropout)
        self.conv1 = nn.Conv2d(1, conv1_channels, kernel_size=3)
        self.conv2 = nn.Conv2d(conv1_channels, conv2_channels, kernel_size=3)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc1 = nn.Linear(conv2_channels * 5 * 5, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """Map a batch of images ``(N, 1, 28, 28)`` to log-probabilities ``(N, num_classes)``.

        Raises:
            InputShapeError: ``images`` is not of shape ``(N, 1, 28, 28)``.
        """
        check_image_batch(images)
        # relu(max_pool(x)) == max_pool(relu(x)) with the same gradients, since ReLU is
        # monotonic; pooling first runs the ReLU (and its backward) on 4x fewer values.
        x = F.relu(F.max_pool2d(self.conv1(images), 2))  # (N, 24, 13, 13)
        x = F.relu(F.max_pool2d(self.conv2(x), 2))  # (N, 48, 5, 5)
        x = torch.flatten(x, 1)  # (N, 1200)
        x = F.relu(self.fc1(self.dropout(x)))  # (N, 200)
        x = self.fc2(self.dropout(x))  # (N, 10)
        return F.log_softmax(x, dim=1)


def _conv_block(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inputs, outputs, 3, padding=1, bias=False),
        nn.BatchNorm2d(outputs),
        nn.ReLU(inplace=True),
    )


class MNISTWideNet(nn.Module):
    """A stronger CNN for 28x28 digits (the ``best`` recipe's network), 575,338 parameters.

    Five 3x3 convolutions with batch normalisation in three stages (28x28, 14x14, 7x7), then a
    dropout-regularised classifier::

        conv 1->32, pool                 (32x14x14)
        conv 32->64, conv 64->64, pool   (64x7x7)
        conv 64->128, conv 128->128, pool (128x3x3)
        flatten 1152 -> fc 256 -> ReLU -> dropout -> fc 10 -> log_softmax

    Args:
        width: channels of the first stage (the later stages use 2x and 4x).
        hidden: width of the hidden fully connected layer.
        dropout: dropout probability before the last layer.
        num_classes: number of output classes.

    Raises:
        InvalidArgumentError: a width is not positive or ``dropout`` is outside ``[0, 1)``.

    Example:
        >>> MNISTWideNet()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    #: Runs channels-last and under bf16 autocast with the same results (measured), so
    #: lenetish's automatic speed-ups apply without a check (see :mod:`lenetish.layout`).
    lenetish_fast_path: ClassVar[bool] = True

    def __init__(
        self, *, width: int = 32, hidden: int = 256, dropout: float = 0.3, num_classes: int = 10
    ) -> None:
        super().__init__()
        for name, value in (("width", width), ("hidden", hidden), ("num_classes", num_classes)):
            check_positive_int(name, value)
        check_fraction("dropout", dropout)
        self.features = nn.Sequential(
            _conv_block(1, width),
            nn.MaxPool2d(2),  # 14x14
            _conv_block(width, 2 * width),
            _conv_block(2 * width, 2 * width),
            nn.MaxPool2d(2),  # 7x7
            _conv_block(2 * width, 4 * width),
            _conv_block(4 * width, 4 * width),
            nn.MaxPool2d(2),  # 3x3
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(4 * width * 3 * 3, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, images: Tensor) -> Tensor:
        """Map images ``(N, 1, 28, 28)`` to log-probabilities ``(N, num_classes)``.

        Raises:
            InputShapeError: ``images`` is not of shape ``(N, 1, 28, 28)``.
        """
        check_image_batch(images)
        return F.log_softmax(self.classifier(self.features(images)), dim=1)


#: The networks lenetish can rebuild from a saved file, by class name.
MODELS: dict[str, type[nn.Module]] = {"MNISTConvNet": MNISTConvNet, "MNISTWideNet": MNISTWideNet}

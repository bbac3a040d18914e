"""Batched, on-device data augmentation: random affine transforms of whole batches.

Each image gets its own rotation, scale and shift, applied with one ``affine_grid`` and one
``grid_sample`` call for the whole batch, on whatever device the batch lives on.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lenetish.errors import InvalidArgumentError

__all__ = ["RandomAffine"]


class RandomAffine:
    """Rotate, scale and shift every image of a batch by its own random amounts.

    The parameters are drawn uniformly: an angle in ``[-degrees, degrees]``, a scale in
    ``scale``, a shift of up to ``translate`` times the image size in each direction. Pixels
    that come from outside the image are the background (the normalised value of black).

    Args:
        degrees: largest rotation, in degrees.
        scale: ``(smallest, largest)`` zoom factor.
        translate: largest shift, as a fraction of the image size.
        fill: value of pixels from outside the image (for normalised MNIST, black is
            ``-0.1307 / 0.3081``).
        generator: the random source (``None``: torch's default generator on the batch's
            device, which ``seed_everything`` seeds and checkpoints save).

    Raises:
        InvalidArgumentError: a range is negative or empty.

    Example:
        >>> augment = RandomAffine(degrees=0, scale=(1.0, 1.0), translate=0.0)
        >>> images = torch.rand(4, 1, 28, 28)
        >>> bool(torch.allclose(augment(images), images, atol=1e-5))
        True
    """

    def __init__(
        self,
        *,
        degrees: float = 10.0,
        scale: tuple[float, float] = (0.9, 1.1),
        translate: float = 0.1,
        fill: float = -0.1307 / 0.3081,
        generator: torch.Generator | None = None,
    ) -> None:
        if not degrees >= 0 or not translate >= 0:
            raise InvalidArgumentError(
                f"degrees and translate must be >= 0, got {degrees!r} and {translate!r}"
            )
        if not 0 < scale[0] <= scale[1]:
            raise InvalidArgumentError(
                f"scale must be (low, high) with 0 < low <= high, got {scale!r}"
            )
        self.degrees, self.scale, self.translate = float(degrees), scale, float(translate)
        self.fill = float(fill)
        self.generator = generator

    def __repr__(self) -> str:
        return (
            f"RandomAffine(degrees={self.degrees}, scale={self.scale}, translate={self.translate})"
        )

    def _uniform(self, count: int, low: float, high: float, like: Tensor) -> Tensor:
        draws = torch.rand(count, device=like.device, dtype=torch.float32, generator=self.generator)
        return low + (high - low) * draws

    def matrices(self, images: Tensor) -> Tensor:
        """Draw one ``(2, 3)`` affine matrix per image, ``(N, 2, 3)``, for ``affine_grid``."""
        count = images.shape[0]
        angle = self._uniform(count, -self.degrees, self.degrees, images) * (math.pi / 180)
        zoom = self._uniform(count, self.scale[0], self.scale[1], images)
        shift = self._uniform(2 * count, -self.translate, self.translate, images).view(count, 2)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        # affine_grid maps output coordinates to input ones in [-1, 1]: shifts count double.
        row0 = torch.stack([cos, -sin, 2 * shift[:, 0]], dim=1)
        row1 = torch.stack([sin, cos, 2 * shift[:, 1]], dim=1)
        return torch.stack([row0, row1], dim=1)

    def __call__(self, images: Tensor) -> Tensor:
        """Return a transformed copy of ``images`` ``(N, C, H, W)``, same shape and dtype."""
        if images.dim() != 4 or images.shape[0] == 0:
            return images
        theta = self.matrices(images)
        source = images.float() - self.fill  # zero outside the image means "fill" after
        grid = F.affine_grid(theta, list(source.shape), align_corners=False)
        moved = F.grid_sample(
            source, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        return (
            (moved + self.fill)
            .to(images.dtype)
            .contiguous(
                memory_format=torch.channels_last
                if images.is_contiguous(memory_format=torch.channels_last)
                else torch.contiguous_format
            )
        )

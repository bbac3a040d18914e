"""Batched, on-device data augmentation: random affine transforms of whole batches.

Each image gets its own rotation, scale and shift, and optionally an elastic distortion (a
smooth random displacement field, as in Simard et al., 2003), applied with one sampling grid
and one ``grid_sample`` call for the whole batch, on whatever device the batch lives on.
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

    With ``elastic_alpha > 0`` every image is also bent by its own elastic distortion: a field
    of uniform random pixel displacements in ``[-1, 1]`` is smoothed by a Gaussian of width
    ``elastic_sigma`` pixels and multiplied by ``elastic_alpha`` (Simard et al. used 34 and 4
    on 28x28 digits). ``elastic_alpha=0`` (the default) draws nothing extra, so the random
    stream, and every result without it, stays as it was.

    Args:
        degrees: largest rotation, in degrees.
        scale: ``(smallest, largest)`` zoom factor.
        translate: largest shift, as a fraction of the image size.
        fill: value of pixels from outside the image (for normalised MNIST, black is
            ``-0.1307 / 0.3081``).
        elastic_alpha: strength of the elastic distortion, in pixels (0: none).
        elastic_sigma: smoothness of the elastic distortion: the Gaussian's standard
            deviation, in pixels.
        generator: the random source (``None``: torch's default generator on the batch's
            device, which ``seed_everything`` seeds and checkpoints save).

    Raises:
        InvalidArgumentError: a range is negative or empty, or ``elastic_sigma`` is not
            positive.

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
        elastic_alpha: float = 0.0,
        elastic_sigma: float = 4.0,
        generator: torch.Generator | None = None,
    ) -> None:
        if not degrees >= 0 or not translate >= 0:
            raise InvalidArgumentError(
                f"degrees and translate must be >= 0, got {degrees!r} and {translate!r}"
            )
        if not elastic_alpha >= 0 or not elastic_sigma > 0:
            raise InvalidArgumentError(
                f"elastic_alpha must be >= 0 and elastic_sigma > 0, got {elastic_alpha!r} "
                f"and {elastic_sigma!r}"
            )
        if not 0 < scale[0] <= scale[1]:
            raise InvalidArgumentError(
                f"scale must be (low, high) with 0 < low <= high, got {scale!r}"
            )
        self.degrees, self.scale, self.translate = float(degrees), scale, float(translate)
        self.fill = float(fill)
        self.elastic_alpha, self.elastic_sigma = float(elastic_alpha), float(elastic_sigma)
        self.generator = generator

    def __repr__(self) -> str:
        elastic = (
            f", elastic_alpha={self.elastic_alpha}, elastic_sigma={self.elastic_sigma}"
            if self.elastic_alpha
            else ""
        )
        return (
            f"RandomAffine(degrees={self.degrees}, scale={self.scale}, "
            f"translate={self.translate}{elastic})"
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

    def displacements(self, images: Tensor) -> Tensor:
        """Draw one smooth elastic displacement field per image, ``(N, H, W, 2)``.

        The field is in ``grid_sample``'s units (the image spans ``[-1, 1]``), ``x`` first.
        """
        count, _, height, width = images.shape
        noise = torch.rand(count, 2, height, width, device=images.device, generator=self.generator)
        smooth = self.elastic_alpha * _gaussian_blur(2 * noise - 1, self.elastic_sigma)
        # Pixels to grid units with Python scalars: no host-to-device copy, so a CUDA graph
        # can capture this. (N, 2, H, W) -> (N, H, W, 2)
        return torch.stack([smooth[:, 0] * (2 / width), smooth[:, 1] * (2 / height)], dim=-1)

    def __call__(self, images: Tensor) -> Tensor:
        """Return a transformed copy of ``images`` ``(N, C, H, W)``, same shape and dtype."""
        if images.dim() != 4 or images.shape[0] == 0:
            return images
        theta = self.matrices(images)
        source = images.float() - self.fill  # zero outside the image means "fill" after
        grid = F.affine_grid(theta, list(source.shape), align_corners=False)
        if self.elastic_alpha:
            grid = grid + self.displacements(images)
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


def _gaussian_blur(fields: Tensor, sigma: float) -> Tensor:
    """Blur each channel of ``fields`` ``(N, C, H, W)`` with a Gaussian (zero beyond the edge)."""
    height, width = fields.shape[-2:]
    # As two plain matrix products, rows then columns: far faster on CPUs than a depthwise
    # conv2d with a long kernel (the blur matrices are symmetric, so no transposes of them).
    row_blur = _blur_matrix(width, sigma, fields)
    column_blur = row_blur if height == width else _blur_matrix(height, sigma, fields)
    along_rows = (fields.reshape(-1, width) @ row_blur).view_as(fields)
    columns_last = along_rows.transpose(-1, -2).reshape(-1, height)
    along_both = (columns_last @ column_blur).view(*fields.shape[:-2], width, height)
    return along_both.transpose(-1, -2)


def _blur_matrix(size: int, sigma: float, like: Tensor) -> Tensor:
    """The symmetric ``(size, size)`` matrix of a 1-D Gaussian blur with zero padding."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, device=like.device, dtype=like.dtype)
    kernel_sum = torch.exp(-0.5 * (offsets / sigma) ** 2).sum()
    positions = torch.arange(size, device=like.device, dtype=like.dtype)
    distances = positions.view(-1, 1) - positions.view(1, -1)
    weights = torch.exp(-0.5 * (distances / sigma) ** 2) * (distances.abs() <= radius)
    # Divided by the whole kernel's sum, not each row's: near the edge the field fades, as
    # with zero padding, instead of being renormalised.
    return weights / kernel_sum

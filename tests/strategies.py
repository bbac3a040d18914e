"""Hypothesis strategies shared by the test modules."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

batch_sizes = st.integers(min_value=1, max_value=512)
seeds = st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def uint8_tensors(draw: st.DrawFn, *, max_dims: int = 3, max_side: int = 6) -> torch.Tensor:
    """A uint8 tensor of 1 to ``max_dims`` dimensions, each of size 0 to ``max_side``."""
    shape = draw(st.lists(st.integers(0, max_side), min_size=1, max_size=max_dims))
    count = 1
    for side in shape:
        count *= side
    values = draw(st.lists(st.integers(0, 255), min_size=count, max_size=count))
    return torch.tensor(values, dtype=torch.uint8).reshape(shape)

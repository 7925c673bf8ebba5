"""Type aliases of jaxconv's public signatures.

Arrays follow the JAX ecosystem: inputs are `jax.typing.ArrayLike` (so a
NumPy array type-checks too), results are `jax.Array`, dtypes are
`jax.typing.DTypeLike` and precisions `jax.lax.PrecisionLike`. The aliases
below name PyTorch's size and padding forms; the docs list them under "Types
in signatures".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from jax import Array as Array
from jax.lax import PrecisionLike as PrecisionLike
from jax.typing import ArrayLike as ArrayLike
from jax.typing import DTypeLike as DTypeLike

Size: TypeAlias = int | Sequence[int]
"""One int for every spatial dim, or one int per dim: `stride`, `dilation`,
`kernel_size`, `patch_size`, a spatial size."""

Padding: TypeAlias = int | str | Sequence[int | tuple[int, int]]
"""Zero padding: an int for every side, per-dim ints, per-dim `(lo, hi)` pairs
(negative values crop), or 'VALID', 'SAME', 'SAME_LOWER', 'FULL'
(case-insensitive)."""

Shape: TypeAlias = Sequence[int]
"""An array's shape, e.g. `(N, C_in, *spatial)`."""

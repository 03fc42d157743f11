"""A compressed per-user item list (CSR) held as torch tensors.

Used wherever the library needs "the items of these users": seen-item exclusion in full ranking,
ground truth for ranking metrics and rejection of positives in negative sampling. Rows are sorted
and duplicate-free, so membership tests can use ``searchsorted``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch


@dataclass(frozen=True)
class InteractionMatrix:
    """Binary user x item matrix in CSR form: ``indices[indptr[u]:indptr[u+1]]`` are user ``u``'s items."""

    indptr: torch.Tensor  # int64 [n_users + 1]
    indices: torch.Tensor  # int64 [nnz], sorted within each row
    n_items: int

    @classmethod
    def from_pairs(cls, users: np.ndarray | torch.Tensor, items: np.ndarray | torch.Tensor, n_users: int,
                   n_items: int) -> InteractionMatrix:
        """Build from parallel id arrays; duplicate pairs collapse to one entry."""
        users = torch.as_tensor(np.asarray(users), dtype=torch.int64)
        items = torch.as_tensor(np.asarray(items), dtype=torch.int64)
        keys = torch.unique(users * n_items + items)  # sorted: by user, then item
        rows = keys // n_items
        indptr = torch.zeros(n_users + 1, dtype=torch.int64)
        indptr[1:] = torch.cumsum(torch.bincount(rows, minlength=n_users), 0)
        return cls(indptr=indptr, indices=keys % n_items, n_items=n_items)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def counts(self) -> torch.Tensor:
        """Items per user, int64 [n_users]."""
        return self.indptr[1:] - self.indptr[:-1]

    def rows(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coordinates of the given users' entries: ``(batch_row [m], item [m])``.

        ``batch_row`` indexes into ``users`` (0..len(users)-1), ready for scattering into a ``[B, n_items]``
        score block. Vectorised: no Python loop over users.
        """
        users = users.to(self.indptr.device)
        starts = self.indptr[users]
        counts = self.indptr[users + 1] - starts
        batch_row = torch.repeat_interleave(torch.arange(len(users), device=users.device), counts)
        offsets = torch.arange(len(batch_row), device=users.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts)
        return batch_row, self.indices[starts[batch_row] + offsets]

    def contains(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Element-wise membership ``items[j] in row users[j]`` -> bool [n]."""
        flat = self.flat_keys
        query = users.to(flat.device) * self.n_items + items.to(flat.device)
        if len(flat) == 0:
            return torch.zeros_like(query, dtype=torch.bool)
        pos = torch.searchsorted(flat, query).clamp(max=len(flat) - 1)
        return flat[pos] == query

    @cached_property
    def flat_keys(self) -> torch.Tensor:
        """Sorted ``user * n_items + item`` keys, computed once (cached_property bypasses the frozen setattr)."""
        rows = torch.repeat_interleave(torch.arange(self.n_users, device=self.indptr.device), self.counts())
        return rows * self.n_items + self.indices

    def to_dense(self, users: torch.Tensor | None = None) -> torch.Tensor:
        """Dense bool ``[B, n_items]`` block for the given users (all users when None). Small data only."""
        users = torch.arange(self.n_users) if users is None else users
        out = torch.zeros(len(users), self.n_items, dtype=torch.bool, device=self.indptr.device)
        row, col = self.rows(users)
        out[row, col] = True
        return out

    def to(self, device: torch.device | str) -> InteractionMatrix:
        return InteractionMatrix(self.indptr.to(device), self.indices.to(device), self.n_items)

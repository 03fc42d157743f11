"""DeepFM: the FM term against the pairwise sum it abbreviates."""

from __future__ import annotations

import itertools

import torch

from distillrec.models.deepfm import DeepFM, DeepFMConfig
from distillrec.runs import data_shape


def test_fm_term_is_the_sum_of_pairwise_inner_products(tiny_synthetic) -> None:
    torch.manual_seed(0)
    model = DeepFM(data_shape(tiny_synthetic), DeepFMConfig(embed_dim=4, hidden=(8,), dropout=0.0)).eval()
    n_fields = model.n_fields
    fields = torch.randn(5, n_fields, 4)
    pairwise = torch.stack([sum((row[a] * row[b]).sum() for a, b in itertools.combinations(range(n_fields), 2))
                            for row in fields])
    with torch.no_grad():
        out = model.interact(fields)
    assert out.shape == (5, 8 + 1)
    torch.testing.assert_close(out[:, -1], pairwise, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:, :-1], model.mlp(fields.flatten(1)))

"""xDeepFM (Lian et al., "xDeepFM: Combining Explicit and Implicit Feature Interactions for Recommender Systems",
KDD 2018).

Three parts share the field embeddings ``X^0 [F, D]``: the linear (first-order) terms of the base class, a
Compressed Interaction Network (CIN, explicit vector-wise interactions of bounded degree) and a DNN over the
flattened fields (implicit interactions). CIN layer ``k`` builds feature maps from the previous layer and ``X^0``
(paper Eq. 6)::

    X^k[g, :] = sum_{h, f} W^k[g, h, f] * (X^{k-1}[h, :] o X^0[f, :]) + b^k[g]        (o: Hadamard product)

i.e. the outer product ``z = X^{k-1} (x) X^0`` of shape ``[H_{k-1} * F, D]`` followed by a 1x1 convolution over
it with ``H_k`` output channels (the feature maps). Each map is sum-pooled over ``D`` and the pooled maps of all
layers are concatenated (``p+``). With ``cin_split_half`` (as in the authors' code and DeepCTR), every layer but
the last sends half of its maps to the next layer and the other half to the output. As in the paper's Eq. 6 and
the authors' code (``cross_activation: identity``) the maps are not passed through a non-linearity by default;
``cin_activation="relu"`` gives DeepCTR's variant. The paper feeds ``p+``, the DNN output and the linear terms to
one output unit; here ``[p+, dnn]`` feeds the two task heads of ``FieldInteractionModel``.

Structure for Fisher analysis and pruning: ``cin.layers[k]`` is an ``nn.Linear(H_{k-1} * F, H_k)`` (a 1x1
convolution in channels-last form). Its output rows are layer ``k``'s feature maps; input column ``h * F + f``
is the product of map ``h`` of layer ``k - 1`` with field ``f``. ``cin.next_maps[k]`` maps (the first rows) feed
layer ``k + 1``, the last ``cin.direct_maps[k]`` rows are pooled into ``p+``, in layer order.

Speed: each layer is one GEMM over ``[N * D, H_{k-1} * F]`` (no loops over fields or samples). Full ranking
(``score``) with the identity activation is computed exactly without materialising the per-pair outer products:
the maps of layer 1 are a quadratic form in the (user, item) fields, which splits into user-only, item-only and
user x item parts, and each map sent to the output only matters through the head's weights, so all of a layer's
output maps collapse into one effective map before the per-pair work. See ``_cin_pair_scores``.

Defaults chosen on validation only (ml-100k, seed 0, embed 16, Adam, batch 256; valid metrics, test not read):
see ``DEFAULTS_SEARCH`` at the end of this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from distillrec.errors import DistillrecError
from distillrec.models.base import DataShape
from distillrec.models.field_model import SCORE_CHUNK_PAIRS, FieldInteractionModel
from distillrec.models.layers import MLP
from distillrec.registry import register_model

ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU}


@dataclass(frozen=True)
class XDeepFMConfig:
    """Embedding size, CIN feature maps per layer, DNN widths (``()`` = no DNN, the paper's CIN-only model)."""

    embed_dim: int = 16
    cin_layers: tuple[int, ...] = (64, 64)
    cin_split_half: bool = True
    cin_activation: str = "identity"
    mlp_hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    use_features: bool = True
    embed_reg: float = 0.0


class CIN(nn.Module):
    """Compressed Interaction Network: ``[N, F, D]`` fields -> ``[N, sum(direct_maps)]`` sum-pooled feature maps."""

    def __init__(self, n_fields: int, layer_sizes: Sequence[int], split_half: bool = True,
                 activation: str = "identity") -> None:
        super().__init__()
        if not layer_sizes or min(layer_sizes) < 1:
            raise DistillrecError(f"xdeepfm: cin_layers needs at least one positive size, got {tuple(layer_sizes)}")
        if activation not in ACTIVATIONS:
            raise DistillrecError(f"xdeepfm: cin_activation must be one of {', '.join(ACTIVATIONS)}")
        self.n_fields = n_fields
        self.activation = activation
        self.act = ACTIVATIONS[activation]()
        self.layers = nn.ModuleList()
        self.next_maps: list[int] = []  # first rows of each layer: input of the next layer
        self.direct_maps: list[int] = []  # last rows of each layer: sum-pooled into the output
        prev = n_fields
        for k, size in enumerate(layer_sizes):
            last = k == len(layer_sizes) - 1
            if split_half and not last and size % 2:
                raise DistillrecError(f"xdeepfm: with cin_split_half, cin_layers[{k}]={size} must be even")
            self.layers.append(nn.Linear(prev * n_fields, size))
            n_next = 0 if last else size // 2 if split_half else size
            self.next_maps.append(n_next)
            self.direct_maps.append(size - n_next if split_half else size)
            prev = n_next

    @property
    def out_dim(self) -> int:
        return sum(self.direct_maps)

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]`` -> ``[N, sum(direct_maps)]``; maps are kept channels-last (``[N, D, H]``) for the GEMMs."""
        x0 = fields.transpose(1, 2)  # [N, D, F]
        hidden, pooled = x0, []
        for layer, n_next, n_direct in zip(self.layers, self.next_maps, self.direct_maps, strict=True):
            # z[n, d, h * F + f] = X^{k-1}[n, h, d] * X^0[n, f, d]: the outer product, so the 1x1 conv is one GEMM
            z = (hidden.unsqueeze(-1) * x0.unsqueeze(-2)).flatten(2)  # [N, D, H * F]
            maps = self.act(layer(z))  # [N, D, H_k]
            pooled.append(maps[..., maps.shape[-1] - n_direct:].sum(dim=1))  # sum pooling over D
            hidden = maps[..., :n_next]
        return torch.cat(pooled, dim=1)


@register_model("xdeepfm")
class XDeepFM(FieldInteractionModel):
    config_class = XDeepFMConfig
    train_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, shape: DataShape, config: XDeepFMConfig) -> None:
        super().__init__(shape, config)
        self.cin = CIN(self.n_fields, tuple(config.cin_layers), config.cin_split_half, config.cin_activation)
        hidden = tuple(config.mlp_hidden)
        self.mlp = MLP(self.n_fields * config.embed_dim, hidden, config.dropout) if hidden else None
        self.build_heads(self.cin.out_dim + (self.mlp.out_dim if self.mlp is not None else 0))

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]`` -> ``[N, H]``: the pooled CIN maps ``p+``, then the DNN output."""
        parts = [self.cin(fields)]
        if self.mlp is not None:
            parts.append(self.mlp(fields.flatten(1)))
        return torch.cat(parts, dim=1)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, n_items]``, equal to the base class's chunked ``score`` up to float rounding.

        The CIN part is computed in factorised form (identity activation only; otherwise the generic path runs).
        """
        if self.cin.activation != "identity":
            return super().score(users)
        column = 0 if self.rank_by == "rating" else 1
        weight = self.head.weight[column]  # [H]
        w_cin, w_dnn = weight[:self.cin.out_dim], weight[self.cin.out_dim:]
        all_items = torch.arange(self.n_items, device=users.device)
        user_emb, item_emb = self.embedding.user_embeddings(users), self.embedding.item_embeddings(all_items)
        base = (self.linear.user_embeddings(users).sum(1)[:, column, None]
                + self.linear.item_embeddings(all_items).sum(1)[None, :, column] + self.head.bias[column])  # [B, I]
        dnn_user = dnn_item = None
        if self.mlp is not None:  # the DNN's first affine map splits into a user and an item part
            first = self.mlp[0]
            n_user_cols = user_emb.shape[1] * user_emb.shape[2]
            dnn_user = user_emb.flatten(1) @ first.weight[:, :n_user_cols].T + first.bias  # [B, H1]
            dnn_item = item_emb.flatten(1) @ first.weight[:, n_user_cols:].T  # [I, H1]
        batch = len(users)
        chunk = max(1, SCORE_CHUNK_PAIRS // max(1, batch))
        scores = []
        for start in range(0, self.n_items, chunk):
            stop = min(start + chunk, self.n_items)
            part = base[:, start:stop] + self._cin_pair_scores(user_emb, item_emb[start:stop], w_cin)
            if dnn_user is not None:
                hidden = dnn_user[:, None] + dnn_item[None, start:stop]  # [B, C, H1], before its ReLU
                for module in list(self.mlp)[1:]:
                    hidden = module(hidden)
                part = part + hidden @ w_dnn
            scores.append(part)
        return torch.cat(scores, dim=1)

    def _cin_pair_scores(self, user: torch.Tensor, item: torch.Tensor, w_cin: torch.Tensor) -> torch.Tensor:
        """``w_cin . p+`` for all pairs of ``[B, Fu, D]`` users and ``[C, Fi, D]`` items -> ``[B, C]``.

        Per layer, the output maps are collapsed first: ``sum_g w_g X^k[g]`` is itself one map with weights
        ``sum_g w_g W^k[g]``, so a layer is evaluated for its ``next_maps`` plus one effective map. Layer 1's
        maps are ``sum_{i,j} W[g, i, j] x_i o x_j`` over fields ``x = [user; item]``: user-user and item-item
        terms are computed once per user / item, the user-item term as ``sum_j M[b, g, j] o v_j`` with
        ``M[b, g, j] = sum_i (W[g, i, j] + W[g, j, i]) u_i``. Later layers use
        ``sum_h X[h] o (sum_{f in user} W[g, h, f] u_f + sum_{f in item} W[g, h, f] v_f)``, i.e. two batched GEMMs
        with per-user and per-item weights instead of the ``H * F`` outer product.
        """
        n_user_fields, n_fields = user.shape[1], self.n_fields
        offset, total, hidden = 0, 0.0, None  # hidden: [B, C, D, H] maps of the previous layer
        for k, layer in enumerate(self.cin.layers):
            n_next, n_direct = self.cin.next_maps[k], self.cin.direct_maps[k]
            rows = slice(layer.out_features - n_direct, layer.out_features)
            w = w_cin[offset:offset + n_direct]
            offset += n_direct
            weight = layer.weight.view(layer.out_features, -1, n_fields)  # [G, H, F]
            eff_w = torch.cat([weight[:n_next], (w @ weight[rows].flatten(1)).view(1, *weight.shape[1:])])
            eff_b = torch.cat([layer.bias[:n_next], (w @ layer.bias[rows]).view(1)])  # [G']
            user_w, item_w = eff_w[..., :n_user_fields], eff_w[..., n_user_fields:]  # [G', H, Fu], [G', H, Fi]
            if k == 0:
                uu = torch.einsum("gij,bid,bjd->bdg", user_w[:, :n_user_fields], user, user)  # [B, D, G']
                vv = torch.einsum("gij,cid,cjd->cdg", item_w[:, n_user_fields:], item, item)  # [C, D, G']
                sym = user_w[:, n_user_fields:].transpose(1, 2) + item_w[:, :n_user_fields]  # [G', Fu, Fi] (i, j)
                mixed = torch.einsum("gij,bid->bdgj", sym, user)  # [B, D, G', Fi]
                cross = torch.einsum("bdgj,cjd->bcdg", mixed, item)  # [B, C, D, G']
                maps = cross + uu[:, None] + vv[None] + eff_b
            else:
                per_user = torch.einsum("ghf,bfd->bdhg", user_w, user)  # [B, D, H, G']
                per_item = torch.einsum("ghf,cfd->cdhg", item_w, item)  # [C, D, H, G']
                maps = (torch.einsum("bcdh,bdhg->bcdg", hidden, per_user)
                        + torch.einsum("bcdh,cdhg->bcdg", hidden, per_item) + eff_b)
            total = total + maps[..., -1].sum(dim=2)  # the collapsed output map, sum-pooled over D
            hidden = maps[..., :n_next]
        return total


#: Validation search behind the defaults (filled from the runs recorded in the module docstring).
DEFAULTS_SEARCH: dict[str, Any] = {}

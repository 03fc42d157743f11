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
see ``XDeepFM.train_defaults``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from distillrec.errors import DistillrecError
from distillrec.models.base import DataShape
from distillrec.models.field_model import FieldInteractionModel
from distillrec.models.layers import MLP
from distillrec.registry import register_model

ACTIVATIONS = {"identity": nn.Identity, "relu": nn.ReLU}
#: pairs per chunk for the DNN in ``score``: ``[pairs, H1]`` activations stay within a core's L2 cache (4x faster
#: than the base class's 32768 on one thread)
DNN_CHUNK_PAIRS = 8192


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
    #: L2 weight on the CIN's 1x1-conv weights (DeepCTR's ``l2_reg_cin``), added to every batch's loss
    cin_reg: float = 0.01


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
        """``[N, F, D]`` -> ``[N, sum(direct_maps)]``.

        Maps are held as ``[H, N * D]`` (a 1x1 convolution's ``[channels, length]`` with every sample's ``D``
        positions side by side): the outer product then runs along the long contiguous axis, each layer is one
        GEMM ``W [H_k, H * F] @ z [H * F, N * D]``, and autograd's reductions for the product are contiguous too.
        """
        n, n_fields, dim = fields.shape
        x0 = fields.transpose(0, 1).reshape(n_fields, n * dim)  # [F, N * D]
        hidden, pooled = x0, []
        for layer, n_next, n_direct in zip(self.layers, self.next_maps, self.direct_maps, strict=True):
            z = (hidden.unsqueeze(1) * x0.unsqueeze(0)).flatten(0, 1)  # [H * F, N * D], row h * F + f
            maps = self.act(torch.addmm(layer.bias.unsqueeze(1), layer.weight, z))  # [H_k, N * D]
            pooled.append(maps[len(maps) - n_direct:].view(n_direct, n, dim).sum(dim=2))  # sum pooling over D
            hidden = maps[:n_next]
        return torch.cat(pooled).t()


@register_model("xdeepfm")
class XDeepFM(FieldInteractionModel):
    config_class = XDeepFMConfig
    # Chosen on validation (ml-100k P-RANK seed 0, task both, valid NDCG@10; test never read). lr 1e-3, batch 256:
    #   BPR 1 negative, rating_weight 0.5 -> 0.177 | 4 negatives, rating_weight 0.02 -> 0.219 (chosen)
    #   (4 negatives, rating_weight 0.02:) embed 32 -> 0.217; lr 2e-3 -> 0.216
    #   Without cin_reg, valid NDCG@10 peaks by epoch 5-8 and then falls while the training loss keeps dropping:
    #   the CIN overfits, and an L2 on its weights cures that where one on the embeddings does not.
    #   embed_reg 1e-3 -> 0.222, 1e-2 -> 0.222; AdamW weight decay 0.1 -> 0.220; DNN (256, 128, 64) -> 0.224;
    #   cin_reg 1e-4 -> 0.227 | 1e-3 -> 0.243 | 1e-2 -> 0.247 (chosen; valid RMSE 0.920, 0.924 without) | 1e-1 ->
    #   0.240 by epoch 23, below 1e-2 at every epoch (runs on one thread, two at a time)
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 256, "n_negatives": 4,
                                                "rating_weight": 0.02}

    def __init__(self, shape: DataShape, config: XDeepFMConfig) -> None:
        super().__init__(shape, config)
        self.cin = CIN(self.n_fields, tuple(config.cin_layers), config.cin_split_half, config.cin_activation)
        hidden = tuple(config.mlp_hidden)
        self.mlp = MLP(self.n_fields * config.embed_dim, hidden, config.dropout) if hidden else None
        self.build_heads(self.cin.out_dim + (self.mlp.out_dim if self.mlp is not None else 0))

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        reg = super().regularization(users, items)
        if self.config.cin_reg:
            reg = reg + self.config.cin_reg * sum(layer.weight.pow(2).sum() for layer in self.cin.layers)
        return reg

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]`` -> ``[N, H]``: the pooled CIN maps ``p+``, then the DNN output."""
        parts = [self.cin(fields)]
        if self.mlp is not None:
            parts.append(self.mlp(fields.flatten(1)))
        return torch.cat(parts, dim=1)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """``[B]`` -> ``[B, n_items]``, equal to the base class's chunked ``score`` up to float rounding.

        With the identity activation and at most two CIN layers the CIN part is an exact low-rank product
        (``_cin_factors``); only the DNN is evaluated per pair. Other configurations take the generic path.
        """
        if self.cin.activation != "identity" or len(self.cin.layers) > 2:
            return super().score(users)
        column = 0 if self.rank_by == "rating" else 1
        weight = self.head.weight[column]  # [H]
        w_cin, w_dnn = weight[:self.cin.out_dim], weight[self.cin.out_dim:]
        all_items = torch.arange(self.n_items, device=users.device)
        user_emb, item_emb = self.embedding.user_embeddings(users), self.embedding.item_embeddings(all_items)
        user_mat, user_only, item_mat, item_only = self._cin_factors(user_emb, item_emb, w_cin)
        user_only = user_only + self.linear.user_embeddings(users).sum(1)[:, column] + self.head.bias[column]
        item_only = item_only + self.linear.item_embeddings(all_items).sum(1)[:, column]
        scores = torch.addmm(user_only[:, None] + item_only[None], user_mat, item_mat.T)  # [B, I]
        if self.mlp is None:
            return scores
        # The DNN's first affine map splits into a user and an item part; the rest runs per pair, in item chunks.
        first = self.mlp[0]
        n_user_cols = user_emb.shape[1] * user_emb.shape[2]
        dnn_user = user_emb.flatten(1) @ first.weight[:, :n_user_cols].T + first.bias  # [B, H1]
        dnn_item = item_emb.flatten(1) @ first.weight[:, n_user_cols:].T  # [I, H1]
        chunk = max(1, DNN_CHUNK_PAIRS // max(1, len(users)))
        for start in range(0, self.n_items, chunk):
            hidden = dnn_user[:, None] + dnn_item[None, start:start + chunk]  # [B, C, H1], before its ReLU
            for module in list(self.mlp)[1:]:
                hidden = module(hidden)
            scores[:, start:start + chunk] += hidden @ w_dnn
        return scores

    def _cin_factors(self, user: torch.Tensor, item: torch.Tensor,
                     w_cin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``w_cin . p+`` for all pairs of ``[B, Fu, D]`` users and ``[C, Fi, D]`` items, as
        ``user_mat [B, K] @ item_mat[C, K].T + user_only [B, 1] + item_only [1, C]`` (identity activation, <= 2
        layers).

        The output maps of a layer matter only through the head: ``sum_g w_g X^k[g]`` is one map with weights
        ``E = sum_g w_g W^k[g]``. Layer 1 is a quadratic form in ``x = [u; v]``: ``sum_{i,j} E[i,j] <x_i, x_j>`` splits
        into user-user, item-item and user-item terms (``E[i,j] + E[j,i]``, ``i`` user, ``j`` item). Its maps sent
        on are ``X^1[h] = A_h(u) + B_h(v) + sum_j M_hj(u) o v_j``; layer 2 collapses to
        ``sum_{h,d} X^1[h] o (c^u_h(u) + c^v_h(v))`` with ``c^u_h = sum_{f in user} E[h, f] u_f`` (and ``c^v`` alike),
        whose expansion is a sum of inner products of a user-side and an item-side tensor.
        """
        n_user_fields, dim = user.shape[1], user.shape[2]
        layer = self.cin.layers[0]
        n_next, n_direct = self.cin.next_maps[0], self.cin.direct_maps[0]
        weight = layer.weight.view(layer.out_features, self.n_fields, self.n_fields)  # [G, F, F]
        w_direct = w_cin[:n_direct]
        eff = w_direct @ weight[-n_direct:].flatten(1)  # [F * F]: the collapsed output map of layer 1
        eff = eff.view(self.n_fields, self.n_fields)
        u_fields, i_fields = slice(0, n_user_fields), slice(n_user_fields, self.n_fields)
        user_only = torch.einsum("ij,bid,bjd->b", eff[u_fields, u_fields], user, user)
        user_only = user_only + dim * (w_direct @ layer.bias[-n_direct:])
        item_only = torch.einsum("ij,cid,cjd->c", eff[i_fields, i_fields], item, item)
        with_item = torch.einsum("ij,bid->bjd", eff[u_fields, i_fields] + eff[i_fields, u_fields].T, user)
        user_parts, item_parts = [], []
        if len(self.cin.layers) == 2:
            w = weight[:n_next]  # [H, F, F]: the maps layer 2 reads
            a = torch.einsum("hij,bid,bjd->bhd", w[:, u_fields, u_fields], user, user) + layer.bias[:n_next, None]
            b = torch.einsum("hij,cid,cjd->chd", w[:, i_fields, i_fields], item, item)  # [C, H, D]
            m = torch.einsum("hij,bid->bhjd", w[:, u_fields, i_fields] + w[:, i_fields, u_fields].transpose(1, 2),
                             user)  # [B, H, Fi, D]
            last = self.cin.layers[1]
            eff2 = (w_cin[n_direct:] @ last.weight).view(n_next, self.n_fields)  # [H, F]
            cu = torch.einsum("hf,bfd->bhd", eff2[:, u_fields], user)  # [B, H, D]
            cv = torch.einsum("hf,cfd->chd", eff2[:, i_fields], item)  # [C, H, D]
            user_only = user_only + (a * cu).sum((1, 2)) + dim * (w_cin[n_direct:] @ last.bias)
            item_only = item_only + (b * cv).sum((1, 2))
            with_item = with_item + torch.einsum("bhjd,bhd->bjd", m, cu)
            user_parts += [a, cu, m]
            item_parts += [cv, b, cv.unsqueeze(2) * item.unsqueeze(1)]
        user_mat = torch.cat([with_item.flatten(1), *(p.flatten(1) for p in user_parts)], dim=1)
        item_mat = torch.cat([item.flatten(1), *(p.flatten(1) for p in item_parts)], dim=1)
        return user_mat, user_only, item_mat, item_only

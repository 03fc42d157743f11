"""AutoInt (Song et al., "AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks",
CIKM 2019).

Each field embedding ``e_m`` (``[D]``) is refined by a stack of *interacting layers*. One layer, for every head
``h`` with its own projections ``W_q^h, W_k^h, W_v^h`` (``[D_in, d_head]``):

    alpha^h_{m,k} = softmax_k(<W_q^h e_m, W_k^h e_k>)      (paper eq. 5-6: plain inner product, over all fields k)
    e~^h_m       = sum_k alpha^h_{m,k} W_v^h e_k            (eq. 6)
    e~_m         = e~^1_m (+) ... (+) e~^H_m                (eq. 7, concatenation: [H * d_head])
    e^Res_m      = ReLU(e~_m + W_res e_m)                   (eq. 8; without the residual, ReLU(e~_m))

The last layer's field representations are concatenated (``[F * H * d_head]``) and fed to the two task heads of
:class:`FieldInteractionModel`, which also adds the first-order (linear) term of every field. With ``hidden``
non-empty, an MLP over the flat embeddings runs in parallel and its output is concatenated too: the paper's
AutoInt+ variant, as DeepCTR-Torch builds it.

Structure for Fisher analysis and head pruning: every interacting layer is its own module (``model.layers[l]``)
holding ``W_q``, ``W_k``, ``W_v`` and ``W_res``, each ``[D_in, n_heads * d_head]``; head ``h`` owns the contiguous
column slice ``layer.head_slice(h)`` of each, and the same channels of the layer's output ``[.., F, H * d_head]``.
Each layer carries its own ``n_heads`` and ``d_head``; the config's ``n_heads`` may be a per-layer tuple, so a
pruned model (fewer heads in some layers) is rebuilt from its JSON config. ``layer.head_mask`` (``None`` by
default) scales each head's attention output, the usual handle for head-importance scores (Michel et al., 2019).

Defaults chosen on validation (seed 0, ml-100k; test never read), see ``AutoInt.train_defaults``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from distillrec.errors import DistillrecError
from distillrec.models.base import DataShape
from distillrec.models.field_model import FieldInteractionModel
from distillrec.models.layers import MLP
from distillrec.registry import register_model

#: pairs per pass through the attention stack at inference: full ranking sends 32k pairs at once, whose
#: activations (~5 KB per pair and layer) spill out of the L2 cache; 2k-pair blocks stay in it (~2x faster)
INFERENCE_BLOCK = 2048


@dataclass(frozen=True)
class AutoIntConfig:
    """Attention stack sizes (``n_heads``: one int for all layers or one per layer), AutoInt+ MLP, regularisation."""

    embed_dim: int = 16
    n_layers: int = 3
    n_heads: int | tuple[int, ...] = 2
    d_head: int = 8
    use_residual: bool = True
    #: divide attention logits by sqrt(d_head) (Transformer style); the paper uses the plain inner product
    scale_attention: bool = False
    #: AutoInt+: widths of an MLP over the flat embeddings, run in parallel to the attention; () = plain AutoInt.
    #: AutoInt+ is the default: it ranked clearly better on validation (see ``AutoInt.train_defaults``)
    hidden: tuple[int, ...] = (256, 128, 64)
    #: dropout on the attention weights and in the MLP (training only)
    dropout: float = 0.0
    use_features: bool = True
    embed_reg: float = 0.0
    #: L2 weight on the interacting layers' projections (W_q, W_k, W_v, W_res), added to every batch's loss: the
    #: counterpart of xDeepFM's ``cin_reg``
    attention_reg: float = 1e-4


class InteractingLayer(nn.Module):
    """Multi-head self-attention over fields, residual, ReLU: ``[N, F, D_in] -> [N, F, n_heads * d_head]``.

    Computed without a head axis: ``W_k`` and ``W_v`` are expanded block-diagonally (``[D_in, H * H*d]``: block
    ``h'`` keeps only head ``h'``'s columns), so one batched product ``K_exp Q^T`` gives every head's logits as
    ``[N, F_k * H, F_q]`` and one product ``A^T V_exp`` gives the heads already concatenated. This doubles a few
    tiny matmuls (for 2 heads) but needs no transposes to and from a ``[N, H, F, d]`` layout, and the softmax
    runs over a strided axis of 16 contiguous values instead of a last axis of ``F = 8`` (PyTorch's CPU softmax
    over a last axis that short is ~15x slower). Parameters stay the plain ``[D_in, H * d]`` projections.
    """

    def __init__(self, in_dim: int, n_heads: int, d_head: int, use_residual: bool = True,
                 scale_attention: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if n_heads < 1 or d_head < 1:
            raise DistillrecError(f"autoint: every layer needs n_heads >= 1 and d_head >= 1, got {n_heads}, {d_head}")
        self.in_dim, self.n_heads, self.d_head = in_dim, n_heads, d_head
        self.use_residual = use_residual
        self.dropout = dropout
        self.scale = 1.0 / math.sqrt(d_head) if scale_attention else 1.0
        width = n_heads * d_head
        self.W_q = nn.Parameter(torch.empty(in_dim, width))
        self.W_k = nn.Parameter(torch.empty(in_dim, width))
        self.W_v = nn.Parameter(torch.empty(in_dim, width))
        self.W_res = nn.Parameter(torch.empty(in_dim, width)) if use_residual else None
        for weight in self.projections():
            nn.init.xavier_uniform_(weight)
        #: optional ``[n_heads]`` factor on each head's attention output (importance scores); not saved
        self.head_mask: torch.Tensor | None = None

    @property
    def out_dim(self) -> int:
        return self.n_heads * self.d_head

    def projections(self) -> list[nn.Parameter]:
        """``[W_q, W_k, W_v(, W_res)]``, each ``[D_in, n_heads * d_head]``."""
        return [self.W_q, self.W_k, self.W_v] + ([self.W_res] if self.W_res is not None else [])

    def head_slice(self, head: int) -> slice:
        """Columns of ``W_q``/``W_k``/``W_v``/``W_res``, and channels of the output, that belong to ``head``."""
        return slice(head * self.d_head, (head + 1) * self.d_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, F, D_in] -> [N, F, n_heads * d_head]``."""
        n, n_fields, _ = x.shape
        heads, width = self.n_heads, self.out_dim
        q, residual, k, v = self._project(x)
        attention = self._attention(q, k, n, n_fields)  # [N, F_k * H, F_q]
        if self.training and self.dropout > 0:
            attention = F.dropout(attention, self.dropout)
        if self.head_mask is not None:
            attention = (attention.view(n, n_fields, heads, n_fields)
                         * self.head_mask.view(1, 1, heads, 1)).view(n, n_fields * heads, n_fields)
        # heads concatenated (eq. 7) and the residual added (eq. 8) in one batched product
        if residual is None:
            out = attention.transpose(1, 2) @ v
        else:
            out = torch.baddbmm(residual.reshape(n, n_fields, width), attention.transpose(1, 2), v)
        return out.relu_()

    def attention_weights(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, F, D_in] -> [N, H, F_q, F_k]``: alpha^h_{m,k} of eq. 6 (rows sum to one)."""
        n, n_fields, _ = x.shape
        q, _, k, _ = self._project(x)
        attention = self._attention(q, k, n, n_fields).view(n, n_fields, self.n_heads, n_fields)
        return attention.permute(0, 2, 3, 1)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``[N, F, D_in]`` -> q, residual (or None) ``[N * F, H*d]``; expanded k, v ``[N, F * H, H*d]``."""
        n, n_fields, _ = x.shape
        heads, width = self.n_heads, self.out_dim
        rows = x.reshape(n * n_fields, -1)
        if self.W_res is None:
            q, residual = rows @ self.W_q, None
        else:
            q, residual = (rows @ torch.cat([self.W_q, self.W_res], dim=1)).split(width, dim=1)
        k = (rows @ self._expand(self.W_k)).reshape(n, n_fields * heads, width)
        v = (rows @ self._expand(self.W_v)).reshape(n, n_fields * heads, width)
        return q, residual, k, v

    def _attention(self, q: torch.Tensor, k: torch.Tensor, n: int, n_fields: int) -> torch.Tensor:
        """Softmax over key fields of every head's logits: ``[N, F_k * H, F_q]``, row ``k * H + h``."""
        logits = k @ q.reshape(n, n_fields, self.out_dim).transpose(1, 2)  # <W_k^h e_k, W_q^h e_m> (eq. 5)
        if self.scale != 1.0:
            logits = logits * self.scale
        return torch.softmax(logits.view(n, n_fields, self.n_heads, n_fields), dim=1).view(n, -1, n_fields)

    def _expand(self, weight: torch.Tensor) -> torch.Tensor:
        """``[D_in, H * d] -> [D_in, H * (H * d)]``: block ``h'`` is ``weight`` with other heads' columns zeroed."""
        heads, d = self.n_heads, self.d_head
        eye = torch.eye(heads, dtype=weight.dtype, device=weight.device)
        return (weight.view(-1, 1, heads, d) * eye.view(1, heads, heads, 1)).reshape(weight.shape[0], -1)


@register_model("autoint")
class AutoInt(FieldInteractionModel):
    """AutoInt / AutoInt+ over the shared field embeddings; see the module docstring for the equations."""

    config_class = AutoIntConfig
    # Chosen on validation (ml-100k P-RANK seed 0, task both, valid NDCG@10; test never read). lr 1e-3, batch 256:
    #   plain AutoInt, BPR 1 negative, rating_weight 0.5 -> 0.194 | 4 negatives, rating_weight 0.02 -> 0.213
    #   (4 negatives, rating_weight 0.02:) embed 32 / d_head 16 -> 0.214; BCE -> 0.213;
    #   AutoInt+ MLP (128, 64) -> 0.233 | (256, 128) -> 0.234 (same within noise, 2x the MLP cost)
    #   (MLP (128, 64), one thread, two runs at a time:) attention dropout 0.1 -> 0.233; n_layers 2 -> 0.232;
    #   attention_reg 1e-4 -> 0.237 | 1e-3 -> 0.228 (slower to rise)
    #   MLP (256, 128, 64) -> 0.239 (valid RMSE 0.9231); with attention_reg 1e-4 -> 0.243 (chosen; valid RMSE 0.9236).
    #   The wider MLP, not the reg, moves valid RMSE from 0.918 to 0.923; the seed ensemble (AutoInt on both sides)
    #   still gains on valid with it: NDCG@10 0.2664 -> 0.2692, RMSE 0.9182 -> 0.9185 (with xDeepFM's cin_reg)
    # Like NeuMF, a large rating weight pulls the shared embeddings away from ranking.
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 256, "n_negatives": 4,
                                                "rating_weight": 0.02}

    def __init__(self, shape: DataShape, config: AutoIntConfig) -> None:
        super().__init__(shape, config)
        layers, in_dim = [], config.embed_dim
        for n_heads in _per_layer_heads(config.n_heads, config.n_layers):
            layers.append(InteractingLayer(in_dim, n_heads, config.d_head, config.use_residual,
                                           config.scale_attention, config.dropout))
            in_dim = layers[-1].out_dim
        self.layers = nn.ModuleList(layers)
        self.mlp = MLP(self.n_fields * config.embed_dim, config.hidden, config.dropout) if config.hidden else None
        self.build_heads(self.n_fields * in_dim + (self.mlp.out_dim if self.mlp is not None else 0))

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        reg = super().regularization(users, items)
        if self.config.attention_reg:
            reg = reg + self.config.attention_reg * sum(weight.pow(2).sum() for layer in self.layers
                                                        for weight in layer.projections())
        return reg

    @property
    def heads_per_layer(self) -> tuple[int, ...]:
        """Head count of each layer, read from the layers (they differ after pruning)."""
        return tuple(layer.n_heads for layer in self.layers)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]`` -> ``[N, F * H_last * d_head (+ hidden[-1])]``: the last layer's fields, concatenated."""
        if not torch.is_grad_enabled() and len(fields) > 2 * INFERENCE_BLOCK:
            return torch.cat([self.interact(block) for block in fields.split(INFERENCE_BLOCK)])
        x = fields
        for layer in self.layers:
            x = layer(x)
        out = x.flatten(1)
        if self.mlp is not None:
            out = torch.cat([out, self.mlp(fields.flatten(1))], dim=1)
        return out


def _per_layer_heads(n_heads: int | tuple[int, ...] | list[int], n_layers: int) -> tuple[int, ...]:
    """An int applies to every layer; a sequence (JSON gives a list) names one count per layer."""
    if isinstance(n_heads, int):
        return (n_heads,) * n_layers
    heads = tuple(int(h) for h in n_heads)
    if len(heads) != n_layers:
        raise DistillrecError(f"autoint: n_heads lists {len(heads)} layers but n_layers is {n_layers}")
    return heads

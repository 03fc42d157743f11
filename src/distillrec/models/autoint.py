"""AutoInt (Song et al., "AutoInt: Automatic Feature Interaction Learning via Self-Attentive Neural Networks",
CIKM 2019).

Each field embedding ``e_m`` (``[D]``) is refined by a stack of *interacting layers*. One layer, for every
head ``h`` with its own projections ``W_q^h, W_k^h, W_v^h`` (``[D_in, d_head]`` each):

    alpha^h_{m,k} = softmax_k(<W_q^h e_m, W_k^h e_k>)          (paper eq. 5-6, plain inner product)
    e~^h_m       = sum_k alpha^h_{m,k} W_v^h e_k                (eq. 6)
    e~_m         = e~^1_m (+) ... (+) e~^H_m                    (eq. 7, concatenation: [H * d_head])
    e^Res_m      = ReLU(e~_m + W_res e_m)                       (eq. 8, residual; without it ReLU(e~_m))

The final layer's field representations are concatenated (``[F * H * d_head]``) and fed to the two task heads
of :class:`FieldInteractionModel`, which also adds the first-order (linear) term per field. With ``dnn_hidden``
non-empty an MLP over the flat embeddings runs in parallel and its output is concatenated too (the paper's
AutoInt+ variant, as DeepCTR-Torch builds it).

Structure for Fisher analysis and head pruning: every interacting layer is its own module
(``model.layers[l]``) holding ``W_q``, ``W_k``, ``W_v`` (``[D_in, n_heads * d_head]``, head ``h`` is the
contiguous column slice ``h * d_head : (h + 1) * d_head``) and ``W_res`` (same shape, rows of the output
likewise grouped by head). Each layer carries its own ``n_heads`` and ``d_head``; ``n_heads`` in the config
may be a per-layer tuple so that a pruned model (fewer heads in some layers) is rebuilt from its JSON config.
``layer.head_mask`` (``None`` by default) multiplies each head's output, the usual handle for head-importance
scores (Michel et al., 2019): set it to ``torch.ones(n_heads, requires_grad=True)`` and read its gradient.
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


@dataclass(frozen=True)
class AutoIntConfig:
    """Sizes of the attention stack (``n_heads`` an int for all layers or one per layer) and regularisation."""

    embed_dim: int = 16
    n_layers: int = 3
    n_heads: int | tuple[int, ...] = 2
    d_head: int = 8
    use_residual: bool = True
    #: divide attention logits by sqrt(d_head); the paper uses the plain inner product
    scale_attention: bool = False
    #: AutoInt+ : an MLP over the flat embeddings in parallel with the attention stack; () = plain AutoInt
    dnn_hidden: tuple[int, ...] = ()
    #: dropout on the attention weights and in the DNN branch (training only)
    dropout: float = 0.0
    use_features: bool = True
    embed_reg: float = 0.0


class InteractingLayer(nn.Module):
    """Multi-head self-attention over fields with residual and ReLU: ``[N, F, D_in] -> [N, F, n_heads * d_head]``.

    The four projections are kept as separate ``[D_in, n_heads * d_head]`` parameters (so each head is a
    contiguous column slice of each), but applied with one matmul on their concatenation: a batch holds only
    ``N * F`` rows of a few dozen columns, where per-op overhead, not arithmetic, sets the time.
    """

    def __init__(self, in_dim: int, n_heads: int, d_head: int, use_residual: bool = True,
                 scale_attention: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        if n_heads < 1 or d_head < 1:
            raise DistillrecError(f"autoint: every layer needs n_heads >= 1 and d_head >= 1, got {n_heads}, {d_head}")
        self.in_dim, self.n_heads, self.d_head = in_dim, n_heads, d_head
        self.use_residual = use_residual
        self.dropout = dropout
        # the paper's score is the unscaled inner product (eq. 5); 1/sqrt(d_head) is the Transformer's choice
        self.scale = 1.0 / math.sqrt(d_head) if scale_attention else 1.0
        out = n_heads * d_head
        self.W_q = nn.Parameter(torch.empty(in_dim, out))
        self.W_k = nn.Parameter(torch.empty(in_dim, out))
        self.W_v = nn.Parameter(torch.empty(in_dim, out))
        self.W_res = nn.Parameter(torch.empty(in_dim, out)) if use_residual else None
        for weight in self.projections():
            nn.init.xavier_uniform_(weight)
        #: optional ``[n_heads]`` multiplier of each head's output (head-importance scores); not saved
        self.head_mask: torch.Tensor | None = None

    @property
    def out_dim(self) -> int:
        return self.n_heads * self.d_head

    def projections(self) -> list[nn.Parameter]:
        """``[W_q, W_k, W_v(, W_res)]``, each ``[D_in, n_heads * d_head]``."""
        return [self.W_q, self.W_k, self.W_v] + ([self.W_res] if self.W_res is not None else [])

    def head_slice(self, head: int) -> slice:
        """Columns of ``W_q``/``W_k``/``W_v``/``W_res`` (and features of the output) belonging to ``head``."""
        return slice(head * self.d_head, (head + 1) * self.d_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, F, D_in] -> [N, F, n_heads * d_head]``."""
        n, n_fields, _ = x.shape
        heads, d = self.n_heads, self.d_head
        # one [N*F, D_in] x [D_in, (3|4) * H*d] product instead of three or four small ones; split (not
        # indexing) so that the backward is one cat rather than a zero-filled buffer per slice
        projected = (x.reshape(n * n_fields, -1) @ torch.cat(self.projections(), dim=1)).split(heads * d, dim=1)
        # [N*F, H*d] -> [N, H, F, d]: heads become a batch dimension of the attention matmuls
        q, k, v = (p.view(n, n_fields, heads, d).transpose(1, 2) for p in projected[:3])
        logits = q @ k.transpose(-1, -2)  # [N, H, F, F]; eq. 5 is the plain inner product
        if self.scale != 1.0:
            logits = logits * self.scale
        attention = torch.softmax(logits, dim=-1)  # over the key fields k, per query field m (eq. 6)
        if self.training and self.dropout > 0:
            attention = F.dropout(attention, self.dropout)
        attended = attention @ v  # [N, H, F, d]
        if self.head_mask is not None:
            attended = attended * self.head_mask.view(1, heads, 1, 1)
        out = attended.transpose(1, 2).reshape(n, n_fields, heads * d)  # concatenate heads (eq. 7)
        if self.W_res is not None:
            out = out + projected[3].view(n, n_fields, heads * d)  # W_res e_m (eq. 8)
        return torch.relu(out)


@register_model("autoint")
class AutoInt(FieldInteractionModel):
    """AutoInt / AutoInt+ over the shared field embeddings; see the module docstring for the equations."""

    config_class = AutoIntConfig
    # defaults chosen on validation: see the search recorded at the end of this module
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 256}

    def __init__(self, shape: DataShape, config: AutoIntConfig) -> None:
        super().__init__(shape, config)
        heads = _per_layer_heads(config.n_heads, config.n_layers)
        layers, in_dim = [], config.embed_dim
        for n_heads in heads:
            layers.append(InteractingLayer(in_dim, n_heads, config.d_head, config.use_residual,
                                           config.scale_attention, config.dropout))
            in_dim = layers[-1].out_dim
        self.layers = nn.ModuleList(layers)
        out_dim = self.n_fields * in_dim
        self.dnn = None
        if config.dnn_hidden:
            self.dnn = MLP(self.n_fields * config.embed_dim, config.dnn_hidden, config.dropout)
            out_dim += self.dnn.out_dim
        self.build_heads(out_dim)

    @property
    def heads_per_layer(self) -> tuple[int, ...]:
        """Head count of each layer, read from the layers themselves (they differ after pruning)."""
        return tuple(layer.n_heads for layer in self.layers)

    def interact(self, fields: torch.Tensor) -> torch.Tensor:
        """``[N, F, D]`` -> ``[N, F * H_L * d_head (+ dnn width)]``: final field representations, concatenated."""
        x = fields
        for layer in self.layers:
            x = layer(x)
        out = x.flatten(1)
        if self.dnn is not None:
            out = torch.cat([out, self.dnn(fields.flatten(1))], dim=1)
        return out


def _per_layer_heads(n_heads: int | tuple[int, ...] | list[int], n_layers: int) -> tuple[int, ...]:
    """An int applies to every layer; a sequence (JSON gives a list) must name one count per layer."""
    if isinstance(n_heads, int):
        return (n_heads,) * n_layers
    heads = tuple(int(h) for h in n_heads)
    if len(heads) != n_layers:
        raise DistillrecError(f"autoint: n_heads lists {len(heads)} layers but n_layers is {n_layers}")
    return heads

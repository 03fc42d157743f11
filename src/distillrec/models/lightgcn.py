"""LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation",
SIGIR 2020).

Ego embeddings ``E^(0)`` of users and items are propagated ``K`` times over the symmetric-normalised bipartite
graph of the training interactions, ``E^(k+1) = D^-1/2 A D^-1/2 E^(k)`` with ``A = [[0, R], [R^T, 0]]`` (no
self-loops, no feature transforms, no non-linearity), and combined with ``alpha_k = 1 / (K + 1)``:
``E = mean_k E^(k)``. The ranking logit is ``e_u . e_i``; it is trained with BPR on sampled negatives (the
shared ranking task) plus ``reg`` times the L2 norm of the batch's *ego* embeddings (the paper's
``lambda ||E^(0)||^2``, in ``regularization``).

Implementation notes.

* The graph is built once, in ``prepare``, from the training positives. The checkpoint keeps its edge list
  (``graph_edges``, int32 ``[2, E]``: user, item); the normalised values are a deterministic function of it, so a
  loaded model rebuilds the identical adjacency without the data (and the saved file stays small).
* ``A_hat`` is symmetric, so one propagation is a CSR sparse-dense product in both directions; a small autograd
  function uses that (``A_hat^T g = A_hat g``), which is several times faster on CPU than COO ``sparse.mm``.
* Training propagates once per batch, as the paper does: the forward calls of one loss (positives, negatives,
  rating) share the propagated embeddings, which are dropped when the backward pass reaches them or when a
  parameter changes. Without gradients (evaluation, serving) the propagated embeddings are cached until a
  parameter or the graph changes (or ``train()``/``to()`` is called), so ``score`` for all users costs one
  propagation plus matrix products.
* Rating head (not in the paper, which ranks only): ``mu + b_u + b_i + r_u . r_i`` where ``r`` are small
  (``rating_dim``) embeddings propagated over the same graph, i.e. LightGCN applied to rating prediction. They are
  extra columns of the same sparse products (which act column by column), so the rating loss never touches the
  ranking embeddings: with task ``both`` the ranking part trains exactly as LightGCN alone. (Sharing the ranking
  embeddings through a linear map cost ~0.016 valid NDCG@10 with task ``both``.) ``rating_reg`` is the L2 on the
  batch's rating ego embeddings and biases. With ``rank_by == "rating"`` (rating-only training) ``score`` ranks by
  this head.
* L2 terms. The interface's ``regularization(users, items)`` does not see the sampled negatives; the paper's code
  also penalises them, so the negative's term is added in expectation over uniform negatives (the mean squared
  norm of all item embeddings). Each head's L2 is only added once a backward pass has shown that head to be
  trained (until then, both): otherwise the parameters of an untrained head decay under L2 alone into denormal
  floats, which made every sparse product ~2x slower after ~40 epochs.

Defaults chosen on validation (ml-100k, seed 0, valid metrics only; Adam, batch 2048, 1 negative, early stopping
with patience 10-15; defaults unless named). Settings -> valid NDCG@10 on P-RANK, task ranking:

    lr 0.001 (the paper's): still rising at epoch 205 (0.250), too slow for a default
    lr 0.002, batch 1024: 0.2592        lr 0.005: 0.2616 (chosen)        lr 0.01: 0.2593
    reg 1e-4: 0.2616   1e-3: 0.2613 / 0.2605 (with the negatives' term)   3e-3: 0.2494 / 0.2475   1e-2: 0.2144
    n_layers 2: 0.2564   3: 0.2616   4: 0.2556          n_negatives 4: 0.2616 (3x slower)
    init_std 0.03: 0.2588   0.1: 0.2616   0.2: 0.2598    embed_dim 128: 0.2653 (2x the cost; 64 kept as in the paper)
    task both, against the default's 0.2619 (valid RMSE 0.909): embed_dim 128: 0.2661; 128 with reg 1e-3: 0.2587;
    128 with n_layers 4: 0.2695 but valid RMSE 0.919 and 1.45x the parameters (542k), so 64 and 3 layers stay
    task both, rating head sharing the ranking embeddings via linear maps: 0.2460 -> separate propagated columns
    (the chosen design): 0.2618, the same as task ranking

P-RATING u1, task rating, valid RMSE: rating_reg 0.001: 0.9009, 0.003: 0.8986, 0.01: 0.8969 (chosen), 0.03: 0.9261,
0.1: 0.9383; rating_dim 32 (rating_reg 0.01): 0.8954, 16 kept (smaller, within 0.002).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import torch
from torch import nn

from distillrec.models.base import DataShape, ModelOutput, Recommender, TrainData, tensor_state_key
from distillrec.models.layers import take_rows
from distillrec.registry import register_model


@dataclass(frozen=True)
class LightGCNConfig:
    """Embedding size, propagation depth and L2 weights of LightGCN and of its rating head."""

    embed_dim: int = 64
    n_layers: int = 3
    #: L2 weight on the batch's ego embeddings, ``reg * 0.5 * (|e_u|^2 + |e_i|^2)`` per pair (paper: 1e-4)
    reg: float = 1e-4
    #: include the negative item's L2 (as the paper's code does), in expectation over uniform negatives
    reg_negatives: bool = True
    #: std of the normal initialisation of the ego embeddings (the authors' code: 0.1)
    init_std: float = 0.1
    #: rating head: size of its own propagated user/item embeddings (0: biases only)
    rating_dim: int = 16
    #: L2 weight on the rating head's parameters, per pair: the batch's biases and rating ego embeddings
    rating_reg: float = 0.01


class _SymmetricSpMM(torch.autograd.Function):
    """``adj @ dense`` for a symmetric sparse ``adj``; the gradient w.r.t. ``dense`` is ``adj @ grad``."""

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        ctx.adj = adj
        return adj @ dense

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adj @ grad.contiguous()


def normalized_adjacency(edges: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the user-item graph as a sparse CSR ``[U + I, U + I]`` float tensor.

    ``edges``: ``[2, E]`` (user, item) pairs without duplicates. Nodes ``0..U-1`` are users, ``U..U+I-1`` items;
    isolated nodes get degree 0 and an empty row (so they propagate nothing, rather than NaN).
    """
    n = n_users + n_items
    users, items = edges[0].long(), edges[1].long() + n_users
    rows, cols = torch.cat([users, items]), torch.cat([items, users])
    degree = torch.bincount(rows, minlength=n).float()
    inv_sqrt = degree.pow(-0.5)
    inv_sqrt[degree == 0] = 0.0
    values = inv_sqrt[rows] * inv_sqrt[cols]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
        coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n)).coalesce()
        return coo.to_sparse_csr()


@register_model("lightgcn")
class LightGCN(Recommender):
    """LightGCN ranking (``logit = e_u . e_i``) plus a small rating head propagated over the same graph."""

    config_class = LightGCNConfig
    #: RecBole's LightGCN batch size; lr 5e-3 (5x the paper's) converges in ~60 epochs (search in the module docstring)
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 5e-3, "batch_size": 2048, "epochs": 200, "patience": 10}

    def __init__(self, shape: DataShape, config: LightGCNConfig) -> None:
        super().__init__(shape, config)
        self.user_embedding = nn.Embedding(shape.n_users, config.embed_dim)
        self.item_embedding = nn.Embedding(shape.n_items, config.embed_dim)
        nn.init.normal_(self.user_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_embedding.weight, std=config.init_std)
        self.user_bias = nn.Embedding(shape.n_users, 1)
        self.item_bias = nn.Embedding(shape.n_items, 1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.user_rating_embedding = nn.Embedding(shape.n_users, config.rating_dim)
        self.item_rating_embedding = nn.Embedding(shape.n_items, config.rating_dim)
        nn.init.normal_(self.user_rating_embedding.weight, std=config.init_std)
        nn.init.normal_(self.item_rating_embedding.weight, std=config.init_std)
        self.register_buffer("global_mean", torch.tensor(sum(shape.rating_scale) / 2))
        #: training edges (user, item), int32 [2, E]; sized in ``prepare`` or when a checkpoint is loaded
        self.register_buffer("graph_edges", torch.zeros(2, 0, dtype=torch.int32))
        self._cache: dict[str, Any] = {}
        #: heads whose output a backward pass has reached; their L2 terms join the loss (all, until known)
        self._trained_heads: set[str] = set()

    # ----------------------------------------------------------------------------------------- graph
    def prepare(self, data: TrainData, seed: int = 0) -> None:
        """Keep the training graph's edges (the adjacency is derived from them) and set the rating mean."""
        self.global_mean.fill_(float(data.ratings.float().mean()))
        counts = data.matrix.counts()
        users = torch.repeat_interleave(torch.arange(data.n_users, device=counts.device), counts)
        edges = torch.stack([users, data.matrix.indices]).to(torch.int32)
        self.graph_edges = edges.to(self.graph_edges.device)
        self._cache.clear()
        self._trained_heads.clear()

    def adjacency(self) -> torch.Tensor:
        """The normalised adjacency ``D^-1/2 A D^-1/2`` (sparse CSR), rebuilt only when the edges change."""
        key = tensor_state_key(self.graph_edges)
        if self._cache.get("adj_key") != key:
            with torch.inference_mode(False), torch.no_grad():
                self._cache["adj"] = normalized_adjacency(self.graph_edges, self.n_users, self.n_items)
            self._cache["adj_key"] = key
        return self._cache["adj"]

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings ``mean_k A_hat^k E^(0)`` of all users ``[U, D + R]`` and items ``[I, D + R]``.

        Columns ``:D`` are LightGCN's (ranking) embeddings, ``D:`` the rating head's; both go through the same
        sparse products (which act column by column, so neither part influences the other).
        """
        adj = self.adjacency()
        users = torch.cat([self.user_embedding.weight, self.user_rating_embedding.weight], dim=1)
        items = torch.cat([self.item_embedding.weight, self.item_rating_embedding.weight], dim=1)
        layer = torch.cat([users, items])
        total = layer
        for _ in range(self.config.n_layers):
            layer = _SymmetricSpMM.apply(adj, layer)
            total = total + layer
        final = total / (self.config.n_layers + 1)
        return final[:self.n_users], final[self.n_users:]

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagated embeddings, computed at most once per parameter state (see the module docstring)."""
        key = (*(tensor_state_key(p) for p in self.parameters()), tensor_state_key(self.graph_edges))
        if torch.is_grad_enabled() and self.user_embedding.weight.requires_grad:
            if self._cache.get("train_key") != key:
                users, items = self.propagate()
                # the backward pass frees this graph: the next forward must propagate again
                users.register_hook(self._drop_train_cache)
                items.register_hook(self._drop_train_cache)
                self._cache["train"], self._cache["train_key"] = (users, items), key
            return self._cache["train"]
        if self._cache.get("eval_key") != key:
            with torch.inference_mode(False), torch.no_grad():
                self._cache["eval"] = self.propagate()
            self._cache["eval_key"] = key
        return self._cache["eval"]

    def _drop_train_cache(self, grad: torch.Tensor) -> None:
        self._cache.pop("train", None)
        self._cache.pop("train_key", None)

    # ----------------------------------------------------------------------------------------- heads
    def forward(self, users: torch.Tensor, items: torch.Tensor) -> ModelOutput:
        user_final, item_final = self.final_embeddings()
        e_u, e_i = take_rows(user_final, users), take_rows(item_final, items)
        d = self.config.embed_dim
        out = ModelOutput(rating=self._rating(users, items, e_u[:, d:], e_i[:, d:]),
                          logit=(e_u[:, :d] * e_i[:, :d]).sum(-1))
        for head, tensor in (("rating", out.rating), ("ranking", out.logit)):
            if tensor.requires_grad and head not in self._trained_heads:
                tensor.register_hook(partial(self._mark_trained, head))
        return out

    def _mark_trained(self, head: str, grad: torch.Tensor) -> None:
        self._trained_heads.add(head)

    def regularization(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """``reg/2 (|e_u^0|^2 + |e_i^0|^2)`` on the ranking ego embeddings, ``rating_reg`` on the rating head's."""
        cfg, heads = self.config, self._trained_heads
        total = torch.zeros((), device=users.device)
        if cfg.reg and (not heads or "ranking" in heads):
            ego = self.user_embedding(users).pow(2).sum(-1) + self.item_embedding(items).pow(2).sum(-1)
            # the sampled negative's term, in expectation over uniform negatives (the interface does not pass them)
            negative = self.item_embedding.weight.pow(2).sum(-1).mean() if cfg.reg_negatives else 0.0
            total = total + cfg.reg * 0.5 * (ego.mean() + negative)
        if cfg.rating_reg and (not heads or "rating" in heads):
            rating = (self.user_bias(users).squeeze(-1).pow(2) + self.item_bias(items).squeeze(-1).pow(2)
                      + self.user_rating_embedding(users).pow(2).sum(-1)
                      + self.item_rating_embedding(items).pow(2).sum(-1))
            total = total + cfg.rating_reg * rating.mean()
        return total

    def score(self, users: torch.Tensor) -> torch.Tensor:
        user_final, item_final = self.final_embeddings()
        e_u, d = user_final[users], self.config.embed_dim
        if self.rank_by == "rating":
            dot = e_u[:, d:] @ item_final[:, d:].T
            return self.global_mean + self.user_bias(users) + self.item_bias.weight.T + dot
        return e_u[:, :d] @ item_final[:, :d].T

    def predict_rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        user_final, item_final = self.final_embeddings()
        d = self.config.embed_dim
        return self.clip_rating(self._rating(users, items, user_final[users, d:], item_final[items, d:]))

    def _rating(self, users: torch.Tensor, items: torch.Tensor, r_u: torch.Tensor, r_i: torch.Tensor) -> torch.Tensor:
        """``mu + b_u + b_i + r_u . r_i`` from the propagated rating columns ``[B, rating_dim]``."""
        dot = (r_u * r_i).sum(-1)
        return self.global_mean + self.user_bias(users).squeeze(-1) + self.item_bias(items).squeeze(-1) + dot

    # ----------------------------------------------------------------------------------------- state
    def train(self, mode: bool = True) -> LightGCN:
        self._cache.pop("eval", None)
        self._cache.pop("eval_key", None)
        return super().train(mode)

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> LightGCN:
        self._cache.clear()  # device or dtype change
        return super()._apply(fn, *args, **kwargs)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        edges = state_dict.get(prefix + "graph_edges")
        if edges is not None and edges.shape != self.graph_edges.shape:
            self.graph_edges = torch.zeros(edges.shape, dtype=torch.int32, device=self.graph_edges.device)
        self._cache.clear()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        """Pickle/deepcopy without the caches (they may hold an autograd graph)."""
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state


"""DeepCTR-Torch side of the speed comparison: the same architecture, data, fields and batch size.

The fields are exactly the ones our models embed (user id, item id, the encoded user and item side
features; genres as a mean-pooled variable-length field), the task is rating regression (MSE) on the
train part of P-RATING u1, and only ``fit`` is timed (no validation inside the epoch).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from distillrec.data.dataset import Dataset
from distillrec.data.features import encode_side_features
from distillrec.data.splits import Split


def available() -> str | None:
    """None when DeepCTR-Torch imports, else the reason it does not."""
    try:
        import deepctr_torch  # noqa: F401
    except Exception as exc:  # any import failure means "skip with a note"
        return f"{type(exc).__name__}: {exc}"
    return None


def _inputs(dataset: Dataset, rows: np.ndarray, embed_dim: int):
    from deepctr_torch.inputs import SparseFeat, VarLenSparseFeat

    columns, x = [], {}
    users, items = dataset.users[rows], dataset.items[rows]
    columns += [SparseFeat("user_id", dataset.n_users, embedding_dim=embed_dim),
                SparseFeat("item_id", dataset.n_items, embedding_dim=embed_dim)]
    x["user_id"], x["item_id"] = users, items
    for side, table, ids in (("user", dataset.user_features, users), ("item", dataset.item_features, items)):
        fields, values = encode_side_features(table)
        for spec in fields:
            name = f"{side}_{spec.name}"
            column = values[spec.name].numpy()[ids]
            if column.ndim == 1:
                columns.append(SparseFeat(name, spec.vocab_size, embedding_dim=embed_dim))
                x[name] = column
            else:  # multi-hot -> padded index list (0 = padding), mean-pooled like ours
                width = int(column.sum(1).max())
                order = np.argsort(-column, axis=1, kind="stable")[:, :width] + 1
                x[name] = np.where(np.take_along_axis(column, order - 1, 1) > 0, order, 0)
                columns.append(VarLenSparseFeat(SparseFeat(name, spec.vocab_size + 1, embedding_dim=embed_dim),
                                                maxlen=width, combiner="mean"))
    return columns, x


def epoch_seconds(model: str, arch: dict, dataset: Dataset, split: Split, batch_size: int = 256,
                  epochs: int = 2) -> list[float]:
    """Wall seconds of each DeepCTR-Torch ``fit`` epoch on the train part (regression, MSE)."""
    import deepctr_torch.models as dm

    rows = split.train
    columns, x = _inputs(dataset, rows, arch["embed_dim"])
    y = dataset.ratings[rows].astype(np.float32)
    torch.manual_seed(0)
    if model == "deepfm":
        net = dm.DeepFM(columns, columns, dnn_hidden_units=arch["hidden"], task="regression")
    elif model == "xdeepfm":
        net = dm.xDeepFM(columns, columns, dnn_hidden_units=arch["hidden"], cin_layer_size=arch["cin"],
                         cin_split_half=arch["split_half"], task="regression")
    elif model == "autoint":
        # DeepCTR-Torch 0.3 sizes each head as embed_dim / heads (16 / 2 = 8, our d_head); anything else differs
        if arch["d_head"] * arch["heads"] != arch["embed_dim"]:
            raise ValueError(f"DeepCTR-Torch's AutoInt cannot build d_head={arch['d_head']} with {arch['heads']} heads")
        net = dm.AutoInt(columns, columns, att_layer_num=arch["layers"], att_head_num=arch["heads"],
                         dnn_hidden_units=arch["hidden"], task="regression")
    else:
        raise ValueError(model)
    net.compile("adam", "mse")
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        net.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
        times.append(time.perf_counter() - start)
    return times

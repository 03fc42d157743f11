"""Fisher information of a teacher per parameter, layer, attention head, feature field and embedding dimension.

``empirical`` holds the accumulator and the exact (per-sample) and batch estimators, ``losses`` the per-sample
focus-task losses, ``groups`` where group Fisher is measured, ``targets`` the ``--target_layers`` resolution,
``report`` and ``plots`` the outputs, ``pipeline`` the end-to-end command, ``reference`` a brute-force loop that
the exact estimator is tested against.
"""

from distillrec.fisher.empirical import (
    ESTIMATORS,
    FisherAccumulator,
    FisherEstimator,
    FisherResult,
    SampleBatch,
    compute_fisher,
)
from distillrec.fisher.groups import Family, Probe, Structure, discover
from distillrec.fisher.losses import FOCUS_TASKS, FusionStats, Objective
from distillrec.fisher.targets import SEMANTIC_GROUPS, Selection, resolve_targets

__all__ = ["ESTIMATORS", "FOCUS_TASKS", "SEMANTIC_GROUPS", "Family", "FisherAccumulator", "FisherEstimator",
           "FisherResult", "FusionStats", "Objective", "Probe", "SampleBatch", "Selection", "Structure",
           "compute_fisher", "discover", "resolve_targets"]

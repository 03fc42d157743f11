"""The ensemble teacher (importing this package registers the ``ensemble`` model)."""

from distillrec.ensemble import weighted  # noqa: F401

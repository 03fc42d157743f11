"""distillrec: distil a zoo of recommenders into one small, fast model."""

__version__ = "0.1.0"

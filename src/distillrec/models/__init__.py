"""Built-in models; importing this package registers them."""

from distillrec.models import deepfm, pop, svd  # noqa: F401

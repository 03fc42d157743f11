"""Built-in models; importing this package registers them."""

from distillrec.models import pop, svd  # noqa: F401

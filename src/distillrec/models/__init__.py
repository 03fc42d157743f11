"""Built-in models; importing this package registers them."""

from distillrec.models import (  # noqa: F401
    autoint,
    dcnv2,
    deepfm,
    lightgcn,
    lightweight,
    neumf,
    pop,
    svd,
    widedeep,
    xdeepfm,
)

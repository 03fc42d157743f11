"""Serving and export of any trained run: a precomputed in-process recommender, ONNX/TorchScript artifacts, an
HTTP API.

Nothing heavy is imported here: ``fastapi`` and ``onnxruntime`` load only with the modules that need them
(``serving.app``, the ONNX side of ``serving.export``), so ``import distillrec`` works without the ``serve`` extra.
"""

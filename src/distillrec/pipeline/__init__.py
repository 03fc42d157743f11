"""The one-command pipeline: zoo, ensemble teacher, Fisher, pruned distillation and the report, as cached stages."""

from distillrec.pipeline.config import PipelineConfig, resolve_config
from distillrec.pipeline.run import run_pipeline

__all__ = ["PipelineConfig", "resolve_config", "run_pipeline"]

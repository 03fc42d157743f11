"""The pipeline's comparison tables, figures and the Markdown / self-contained HTML report."""

"""The import point for code outside the package: passes, the registry and pipelines in one place.

bench/, the tests and plugins import from here (plugins written for earlier versions import
``PipelineError`` and ``NotApplicable`` from here too) (``from optimizers.registry import
parse_pipeline, Pass``). The code lives by job: ``optimizers.base`` (the Pass base
class and its argument helpers, the registry, entry-point plugins),
``optimizers.state`` (the artifact state order rules are written against) and
``optimizers.pipeline`` (checking and building pipelines). This module imports
those and is imported by none of them, so there is no import cycle.
"""

from bench.core.errors import NotApplicable, PipelineError
from optimizers.base import (
    ENTRY_POINT_GROUP,
    PASSES,
    PLUGIN_FAILURES,
    Pass,
    PassContext,
    all_passes,
    check_choice,
    load_entry_points,
    register_pass,
)
from optimizers.pipeline import Pipeline, parse_pipeline
from optimizers.state import ArtifactState

__all__ = [
    "ENTRY_POINT_GROUP",
    "PASSES",
    "PLUGIN_FAILURES",
    "ArtifactState",
    "NotApplicable",
    "Pass",
    "PassContext",
    "Pipeline",
    "PipelineError",
    "all_passes",
    "check_choice",
    "load_entry_points",
    "parse_pipeline",
    "register_pass",
]

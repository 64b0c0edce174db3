"""Planning: every default pipeline parses, and a run's cells are model-major."""

from __future__ import annotations

from bench.core.device import Device
from bench.harness.plan import (
    DEFAULT_PIPELINES,
    WORKLOAD_DEFAULTS,
    default_pipelines,
    plan_cells,
    resolve_models,
)
from optimizers.registry import parse_pipeline


def test_every_default_pipeline_parses_so_none_is_left_out_silently() -> None:
    # default_pipelines skips a default whose pass is not installed: with every extra here, none may go missing
    every = dict.fromkeys(t for texts in WORKLOAD_DEFAULTS.values() for t in texts)
    assert [p.text for p in default_pipelines(Device("cpu"))] == list(every)
    assert set(DEFAULT_PIPELINES) <= set(every)


def test_cells_are_model_major_with_ids_in_order() -> None:
    specs = resolve_models(("dcgan", "vae"), ())
    pipelines = [parse_pipeline(t) for t in ("fp32", "channels_last")]
    cells = plan_cells(specs, "tiny", pipelines, (1, 4))
    assert [c.cell_id for c in cells] == list(range(8))
    assert [c.spec.name for c in cells] == ["dcgan"] * 4 + ["vae"] * 4
    assert [(c.batch_size, c.pipeline.text) for c in cells[:4]] == [
        (1, "fp32"), (1, "channels_last"), (4, "fp32"), (4, "channels_last"),
    ]  # fmt: skip

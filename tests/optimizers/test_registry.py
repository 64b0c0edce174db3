"""Pipeline parsing, the registry, and third-party passes (the example plugin: test_plugin_example)."""

from __future__ import annotations

import pytest

import optimizers.base as base
from bench.core.artifact import TorchArtifact
from bench.core.errors import PipelineError
from optimizers.registry import PASSES, Pass, all_passes, parse_pipeline, register_pass


def test_single_and_composed_pipelines() -> None:
    p = parse_pipeline("bf16+channels_last+compile")
    assert [s.spec for s in p.passes] == ["bf16", "channels_last", "compile"]
    assert p.final_kind == "torch"
    assert str(p) == "bf16+channels_last+compile"
    assert parse_pipeline(" compile:max-autotune ").passes[0].arg == "max-autotune"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty pipeline"),
        ("fp32++bf16", "empty step"),
        ("bf16+", "empty step"),
        ("warp", "unknown pass 'warp'"),
        ("fp32:3", "takes no argument"),
        ("compile:", "empty argument"),
        ("compile:turbo", "compile mode 'turbo' unknown"),
    ],
)
def test_bad_pipelines(text: str, message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        parse_pipeline(text)


def test_unknown_pass_error_lists_known_passes() -> None:
    with pytest.raises(PipelineError) as exc:
        parse_pipeline("warp")
    assert "bf16" in str(exc.value) and "channels_last" in str(exc.value)


def test_register_rejects_duplicates_and_bad_names() -> None:
    class Dup(Pass):
        name = "bf16"

        def apply(self, artifact, ctx):
            return artifact

    class Bad(Pass):
        name = "Bad Name"

        def apply(self, artifact, ctx):
            return artifact

    all_passes()
    with pytest.raises(ValueError, match="already registered"):
        register_pass(Dup)
    with pytest.raises(ValueError, match="lowercase"):
        register_pass(Bad)


def test_every_builtin_pass_has_a_summary() -> None:
    for name, cls in all_passes().items():
        assert cls.summary, name


def test_a_broken_plugin_does_not_break_the_registry(tmp_path, monkeypatch) -> None:
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[genbench.passes]\nbroken = no_such_module_abc:Thing\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(base, "_entry_points_loaded", False)
    failures = base.load_entry_points()
    assert any("broken" in f and "no_such_module_abc" in f for f in failures)
    assert "fp32" in all_passes()


class _LegacyLevel(Pass):
    """A plugin written against the old base class: it parses its own text in ``__init__``."""

    name = "test-legacy-level"
    summary = "old-style pass with an argument"

    def __init__(self, arg: str | None = None) -> None:
        if arg is not None and not arg.isdigit():
            raise PipelineError(f"test-legacy-level takes a whole number (got {arg!r})")
        self.level = int(arg or 1)
        self.arg = arg

    def apply(self, artifact, ctx):
        assert isinstance(artifact, TorchArtifact)
        return artifact.evolve(notes=(*artifact.notes, f"level {self.level}"))


class _LegacyPlain(Pass):
    name = "test-legacy-plain"
    summary = "old-style pass without __init__"

    def apply(self, artifact, ctx):
        return artifact


@pytest.fixture
def legacy_passes():
    register_pass(_LegacyLevel)
    register_pass(_LegacyPlain)
    yield
    PASSES.pop("test-legacy-level", None)
    PASSES.pop("test-legacy-plain", None)


def test_plugins_written_against_the_old_base_class_still_parse_and_run(legacy_passes, run_matrix) -> None:
    pipeline = parse_pipeline("test-legacy-plain+test-legacy-level:3+int8")
    assert [p.spec for p in pipeline.passes] == ["test-legacy-plain", "test-legacy-level:3", "onnx", "int8"]
    assert pipeline.passes[1].level == 3 and parse_pipeline("test-legacy-level").passes[0].level == 1
    with pytest.raises(PipelineError, match="takes a whole number"):
        parse_pipeline("test-legacy-level:high")
    with pytest.raises(PipelineError, match="pass 'test-legacy-plain' takes no argument"):
        parse_pipeline("test-legacy-plain:1")
    with pytest.raises(
        PipelineError, match="'test-legacy-level:2' needs a torch artifact but onnx gives onnx"
    ):
        parse_pipeline(
            "onnx+test-legacy-level:2"
        )  # the kind check holds for passes that declare nothing else
    frame = run_matrix(
        models=("dcgan",), pipelines=("fp32", "test-legacy-plain+test-legacy-level:2"), batch_sizes=(1,)
    )
    assert list(frame["status"]) == ["ok", "ok"], frame["reason"].tolist()
    assert "level 2" in frame.iloc[1]["notes"]

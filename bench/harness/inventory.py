"""Static facts about a model at a size: params, FLOPs, input and output shapes, as `bench list` shows them.

What is counted follows the model's workload (reference_models.spec.WORKLOADS):

- ``forward``: FLOPs per item of one forward call at batch 1, counted on the meta
  device (bench.measure.work), so even the base models are described in a second
  without allocating a real forward's activations.
- ``generate``: the shapes of one full causal forward (``input_pos`` None) on the
  model's example prompt, ``prompt [1, P] -> logits [1, P, V]``, and GFLOPs per token
  as 2 x params / 1e9: the usual estimate of a decode step (each weight one
  multiply-add), which the harness's rows use too. Attention over the context adds to
  it; the estimate leaves that out, and says so where it is shown.
- ``sample``: the params of the UNet and the VAE, the latent shape the UNet denoises
  and the image shape the VAE decodes it to, and the FLOPs of one UNet call and of the
  VAE decode at batch 1, each network counted with the flop counter on its own
  (``.unet(latents, t, labels)`` and ``.vae(latents)``). A run makes ``steps`` UNet
  calls, doubled in batch by classifier-free guidance, and one VAE decode.

Shapes come from a call on the meta device where the module can run there, on its own
device where it cannot (a user's module with data-dependent Python).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bench.core.numbers import num
from bench.measure.work import measure_work
from reference_models.spec import ModelSpec


@dataclass(frozen=True)
class ModelInfo:
    """What `bench list` shows. ``gflops_per_item``: per item (forward), per token (generate, 2 x params),
    one UNet call plus the VAE decode at batch 1 (sample, with each part in ``unet_gflops`` / ``vae_gflops``)."""

    params: int
    gflops_per_item: float
    input_shapes: str
    output_shape: str
    workload: str = "forward"
    unet_gflops: float | None = None
    vae_gflops: float | None = None

    def gflops_text(self) -> str:
        """The GFLOPs cell of `bench list`, labelled with what it counts where that is not a forward item."""
        if self.workload == "generate":  # 3 significant digits: a tiny model's is not "0.000"
            return f"{num(self.gflops_per_item)}/token (2 x params)"
        if self.workload == "sample" and self.unet_gflops is not None and self.vae_gflops is not None:
            return f"{num(self.unet_gflops)}/UNet call + {num(self.vae_gflops)} VAE"
        return f"{self.gflops_per_item:.3f}"


def _shape(t: torch.Tensor) -> str:
    dtype = str(t.dtype).removeprefix("torch.")
    shape = "x".join(str(d) for d in t.shape)
    return shape if dtype == "float32" else f"{shape} {dtype}"


def _dims(name: str, t: torch.Tensor) -> str:
    """``name [1, 16, 256]``: the bracketed form the generate and sample rows use."""
    return f"{name} [{', '.join(str(d) for d in t.shape)}]"


def _output(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """One call's output (for its shape): on meta (no compute, no activations), else where the module lives."""
    with torch.inference_mode():
        try:
            state = {name: torch.empty_like(t, device="meta") for name, t in _state(module)}
            out = torch.func.functional_call(module, state, tuple(t.to("meta") for t in inputs))
        except Exception:  # cannot run on meta: data-dependent Python, tensors outside the state dict
            home = next((t.device for _, t in _state(module)), torch.device("cpu"))
            out = module(*(t.to(home) for t in inputs))
    return out if isinstance(out, torch.Tensor) else out[0]


def _state(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(), *module.named_buffers()]


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe_model(spec: ModelSpec, size: str) -> ModelInfo:
    if spec.workload == "generate":
        return _describe_generate(spec, size)
    if spec.workload == "sample":
        return _describe_sample(spec, size)
    module = spec.build(size)
    params = _params(module)
    inputs = spec.example_inputs(1, size, 0)
    work = measure_work(module, lambda batch: spec.example_inputs(batch, size, 0)).at(1, "fp32")
    meta_module = module.to("meta")
    with torch.inference_mode():
        output = meta_module(*(t.to("meta") for t in inputs))
    out = output if isinstance(output, torch.Tensor) else output[0]
    return ModelInfo(
        params=params,
        gflops_per_item=work.gflops_per_item,
        input_shapes=", ".join(_shape(t) for t in inputs),
        output_shape=_shape(out),
    )


def _describe_generate(spec: ModelSpec, size: str) -> ModelInfo:
    """A causal LM: a full forward (no cache) on the example prompt for the shapes; 2 x params per token."""
    module = spec.build(size)
    params = _params(module)
    (prompt,) = spec.example_inputs(1, size, 0)[:1]
    logits = _output(module, (prompt,))
    return ModelInfo(
        params=params,
        gflops_per_item=2 * params / 1e9,
        input_shapes=_dims("prompt", prompt),
        output_shape=_dims("logits", logits),
        workload="generate",
    )


def _describe_sample(spec: ModelSpec, size: str) -> ModelInfo:
    """A latent-diffusion pipeline: its ``.unet`` and ``.vae`` counted one by one at batch 1."""
    pipeline = spec.build(size)
    unet, vae = getattr(pipeline, "unet", None), getattr(pipeline, "vae", None)
    if not isinstance(unet, nn.Module) or not isinstance(vae, nn.Module):
        raise ValueError(f"model {spec.name!r}: a sample model must have .unet and .vae networks")

    def unet_inputs(batch: int) -> tuple[torch.Tensor, ...]:
        latents, labels = spec.example_inputs(batch, size, 0)[:2]
        return latents, torch.zeros(batch, dtype=torch.int64), labels

    def vae_inputs(batch: int) -> tuple[torch.Tensor, ...]:
        return spec.example_inputs(batch, size, 0)[:1]

    unet_gflops = measure_work(unet, unet_inputs).at(1, "fp32").gflops_per_item
    vae_gflops = measure_work(vae, vae_inputs).at(1, "fp32").gflops_per_item
    (latents,) = vae_inputs(1)
    image = _output(vae, (latents,))
    return ModelInfo(
        params=_params(unet) + _params(vae),
        gflops_per_item=unet_gflops + vae_gflops,
        input_shapes=_dims("latents", latents),
        output_shape=_dims("image", image),
        workload="sample",
        unet_gflops=unet_gflops,
        vae_gflops=vae_gflops,
    )

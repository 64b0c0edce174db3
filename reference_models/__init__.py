"""Reference generative models, built from code with seeded weights (no downloads).

``MODELS`` maps a name to its :class:`ModelSpec`; ``get_model`` adds a clear error.
The image networks time one forward call; ``gpt`` a whole text generation and
``ldm`` a whole diffusion sampling run (their ``workload``).
"""

from __future__ import annotations

from dataclasses import replace

from reference_models.dcgan import DCGAN_SPEC
from reference_models.gpt import GPT, GPT_SPEC
from reference_models.ldm import LDM_SPEC
from reference_models.spec import SIZES, ModelSpec
from reference_models.unet import UNET_SPEC
from reference_models.vae import VAE_SPEC


def _gpt_context(size: str) -> int:
    return GPT.CONFIGS[size].max_seq_len


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        DCGAN_SPEC,
        VAE_SPEC,
        UNET_SPEC,
        replace(GPT_SPEC, context_length=_gpt_context) if GPT_SPEC.context_length is None else GPT_SPEC,
        LDM_SPEC,
    )
}


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None


__all__ = ["MODELS", "SIZES", "ModelSpec", "get_model"]

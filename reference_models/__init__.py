"""Reference generative models, built from code with seeded weights (no downloads).

``MODELS`` maps a name to its :class:`ModelSpec`; ``get_model`` adds a clear error.
"""

from __future__ import annotations

from reference_models.dcgan import DCGAN_SPEC
from reference_models.spec import SIZES, ModelSpec
from reference_models.unet import UNET_SPEC
from reference_models.vae import VAE_SPEC

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (DCGAN_SPEC, VAE_SPEC, UNET_SPEC)}


def get_model(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}") from None


__all__ = ["MODELS", "SIZES", "ModelSpec", "get_model"]

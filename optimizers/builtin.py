"""Importing this module registers every built-in pass."""

from optimizers import torch_passes  # noqa: F401

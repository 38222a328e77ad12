"""Weights in and out: synth_jax pre-trainings as timm state dicts, and timm / big_vision ViT
weights as synth_jax initialisations.

    synth-jax export-model --from runs/onepfrac_ti --out exported/onepfrac_ti --with-head
    params, batch_stats, config = weights.load("exported/onepfrac_ti/model.safetensors")

`load` is what `--config.init_from=FILE.safetensors|FILE.npz` runs: it returns the same triple
as a synth_jax checkpoint (parameters and batch statistics as nested dicts of numpy arrays in the
layout of `nnx.to_pure_dict`, and a config dict {"model": ..., "image_size": ...}), so the head
re-initialisation, position-embedding resampling and shape report of fine-tuning apply unchanged.

Modules: safetensors_file (the file format, numpy only), timm_vit and timm_resnet (the exact
name and layout mappings, both directions), big_vision (.npz ViTs), sidecar (timm's
config.json), export (the `export-model` verb), timm_check (logits in timm; needs PyTorch),
timm_reference (timm's ViT and ResNet forward in NumPy, which the tests compare against).
"""

from __future__ import annotations

from synth_jax.errors import UsageError
from synth_jax.weights import big_vision, safetensors_file, sidecar, timm_resnet, timm_vit

SUFFIXES = (".safetensors", ".npz")


def is_weights_file(path: str) -> bool:
    """Whether `init_from` names a weights file (rather than a synth_jax workdir/checkpoint)."""
    return str(path).endswith(SUFFIXES)


def load(path: str) -> tuple[dict, dict, dict]:
    """(params, batch statistics ({} for ViTs), config dict) of a timm-layout .safetensors file
    (ViT or ResNet; its config.json beside it is read when present) or a big_vision /
    vision_transformer .npz ViT. Raises UsageError (one line) for anything else."""
    if path.endswith(".npz"):
        return big_vision.vit_from_npz(big_vision.read_npz(path), path)
    if not path.endswith(".safetensors"):
        raise UsageError(f"{path}: a weights file ends with {' or '.join(SUFFIXES)}")
    tensors, _ = safetensors_file.read(path)
    config = sidecar.read(path)
    if "patch_embed.proj.weight" in tensors:
        return timm_vit.load(tensors, config, path)
    if "conv1.weight" in tensors:
        return timm_resnet.load(tensors, config, path)
    names = ", ".join(sorted(tensors)[:3]) or "no tensors"
    raise UsageError(
        f"{path}: neither a timm ViT (patch_embed.proj.weight) nor a timm ResNet (conv1.weight) "
        f"state dict; it holds {names}"
    )

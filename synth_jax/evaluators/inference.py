"""A trained model over a finite host source, on the mesh: predictions and pre-logit features.

The host pipeline ships uint8 images; each batch goes onto the mesh split over the data-parallel
axes, through the deterministic evaluation transform (`preprocess.eval_images`: whole image
resized to the model's resolution, normalised as in training) and the model in inference mode;
this host's rows come back as numpy. Padded evaluation batches carry a `mask` of real rows.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import PartitionSpec as P

from synth_jax.data import preprocess
from synth_jax.train import mesh as mesh_lib


def top5_predictions(logits: jax.Array) -> jax.Array:
    """int32[B, k] class indices by decreasing logit, k = min(5, num_classes)."""
    k = min(5, logits.shape[-1])
    return jax.lax.top_k(logits, k)[1].astype(jnp.int32)


def on_mesh(mesh, fn):
    """Wraps a jitted `fn(images)`: this host's uint8 rows go in batch-sharded over the mesh,
    and this host's rows of the output come back as numpy."""
    sharding = mesh_lib.batch_sharding(mesh, 4)

    def run(images):
        out = fn(jax.make_array_from_process_local_data(sharding, np.asarray(images)))
        if jax.process_count() == 1:
            return np.asarray(out)
        spec = P(mesh_lib.BATCH_AXES, *([None] * (out.ndim - 1)))
        return np.asarray(multihost_utils.global_array_to_host_local_array(out, mesh, spec))

    return run


def model_fn(model: nnx.Module, mesh, image_size: int, mean, std, output: str = "top5"):
    """images uint8[B, H, W, C] (this host's rows) -> this host's rows of the model's output:
    "top5" int32[B, k] (classes by decreasing logit) or "features" float32[B, D] (pre-logits)."""
    graphdef, state = nnx.split(model)
    # FSDP: each weight gathered where it is used, as in the training step
    shardings = [getattr(a, "sharding", None) for a in jax.tree.leaves(state)]
    gathered = mesh_lib.gathered_shardings(shardings)
    fsdp = mesh.shape.get("fsdp", 1) > 1

    @jax.jit
    def apply(state, images):
        if fsdp:
            state = mesh_lib.gather_weights(state, gathered)
        x = preprocess.eval_images(images, image_size, mean, std)
        model = nnx.merge(graphdef, state)
        if output == "features":
            return model.features(x, train=False).astype(jnp.float32)
        return top5_predictions(model(x, train=False))

    return on_mesh(mesh, lambda images: apply(state, images))


def run_over(fn, source) -> tuple[np.ndarray, np.ndarray]:
    """One pass of `fn(images) -> [B, ...]` over a finite source (its batches carry `mask`):
    (outputs [N, ...] of this host's examples, their labels int32[N])."""
    source.reset()
    outputs, labels = [], []
    for batch in source:
        mask = batch["mask"]
        outputs.append(np.asarray(fn(batch["image"]))[mask])
        labels.append(np.asarray(batch["label"])[mask].astype(np.int32))
    return np.concatenate(outputs), np.concatenate(labels)


def gather_hosts(values: np.ndarray) -> np.ndarray:
    """Every host's rows of `values`, concatenated in host order (the identity on one host)."""
    if jax.process_count() == 1:
        return values
    count = int(np.max(multihost_utils.process_allgather(np.array(len(values)))))
    padded = np.zeros((count, *values.shape[1:]), values.dtype)
    padded[: len(values)] = values
    rows = multihost_utils.process_allgather(padded)
    sizes = multihost_utils.process_allgather(np.array(len(values)))
    return np.concatenate([r[:n] for r, n in zip(np.asarray(rows), np.asarray(sizes))])

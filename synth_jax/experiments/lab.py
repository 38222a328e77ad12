"""Laptop-scale training in memory: small images held as arrays, one jitted loop per run.

The sweep (synth_jax.experiments.sweep) runs every cell through the full trainers (Grain
pipeline, checkpoints, TFDS); at 8x8-16x16 px on two CPU cores that overhead dominates. Here a run
is one `jax.lax.scan` over its steps on arrays already in memory, so a cell of four seeds costs
seconds and a protocol search fits in an afternoon on a laptop.

    recipe = Recipe(model="ConvNet-32", image_size=16, steps=300)
    net = train(recipe, images, labels, num_classes=10, seed=0)            # from scratch
    net = train(recipe, images, labels, num_classes=5, seed=0, init=pretrained)  # fine-tune
    error(net, test_images, test_labels); features(net, images)            # for a linear probe

`images` are float32[N, S, S, 3] from `prepare` (gray or uint8 images resized to S px, scaled to
[-1, 1]). A run's seed fixes its initialisation, batch order and augmentation; `init` (a trained
`Net`) replaces every array but the classifier `head`, which starts fresh (zero) for the new
classes. Models come from synth_jax.models (ConvNet-W, ResNet-N, ViT), the optimiser from
synth_jax.train.optim (AdamW, cosine schedule after a linear warmup).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from synth_jax import models
from synth_jax.models import adapt
from synth_jax.train import optim
from synth_jax.train.step import model_parts

HEAD = ("head/.*",)
PAD_TO = 256  # training sets are padded to a multiple of this: one compiled loop serves many


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How one run trains: model, input size, steps, batch, AdamW, augmentation."""

    model: str = "ConvNet-32"
    image_size: int = 16
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    shift: int = 2  # random translation by up to this many pixels (0: none)
    hflip: bool = False  # random horizontal flips (synthetic pre-training; not digits)
    label_smoothing: float = 0.0


@dataclasses.dataclass
class Net:
    """A trained model: its recipe, class count and pure dicts of arrays."""

    recipe: Recipe
    num_classes: int
    params: dict
    model_state: dict


def prepare(images, size: int) -> np.ndarray:
    """uint8 (0..255) or float (0..1) images [N, H, W] or [N, H, W, C] -> float32[N, size, size, 3]
    in [-1, 1], resized bilinearly (antialiased)."""
    x = np.asarray(images)
    x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[1] != size or x.shape[2] != size:
        x = np.asarray(jax.image.resize(x, (len(x), size, size, 3), "bilinear", antialias=True))
    return np.clip(x, 0.0, 1.0) * 2.0 - 1.0


def _model_config(recipe: Recipe):
    return models.model_config(recipe.model)


def _parts(recipe: Recipe, num_classes: int, seed: int):
    return model_parts(_model_config(recipe), num_classes, recipe.image_size, seed)


def _optimizer(recipe: Recipe, params):
    config = optim.optim_config(
        name="adamw",
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        warmup_steps=min(recipe.warmup_steps, recipe.steps - 1),
        end_lr=recipe.lr * 1e-3,
    )
    tx, _ = optim.make_optimizer(config, params, recipe.steps, 1.0)
    return tx


def augment(key, images, shift: int, hflip: bool):
    """Each image translated by up to `shift` px (zero padding: the digits' background is -1,
    so the pad value is -1) and, with `hflip`, mirrored with probability 1/2."""
    b, s = images.shape[0], images.shape[1]
    keys = jax.random.split(key, b)
    if shift:
        pad = ((0, 0), (shift, shift), (shift, shift), (0, 0))
        padded = jnp.pad(images, pad, constant_values=-1)

        def crop(k, image):
            yx = jax.random.randint(k, (2,), 0, 2 * shift + 1)
            return jax.lax.dynamic_slice(image, (yx[0], yx[1], 0), (s, s, image.shape[-1]))

        images = jax.vmap(crop)(keys, padded)
    if hflip:
        flip = jax.vmap(lambda k: jax.random.bernoulli(jax.random.fold_in(k, 1)))(keys)
        images = jnp.where(flip[:, None, None, None], images[:, :, ::-1], images)
    return images


@functools.lru_cache(maxsize=64)
def _train_loop(recipe: Recipe, num_classes: int):
    """jit(loop(params, model_state, images, labels, order, seed) -> (params, model_state,
    losses)): `recipe.steps` AdamW steps over the batches order int32[steps, batch]."""
    parts = _parts(recipe, num_classes, 0)
    tx = _optimizer(recipe, parts.params_template)

    def loss_fn(params, model_state, x, y):
        model = parts.bind(params, model_state)
        logits = model(x, train=True)
        targets = optax.smooth_labels(jax.nn.one_hot(y, num_classes), recipe.label_smoothing)
        loss = optax.softmax_cross_entropy(logits, targets).mean()
        return loss, nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.Param)))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def loop(params, model_state, images, labels, order, seed):
        key = jax.random.key(seed)

        def step(carry, xs):
            params, model_state, opt_state = carry
            i, rows = xs
            x = augment(jax.random.fold_in(key, i), images[rows], recipe.shift, recipe.hflip)
            (loss, model_state), grads = grad_fn(params, model_state, x, labels[rows])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), model_state, opt_state), loss

        steps = jnp.arange(order.shape[0])
        carry = (params, model_state, tx.init(params))
        (params, model_state, _), losses = jax.lax.scan(step, carry, (steps, order))
        return params, model_state, losses

    return jax.jit(loop)


def init_arrays(recipe: Recipe, num_classes: int, seed: int, init: Net | None = None):
    """(params, model_state) of a fresh model from `seed`; with `init`, every array of `init`
    but the head copied in (the model module adapts what it can)."""
    parts = _parts(recipe, num_classes, seed)
    _, params, model_state = nnx.split(parts.fresh(), nnx.Param, ...)
    params, model_state = nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)
    if init is not None:
        config = _model_config(recipe)
        params = adapt.merge(params, models.adapt_pretrained(config, params, init.params, HEAD))
        if jax.tree.leaves(model_state):
            chosen = models.adapt_pretrained(config, model_state, init.model_state, HEAD)
            model_state = adapt.merge(model_state, chosen)
    return params, model_state


def train(recipe: Recipe, images, labels, num_classes: int, seed: int, init=None) -> Net:
    """Trains from scratch (or from `init`'s arrays) on images float32[N, S, S, 3] and labels
    int[N]; batches drawn uniformly with replacement, seeded."""
    params, model_state = init_arrays(recipe, num_classes, seed, init)
    n = len(labels)
    padded = -(-n // PAD_TO) * PAD_TO
    x = np.zeros((padded, *images.shape[1:]), np.float32)
    y = np.zeros((padded,), np.int32)
    x[:n], y[:n] = images, labels
    order = np.random.default_rng([seed, 1]).integers(0, n, (recipe.steps, recipe.batch_size))
    loop = _train_loop(recipe, num_classes)
    params, model_state, losses = loop(params, model_state, x, y, order.astype(np.int32), seed)
    if not np.isfinite(np.asarray(losses[-1])):
        raise FloatingPointError(f"training diverged (loss {losses[-1]}): lower the recipe's lr")
    return Net(recipe, num_classes, params, model_state)


@functools.lru_cache(maxsize=64)
def _apply(recipe: Recipe, num_classes: int, what: str):
    parts = _parts(recipe, num_classes, 0)

    def apply(params, model_state, x):
        model = parts.bind(params, model_state)
        return model(x, train=False) if what == "logits" else model.features(x, train=False)

    return jax.jit(apply)


def _batched(net: Net, images, what: str, batch: int = 256) -> np.ndarray:
    fn = _apply(net.recipe, net.num_classes, what)
    out = []
    for start in range(0, len(images), batch):
        chunk = np.asarray(images[start : start + batch], np.float32)
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - n, axis=0)])
        out.append(np.asarray(fn(net.params, net.model_state, chunk))[:n])
    return np.concatenate(out)


def predict(net: Net, images) -> np.ndarray:
    """Predicted classes int[N]."""
    return _batched(net, images, "logits").argmax(axis=-1)


def error(net: Net, images, labels) -> float:
    """Top-1 error on images float32[N, S, S, 3], labels int[N]."""
    return float(np.mean(predict(net, images) != np.asarray(labels)))


def features(net: Net, images) -> np.ndarray:
    """The pre-head features float32[N, D] (the linear probe's input)."""
    return _batched(net, images, "features")


def probe_error(net: Net, train_images, train_labels, test_images, test_labels) -> float:
    """A linear probe: L2-regularised logistic regression (scikit-learn, C = 1 on standardised
    features) on the frozen features of `net`; its test error."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    probe.fit(features(net, train_images), train_labels)
    return float(np.mean(probe.predict(features(net, test_images)) != np.asarray(test_labels)))


def pixel_baselines(train_images, train_labels, test_images, test_labels) -> dict:
    """Reference errors on raw pixels: {"logistic_regression": err, "nearest_neighbour": err}
    (scikit-learn: logistic regression, C = 1, on standardised pixels; 1-NN, Euclidean)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a = np.asarray(train_images, np.float32).reshape(len(train_images), -1)
    b = np.asarray(test_images, np.float32).reshape(len(test_images), -1)
    out = {}
    for name, clf in (
        ("logistic_regression", make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))),
        ("nearest_neighbour", KNeighborsClassifier(n_neighbors=1)),
    ):
        clf.fit(a, train_labels)
        out[name] = float(np.mean(clf.predict(b) != np.asarray(test_labels)))
    return out

"""Vision Transformer (Dosovitskiy et al. 2021) in Flax NNX, big_vision flavour.

Variants by name: "Ti/16", "S/16", "B/16", "L/16" and any patch size ("Ti/4" suits 32 px images).
Every parameter carries logical axis names (`embed`, `mlp`, `heads`, `vocab`, `classes`) through
`nnx.with_partitioning`; `synth_jax.train.mesh` maps them onto a mesh, so the same module runs
replicated, FSDP or tensor-parallel.

As a model module (see synth_jax.models) it owns the keys `pool`, `posemb`, `dropout` and
`drop_path`, and adapts a pre-trained checkpoint by resampling its position embedding.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from synth_jax.config import check, check_choice
from synth_jax.errors import UsageError
from synth_jax.models import adapt
from synth_jax.models.sharding import partitioned

# width, depth, mlp width, heads (Dosovitskiy et al. 2021; Touvron et al. 2021 for Ti and S)
VARIANTS = {
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    # CPU-sized: "Nano" for few-minute laptop runs, "mu" for tests that compile in seconds
    "Nano": (96, 6, 384, 3),
    "mu": (32, 2, 64, 2),
}


# What the backward pass keeps of each block (see ViT); None: whatever autodiff saves.
REMAT_POLICIES = {
    "none": None,
    "minimal": jax.checkpoint_policies.dots_saveable,
    "full": jax.checkpoint_policies.nothing_saveable,
}


def parse_name(name: str) -> tuple[str, int]:
    """'Ti/16' -> ('Ti', 16); raises ValueError for an unknown name."""
    variant, _, patch = name.partition("/")
    if variant not in VARIANTS or not patch.isdigit() or int(patch) < 1:
        raise ValueError(
            f"unknown ViT name {name!r}: expected VARIANT/PATCH with VARIANT in "
            f"{', '.join(VARIANTS)} (e.g. 'Ti/16', 'Ti/4' for 32 px images)"
        )
    return variant, int(patch)


def _dense(din, dout, axes, dtype, rngs):
    init = nnx.initializers.xavier_uniform()
    return nnx.Linear(
        din,
        dout,
        dtype=dtype,
        kernel_init=partitioned(init, axes),
        bias_init=partitioned(nnx.initializers.zeros_init(), (axes[1],)),
        rngs=rngs,
    )


def _layer_norm(dim, dtype, rngs):
    return nnx.LayerNorm(
        dim,
        epsilon=1e-6,
        dtype=dtype,
        scale_init=partitioned(nnx.initializers.ones_init(), ("embed",)),
        bias_init=partitioned(nnx.initializers.zeros_init(), ("embed",)),
        rngs=rngs,
    )


def sincos_posemb_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2-D sine-cosine position embedding (MoCo v3 / big_vision): float32[1, h*w, width]."""
    assert width % 4 == 0, "width must be a multiple of 4 for the 2-D sincos embedding"
    y, x = np.mgrid[:h, :w]
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1))
    y = np.einsum("m,d->md", y.flatten(), omega)
    x = np.einsum("m,d->md", x.flatten(), omega)
    pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
    return pe[None].astype(np.float32)


def drop_path(x, rate, train: bool, key):
    """Stochastic depth (Huang et al. 2016): zeroes a residual branch x [B, ...] for whole
    samples with probability `rate` (a number or a traced scalar: blocks run in a scan) and
    scales the kept ones by 1 / (1 - rate), as nnx.Dropout(rate, broadcast_dims) does."""
    if not train or key is None:
        return x
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    kept = x / jnp.asarray(keep, x.dtype)  # in x's dtype, as a Python-float rate would be
    return jax.lax.select(jnp.broadcast_to(mask, x.shape), kept, jnp.zeros_like(x))


class Attention(nnx.Module):
    def __init__(self, width: int, heads: int, dtype, rngs):
        self.heads = heads
        self.dtype = dtype
        self.query = _dense(width, width, ("embed", "heads"), dtype, rngs)
        self.key = _dense(width, width, ("embed", "heads"), dtype, rngs)
        self.value = _dense(width, width, ("embed", "heads"), dtype, rngs)
        self.out = _dense(width, width, ("heads", "embed"), dtype, rngs)

    def __call__(self, x):
        b, t, d = x.shape
        split = lambda y: y.reshape(b, t, self.heads, d // self.heads)
        q, k, v = (split(f(x)) for f in (self.query, self.key, self.value))
        # The fused kernel (cuDNN flash attention on GPU) when the backend has one.
        y = jax.nn.dot_product_attention(q, k, v)
        return self.out(y.reshape(b, t, d))


class EncoderBlock(nnx.Module):
    """Pre-norm transformer block. Every block has the same structure (its drop-path rate is an
    argument, not an attribute), so the ViT runs its blocks as one scanned body."""

    def __init__(self, width, mlp_dim, heads, dropout, dtype, rngs):
        self.norm1 = _layer_norm(width, dtype, rngs)
        self.attn = Attention(width, heads, dtype, rngs)
        self.norm2 = _layer_norm(width, dtype, rngs)
        self.mlp1 = _dense(width, mlp_dim, ("embed", "mlp"), dtype, rngs)
        self.mlp2 = _dense(mlp_dim, width, ("mlp", "embed"), dtype, rngs)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x, train: bool, rng, drop_path_rate=0.0):
        keys = jax.random.split(rng, 4) if rng is not None else [None] * 4
        det = not train
        y = self.attn(self.norm1(x))
        y = self.dropout(y, deterministic=det, rngs=keys[0])
        x = x + drop_path(y, drop_path_rate, train, keys[1])
        y = self.mlp2(nnx.gelu(self.mlp1(self.norm2(x)), approximate=False))
        y = self.dropout(y, deterministic=det, rngs=keys[2])
        return x + drop_path(y, drop_path_rate, train, keys[3])


class ViT(nnx.Module):
    """`model(images float[B,H,W,3], train, rng=None) -> logits float32[B, num_classes]`.

    `rng` (a PRNG key) drives dropout and drop-path; it is required when training with either
    rate above zero. The trainer derives it from (seed, step), so a resumed run draws the same
    masks. Compute runs in `dtype` (bfloat16 for speed); parameters stay float32.

    The blocks run as one `lax.scan` over their parameters stacked on the fly (the parameters
    stay one array per block, so checkpoints keep their layout): XLA compiles one block instead
    of `depth`, which is what a compile for a TPU slice spends its time on. The scan keeps every
    intermediate autodiff saves, stacked over the blocks: more memory than XLA's unrolled
    program (ViT-Ti/16's forward and backward at 16 images on a v5e: 775 MB of temporaries,
    294 MB unrolled). `remat` says what the backward pass recomputes instead (jax.checkpoint):
    "none" (the default: fastest, e.g. 21 ms against 42 ms per CPU step of mu/4), "minimal"
    (keeps the matrix products' outputs, recomputes norms, activations and softmax: ViT-B/16 at
    16 images needs 2.6 GB of temporaries on the CPU, 5.0 GB with "none"), "full" (keeps only
    each block's input: least memory, about a third more compute).
    """

    def __init__(
        self,
        name: str,
        num_classes: int,
        image_size: int,
        *,
        rngs: nnx.Rngs,
        pool: str = "gap",
        posemb: str = "learn",
        dropout: float = 0.0,
        drop_path: float = 0.0,
        dtype=jnp.float32,
        head_zero_init: bool = True,
        remat: str = "none",
    ):
        variant, patch = parse_name(name)
        width, depth, mlp_dim, heads = VARIANTS[variant]
        if image_size % patch:
            raise ValueError(f"image_size {image_size} is not a multiple of the patch size {patch}")
        if pool not in ("gap", "cls"):
            raise ValueError(f"pool {pool!r}: expected 'gap' or 'cls'")
        if posemb not in ("learn", "sincos2d"):
            raise ValueError(f"posemb {posemb!r}: expected 'learn' or 'sincos2d'")
        if remat not in REMAT_POLICIES:
            raise ValueError(f"remat {remat!r}: expected one of {', '.join(REMAT_POLICIES)}")
        self.pool, self.dtype, self.width, self.patch = pool, dtype, width, patch
        self.rates = (dropout, drop_path)
        self.remat = remat
        grid = image_size // patch
        self.embedding = nnx.Conv(
            3,
            width,
            kernel_size=(patch, patch),
            strides=(patch, patch),
            padding="VALID",
            dtype=dtype,
            kernel_init=partitioned(nnx.initializers.lecun_normal(), (None, None, None, "embed")),
            bias_init=partitioned(nnx.initializers.zeros_init(), ("embed",)),
            rngs=rngs,
        )
        if posemb == "learn":
            init = partitioned(nnx.initializers.normal(0.02), (None, None, "embed"))
            self.posemb = nnx.Param(init(rngs.params(), (1, grid * grid, width)))
        else:  # fixed: not a parameter, so the optimiser never touches it
            self.posemb = nnx.Variable(jnp.asarray(sincos_posemb_2d(grid, grid, width)))
        if pool == "cls":
            init = partitioned(nnx.initializers.zeros_init(), (None, None, "embed"))
            self.cls = nnx.Param(init(rngs.params(), (1, 1, width)))
        self.dropout = nnx.Dropout(dropout)
        self.blocks = nnx.List(
            [EncoderBlock(width, mlp_dim, heads, dropout, dtype, rngs) for _ in range(depth)]
        )
        self.norm = _layer_norm(width, dtype, rngs)
        head_init = nnx.initializers.zeros_init() if head_zero_init else None
        self.head = nnx.Linear(
            width,
            num_classes,
            kernel_init=partitioned(
                head_init or nnx.initializers.xavier_uniform(), ("embed", "classes")
            ),
            bias_init=partitioned(nnx.initializers.zeros_init(), ("classes",)),
            rngs=rngs,
        )

    def embed(self, images):
        """images float[B, H, W, 3] -> patch embeddings [B, H/p * W/p, width] in `dtype`: the
        stride-p convolution, computed as the matrix product it is (XLA compiles a patch-sized
        convolution's gradient for a TPU far more slowly, for the same result)."""
        p = self.patch
        b, h, w, c = images.shape
        patches = images.astype(self.dtype).reshape(b, h // p, p, w // p, p, c)
        patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(b, (h // p) * (w // p), p * p * c)
        kernel = self.embedding.kernel[...].astype(self.dtype).reshape(p * p * c, -1)
        return patches @ kernel + self.embedding.bias[...].astype(self.dtype)

    def run_blocks(self, x, train: bool, keys):
        """x [B, T, width] through every block, as one scan; keys: key[depth] or None."""
        depth = len(self.blocks)
        graphdef = nnx.graphdef(self.blocks[0])
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *[nnx.state(b) for b in self.blocks])
        # Drop-path grows linearly with depth (DeiT).
        rates = jnp.arange(depth, dtype=jnp.float32) * (self.rates[1] / max(depth - 1, 1))
        if keys is None:  # nothing random happens: any keys will do
            keys = jax.random.split(jax.random.key(0), depth)
            train_rng = False
        else:
            train_rng = True

        def body(x, layer):
            state, rate, key = layer
            block = nnx.merge(graphdef, state)
            x = block(x, train, key if train_rng else None, rate)
            return x, None

        if REMAT_POLICIES[self.remat] is not None:
            body = jax.checkpoint(body, policy=REMAT_POLICIES[self.remat])
        return jax.lax.scan(body, x, (stacked, rates, keys))[0]

    def features(self, images, train: bool = False, rng=None):
        """images float[B,H,W,3] -> pre-head representation float32[B, width]."""
        if train and rng is None and max(self.rates) > 0:
            raise ValueError("ViT: training with dropout/drop-path needs rng=a PRNG key")
        keys = jax.random.split(rng, len(self.blocks) + 1) if rng is not None else None
        x = self.embed(images)
        b, _, d = x.shape
        x = x + self.posemb[...].astype(self.dtype)
        if self.pool == "cls":
            x = jnp.concatenate(
                [jnp.broadcast_to(self.cls[...].astype(self.dtype), (b, 1, d)), x], 1
            )
        x = self.dropout(x, deterministic=not train, rngs=None if keys is None else keys[-1])
        x = self.run_blocks(x, train, None if keys is None else keys[:-1])
        x = self.norm(x)
        x = x[:, 0] if self.pool == "cls" else x.mean(axis=1)
        return x.astype(jnp.float32)

    def __call__(self, images, train: bool = False, rng=None):
        return self.head(self.features(images, train, rng)).astype(jnp.float32)


# -- the model module --------------------------------------------------------------------------
NAMES = "ViT VARIANT/PATCH (Ti/16, S/16, B/16, L/16, Ti/4, Nano/4, mu/4)"
DEFAULTS = dict(
    pool="gap",  # gap (global average pool) | cls (class token)
    posemb="learn",  # learn | sincos2d
    dropout=0.0,
    drop_path=0.0,  # stochastic depth of the last block (linear in depth)
    remat="none",  # none | minimal | full: what the backward pass recomputes (see ViT)
)
HEAD = ("head/.*",)  # the classifier: re-initialised for a new task


def claims(name: str) -> bool:
    return "/" in name


def validate(config, image_size: int) -> None:
    try:
        _, patch = parse_name(config.name)
    except ValueError as e:
        raise UsageError(f"model.name: {e}") from None
    if image_size % patch:
        raise UsageError(
            f"model.name={config.name!r}: image size {image_size} is not a multiple of {patch}"
        )
    check_choice(config, "pool", ("gap", "cls"), "model.")
    check_choice(config, "posemb", ("learn", "sincos2d"), "model.")
    if "remat" in config:  # configs saved before the key existed run without remat
        check_choice(config, "remat", tuple(REMAT_POLICIES), "model.")
    for key in ("dropout", "drop_path"):
        check(config, key, lambda v: 0.0 <= float(v) < 1.0, "a rate in [0, 1)", "model.")


def create(config, num_classes: int, image_size: int, rngs: nnx.Rngs, dtype) -> ViT:
    return ViT(
        config.name,
        num_classes,
        image_size,
        rngs=rngs,
        pool=config.pool,
        posemb=config.posemb,
        dropout=config.dropout,
        drop_path=config.drop_path,
        remat=config.get("remat", "none"),
        dtype=dtype,
        head_zero_init=config.head_zero_init,
    )


def resample_posemb(posemb: np.ndarray, num_tokens: int) -> np.ndarray:
    """Bilinear resampling of a position embedding [1, g*g, D] to [1, num_tokens, D]."""
    old = int(round(math.sqrt(posemb.shape[1])))
    new = int(round(math.sqrt(num_tokens)))
    grid = np.asarray(posemb, np.float32).reshape(old, old, -1)
    grid = jax.image.resize(grid, (new, new, grid.shape[-1]), "bilinear")
    return np.asarray(grid).reshape(1, new * new, -1)


def _resize(name: str, value: np.ndarray, shape: tuple):
    """A position embedding of another grid (same width) is resampled; nothing else resizes."""
    if name.endswith("posemb") and value.ndim == 3 and value.shape[2] == shape[2]:
        return resample_posemb(value, shape[1])
    return None


def adapt_pretrained(target, loaded, dont_load=HEAD) -> dict:
    """{path: array} of the pre-trained arrays this ViT takes (see synth_jax.models.adapt)."""
    return adapt.select_arrays(target, loaded, dont_load, resize=_resize)

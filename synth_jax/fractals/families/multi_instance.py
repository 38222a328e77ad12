"""Anderson & Farrell's multi-instance fractal images (WACV 2022): the `multi_instance` data family.

Each class is one sigma-factor system (the `sigma` family's table). Image i, from
key = fold_in(fold_in(key(seed), FAMILY_TAG), i), holds n ~ U{min_objects..max_objects} objects
(A&F: 1..5), each drawn in this order, later objects on top:

    class ~ U{0..C-1} (A&F draw it from a cache of recent renders; uniform is the pure-function
        equivalent); a graded render of the class's system at object_render_size (A&F: 112 px at
        224: 100k points, bounding box, one random 3x3 stamp, hits / max hits); a random dihedral
        (transpose, vertical, horizontal flip, each p = 0.5); a fresh colouring (8-bit OpenCV
        HSV, see image_ops.colourise_hsv8); side s = floor(U(0.15, 0.6) image_size), top-left x, y
        ~ U{-(s // 2) .. image_size - s // 2 - 1}; resized bilinearly to s x s (OpenCV's
        INTER_LINEAR: half-pixel centres, clamped, no antialiasing) and rounded to 8 bits;
        every pixel that is not exactly black is copied onto the canvas (clipped to it), so the
        dark fringes the resize leaves are copied too.

on a colourised diamond-square background (`background`; see plasma.py), then with probability
`blur` (A&F: 0.5) a 3x3 Gaussian blur, sigma ~ U(0.5, 1). Labels are multi-hot int32[B, C]
(a class drawn twice is one 1); the trainer then uses A&F's weighted binary cross-entropy
(synth_jax.train.losses).

On the device: the B x max_objects objects are one flat batch of chaos games (inactive slots are
rendered and masked: static shapes; with 1..5 objects, 40% of the object renders are masked), and
each object is resized and placed in one step by two interpolation matrices (canvas rows x source
rows, canvas columns x source columns), so that no shape depends on a drawn size.
Differences from the original: the 3x3 stamp is never empty (A&F: 1 in 512 objects is empty and
still labelled); chains start at the origin and burn in (A&F: one chain from map 1's fixed
point); pixel = round, not truncate, of the fitted coordinate.
"""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax.config import check
from synth_jax.fractals.engine import data_keys, image_ops, render
from synth_jax.fractals.families import sigma

FAMILY_TAG = zlib.crc32(b"multi_instance") & 0x7FFFFFFF

DEFAULTS = dict(
    image_size=224,
    points=100_000,  # chaos-game points per object
    pad=0,  # A&F fit the bounding box to the whole object square
    patch="stamp",
    graded=True,
    flip="random",  # random: a random dihedral per object | none
    colour="hsv8",  # hsv8: A&F's 8-bit OpenCV HSV | hsv | gray
    background="plasma",  # plasma: A&F's colourised diamond-square | noise | black
    min_maps=2,
    max_maps=4,  # A&F's README example draws 2..4 maps; their shipped systems' range is unknown
    sigma=0.0,  # 0: sigma ~ U((5 + N) / 2, (6 + N) / 2) per system
    sigma_sampler="sequential",
    min_objects=1,
    max_objects=5,
    object_scale=(0.15, 0.6),  # object side / image side ~ U(lo, hi)
    object_render_size=0,  # px of an object's render before resizing; 0: image_size // 2
    blur=0.5,  # probability of the 3x3 Gaussian blur of the whole image
    images_per_category=1000,  # an epoch: num_classes x this images
)
CHOICES = {"flip": ("random", "none")}
TABLE_FREE_KEYS = (
    "min_objects",
    "max_objects",
    "object_scale",
    "object_render_size",
    "blur",
    "images_per_category",
)


def validate(config) -> None:
    sigma.validate(config)
    size = config.image_size
    check(config, "min_objects", lambda v: isinstance(v, int) and 1 <= v <= 16, "1..16")
    check(
        config,
        "max_objects",
        lambda v: isinstance(v, int) and config.min_objects <= v <= 16,
        "an integer in min_objects..16",
    )
    check(
        config,
        "object_scale",
        lambda v: len(v) == 2 and 1 / size <= v[0] <= v[1] <= 1,
        "(lo, hi) with 1 / image_size <= lo <= hi <= 1",
    )
    check(config, "object_render_size", lambda v: v == 0 or 16 <= v <= 512, "0 or 16..512")


def build_table(config, rng: np.random.Generator, progress: bool) -> tuple[dict, dict]:
    """One sigma-factor system per class, as the `sigma` family's table."""
    return sigma.build_table(config, rng, progress)


def placement_matrix(start, side, out: int, src: int) -> jax.Array:
    """Bilinear weights float[out, src] that resize a `src`-pixel axis to `side` pixels and place
    it at `start` on an `out`-pixel axis (OpenCV's INTER_LINEAR: output pixel t samples source
    position (t - start + 0.5) src / side - 0.5, clamped to the source); rows outside
    [start, start + side) are zero. start, side: int scalars."""
    t = jnp.arange(out) - start
    inside = (t >= 0) & (t < side)
    pos = jnp.clip((t + 0.5) * (src / side) - 0.5, 0.0, src - 1.0)
    i0 = jnp.floor(pos)
    w = (pos - i0)[:, None]
    i0 = i0.astype(jnp.int32)
    i1 = jnp.minimum(i0 + 1, src - 1)
    weights = (1 - w) * jax.nn.one_hot(i0, src) + w * jax.nn.one_hot(i1, src)
    return weights * inside[:, None]


def place(obj: jax.Array, row_matrix: jax.Array, col_matrix: jax.Array) -> jax.Array:
    """An object float[s, s, 3] resized and placed on the canvas by its placement matrices
    [S, s] (rows) and [S, s] (columns), rounded to 8-bit values -> float[S, S, 3]."""
    hi = jax.lax.Precision.HIGHEST  # exact enough that "not exactly black" means the same
    rows = jnp.einsum("ys,stc->ytc", row_matrix, obj, precision=hi)
    return jnp.round(jnp.einsum("ytc,xt->yxc", rows, col_matrix, precision=hi))


def dihedral(level: jax.Array, bits: jax.Array) -> jax.Array:
    """level float[s, s]; bits bool[3]: transpose, then flip vertically, then horizontally."""
    level = jnp.where(bits[0], level.T, level)
    level = jnp.where(bits[1], level[::-1], level)
    return jnp.where(bits[2], level[:, ::-1], level)


class MultiInstanceImages:
    """The family's renderer: `render(seed, indices)` -> (images, multi-hot labels int32[B, C],
    info {degenerate: any object degenerate, fill: share of the canvas under objects})."""

    multi_label = True

    def __init__(self, config, table):
        self.num_classes = table.num_classes
        self.images_per_category = int(config.images_per_category)
        self.size = int(config.image_size)
        self.object_size = int(config.object_render_size or config.image_size // 2)
        self.object_spec = data_keys.render_spec(
            config, image_size=self.object_size, random_flip=False
        )
        self.min_objects, self.max_objects = int(config.min_objects), int(config.max_objects)
        self.scale = tuple(float(v) for v in config.object_scale)
        self.dihedral = config.flip == "random"
        self.blur = float(config.blur)
        self._params = jnp.asarray(table.params)

    def layout(self, key):
        """Per-image draws: number of objects, their classes, sides, corners, flips, keys (one
        threefry draw of uniforms: each separate draw would add to the compile time)."""
        slots = self.max_objects
        k_u, k_objects, k_background, k_blur = jax.random.split(key, 4)
        u = jax.random.uniform(k_u, (slots, 8))
        pick = lambda v, lo, hi: jnp.minimum(lo + jnp.floor(v * (hi - lo)), hi - 1)  # U{lo..hi-1}
        count = pick(u[0, 7], self.min_objects, self.max_objects + 1)
        scale = self.scale[0] + (self.scale[1] - self.scale[0]) * u[:, 0]
        side = jnp.maximum(jnp.floor(scale * self.size), 1.0)
        half = jnp.floor(side / 2)
        corner = pick(u[:, 1:3], -half[:, None], (self.size - half)[:, None])
        return dict(
            active=jnp.arange(slots) < count,
            classes=pick(u[:, 3], 0, self.num_classes).astype(jnp.int32),
            side=side.astype(jnp.int32),
            corner=corner.astype(jnp.int32),  # (x, y) of the top-left pixel
            bits=(u[:, 4:7] < 0.5) & self.dihedral,
            object_keys=jax.random.split(k_objects, slots),
            background_key=k_background,
            blur_key=k_blur,
        )

    def chaos_games(self, batch: int) -> list[tuple[render.RenderSpec, int, int]]:
        """The chaos games a render of `batch` images runs, for costing it: [(spec, maps per
        system, games)], a game per object slot."""
        return [(self.object_spec, self._params.shape[1], batch * self.max_objects)]

    def draw_objects(self, params, keys, bits):
        """Objects float[O, s, s, 3] (8-bit values, black = transparent) of systems [O, N, 7],
        and their degenerate flags bool[O]."""
        spec = self.object_spec
        k_game, k_window, k_patch, k_colour = jnp.moveaxis(
            jax.vmap(lambda k: jax.random.split(k, 4))(keys), 1, 0
        )
        x, y, box = jax.vmap(lambda p, k: render.chaos_game(p, k, spec))(params, k_game)
        pixels, finite = jax.vmap(lambda a, b, c, k: render.pixel_indices(a, b, c, k, spec))(
            x, y, box, k_window
        )
        counts = render.histogram(pixels, spec.image_size)
        level = jax.vmap(lambda c, k: render.intensity(c, k, spec))(counts, k_patch)
        level = jax.vmap(dihedral)(level, bits)
        degenerate = jax.vmap(lambda c, f: render.is_degenerate(c, f, spec))(counts, finite)
        return jax.vmap(self.colourise)(level, k_colour), degenerate

    def colourise(self, level, key):
        """float[s, s] in [0, 1] -> float[s, s, 3] 8-bit values, black where level == 0."""
        if self.object_spec.colour == "hsv8":
            return image_ops.colourise_hsv8(level, key)
        if self.object_spec.colour == "hsv":
            rgb = jnp.round(image_ops.hsv_colourise(level, key) * 255.0)
        else:
            rgb = jnp.round(jnp.repeat(level[..., None], 3, -1) * self.object_spec.gray_value)
        return jnp.where(level[..., None] > 0, rgb, 0.0)

    def render(self, seed, indices):
        """seed: uint32 scalar; indices int32[B] -> (images [B, S, S, 3] uint8 or bfloat16,
        labels int32[B, C] multi-hot, info {degenerate bool[B], fill float[B]})."""
        base = jax.random.fold_in(jax.random.key(jnp.asarray(seed, jnp.uint32)), FAMILY_TAG)
        keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.asarray(indices, jnp.int32))
        lay = jax.vmap(self.layout)(keys)
        batch, slots, size, src = keys.shape[0], self.max_objects, self.size, self.object_size
        flat = lambda a: a.reshape(batch * slots, *a.shape[2:])
        objects, degenerate = self.draw_objects(
            self._params[flat(lay["classes"])], flat(lay["object_keys"]), flat(lay["bits"])
        )
        objects = objects.reshape(batch, slots, src, src, 3)
        matrix = jax.vmap(jax.vmap(lambda c, s: placement_matrix(c, s, size, src)))
        rows = matrix(lay["corner"][..., 1], lay["side"])  # [B, K, S, s]
        cols = matrix(lay["corner"][..., 0], lay["side"])
        background = self.object_spec.background
        if background == "black":
            canvas = jnp.zeros((batch, size, size, 3))
        else:
            draw = lambda k: render.background_image(k, size, background)
            canvas = jnp.round(jax.vmap(draw)(lay["background_key"]) * 255.0)
        covered = jnp.zeros((batch, size, size), bool)
        for j in range(slots):  # later objects on top
            placed = jax.vmap(place)(objects[:, j], rows[:, j], cols[:, j])
            opaque = jnp.any(placed > 0, axis=-1) & lay["active"][:, j, None, None]
            canvas = jnp.where(opaque[..., None], placed, canvas)
            covered = covered | opaque
        canvas = jax.vmap(lambda im, k: image_ops.random_blur(im, k, self.blur))(
            canvas, lay["blur_key"]
        )
        hot = jax.nn.one_hot(lay["classes"], self.num_classes, dtype=jnp.int32)
        labels = jnp.max(hot * lay["active"][..., None], axis=1)
        info = {
            "degenerate": jnp.any(degenerate.reshape(batch, slots) & lay["active"], axis=1),
            "fill": jnp.mean(covered, axis=(1, 2)),
        }
        return render.to_dtype(jnp.clip(canvas, 0, 255), self.object_spec.dtype), labels, info


def renderer(config, table) -> MultiInstanceImages:
    return MultiInstanceImages(config, table)


def preview_overrides(num: int, image_size: int) -> dict:
    return dict(points=data_keys.preview_points(image_size // 2))

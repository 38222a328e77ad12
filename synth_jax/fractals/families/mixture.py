"""Mixed sources: one pre-training whose images come from a weighted mixture of families; the
`mixture` data family.

    data = mixture_config({"multi": data_config("multi_instance"), "ofdb": data_config("ofdb",
                           image_size=224)}, {"multi": 0.5, "ofdb": 0.5})

Components are taken in alphabetical order of their names (ml_collections sorts keys).
Component k's classes follow the earlier components' (labels offset by their class counts, so
they stay disjoint: C = sum of the components' classes), and so do its images: global index i
in [O_k, O_k + N_k) is image i - O_k of component k (N_k its epoch). That map from an index to
(component, component index) is fixed by the component sizes alone, so an image is a pure
function of (seed, index): component k renders with the seed mix32(seed ^ mix32(k + 1)).
If any component has multi-hot labels, every label is multi-hot over the C classes.

Batches: the weights become whole slots in a block of `period` images (largest remainder:
n_k slots of period, realised weight n_k / period, reported in the table's stats). A batch is
batch_size // period blocks, each a seeded permutation (by seed, step, block) of the slot table,
plus a remainder block in table order. Component k's j-th slot of step t takes its sample
step * c_k + j (c_k its slots per batch) of its own seeded epoch order (every image once per
epoch, a fresh order each epoch, as a single family's epochs). Each component is then rendered
only for its own slots: `render` finds each component's images by a stable sort of the
components of the indices it is given, whose counts are static when they equal the slot counts
of that many images (true of every training batch, and of each device's slice when
batch_size / devices is a multiple of `period`). For any other set of indices (previews, exports)
it still renders exactly, by rendering every component for every index and selecting (K times
the work), chosen at run time by `lax.cond`.

Components must share image_size and dtype; a difference is refused with one line naming the
component's key (they are not resized). A mixture cannot hold a mixture.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from synth_jax.config import check
from synth_jax.errors import UsageError
from synth_jax.fractals import family
from synth_jax.fractals.dataset import FractalDataset, category_walk, epoch_order
from synth_jax.fractals.engine import counter_random

LAYOUT_TAG = 0x6D697820  # folded into the seed of the batch layout

DEFAULTS = dict(
    components={},  # name -> data config of one family (not a mixture)
    weights={},  # name -> weight > 0 (normalised), the same names
    period=16,  # slots of a block: weights are realised as whole slots of this many images
)


def component_names(config) -> list[str]:
    return sorted(config.components.keys())


def slot_counts(weights, period: int) -> np.ndarray:
    """Largest-remainder rounding of the normalised weights to `period` whole slots: int[K]."""
    w = np.asarray(weights, np.float64)
    share = w / w.sum() * period
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: period - counts.sum()]] += 1
    return counts


def validate(config) -> None:
    names = component_names(config)
    if not names:
        raise UsageError(
            "config key 'components' is empty: set it to {name: data_config(FAMILY), ...}"
        )
    weight_names = sorted(config.weights.keys())
    if weight_names != names:
        raise UsageError(
            f"config key 'weights' names {weight_names}: expected one weight for each of the "
            f"components {names}"
        )
    for name in names:
        check(config.weights, name, lambda v: v > 0, "a positive weight", prefix="weights.")
        comp = config.components[name]
        if not isinstance(comp, ml_collections.ConfigDict) or "family" not in comp:
            raise UsageError(f"config key 'components.{name}': expected a data_config(FAMILY)")
        if comp.family == "mixture":
            raise UsageError(f"config key 'components.{name}.family': a mixture cannot hold one")
        try:
            family.validate(comp)
        except UsageError as e:
            raise UsageError(f"components.{name}: {e}") from None
        for key in ("image_size", "dtype"):
            if comp[key] != config[key]:
                raise UsageError(
                    f"config key 'components.{name}.{key}'={comp[key]!r}: expected "
                    f"{config[key]!r}, the mixture's {key} (components are not resized or cast)"
                )
    total = sum(config.components[n].num_classes for n in names)
    check(
        config,
        "num_classes",
        lambda v: v == total,
        f"{total}, the sum of the components' num_classes",
    )
    check(config, "period", lambda v: isinstance(v, int) and 1 <= v <= 4096, "an integer 1..4096")
    slots = slot_counts([config.weights[n] for n in names], config.period)
    if slots.min() == 0:
        raise UsageError(
            f"config key 'period'={config.period}: component {names[int(np.argmin(slots))]!r} "
            f"gets no slot of the {config.period}; raise period or its weight"
        )


def build_table(config, rng: np.random.Generator, progress: bool) -> tuple[dict, dict]:
    """The components' tables (each from its own config and seed; `rng` is unused), their
    arrays under "<name>.<array>"."""
    arrays, stats = {}, {}
    names = component_names(config)
    for name in names:
        table = family.build_table(config.components[name], progress=progress)
        arrays.update({f"{name}.{key}": value for key, value in table.arrays.items()})
        stats[name] = table.stats
    slots = slot_counts([config.weights[n] for n in names], config.period)
    stats["realised_weights"] = {n: int(s) / config.period for n, s in zip(names, slots)}
    return arrays, stats


def component_seed(seed, k: int):
    return counter_random.mix32(
        jnp.asarray(seed, jnp.uint32) ^ counter_random.mix32(jnp.uint32(k + 1))
    )


class MixtureImages:
    """The family's renderer: own index layout (`num_images`, `indices_for_step`,
    `categories`, `preview_indices`) over the components' FractalDatasets."""

    images_per_category = None

    def __init__(self, config, table):
        self.names = component_names(config)
        self.parts = []
        for name in self.names:
            comp = config.components[name]
            prefix = name + "."
            arrays = {k[len(prefix) :]: v for k, v in table.arrays.items() if k.startswith(prefix)}
            part_table = family.FamilyTable(
                comp.family, arrays, table.stats.get(name, {}), family.table_fingerprint(comp)
            )
            self.parts.append(FractalDataset(comp, table=part_table))
        self.num_classes = sum(p.num_classes for p in self.parts)
        self.class_offsets = np.cumsum([0] + [p.num_classes for p in self.parts])[:-1]
        self.index_offsets = np.cumsum([0] + [p.num_images for p in self.parts])
        self.num_images = int(self.index_offsets[-1])
        self.multi_label = any(p.multi_label for p in self.parts)
        self.period = int(config.period)
        self.slots = slot_counts([config.weights[n] for n in self.names], self.period)
        self.slot_table = np.repeat(np.arange(len(self.parts)), self.slots)

    # -- index layout -----------------------------------------------------------------------
    def split(self, indices):
        """Global indices int[B] -> (component int32[B], component index int32[B])."""
        indices = jnp.asarray(indices, jnp.int32)
        component = jnp.searchsorted(jnp.asarray(self.index_offsets[1:-1]), indices, side="right")
        component = component.astype(jnp.int32)
        return component, indices - jnp.asarray(self.index_offsets[:-1], jnp.int32)[component]

    def capacities(self, batch: int) -> np.ndarray:
        """Images of each component in a batch of `batch` slots: int[K] (static)."""
        blocks, rest = divmod(batch, self.period)
        return blocks * self.slots + np.bincount(self.slot_table[:rest], minlength=len(self.parts))

    def batch_components(self, seed, step, batch: int):
        """The component int32[batch] of each position of step `step`'s batch."""
        blocks, rest = divmod(batch, self.period)
        table = jnp.asarray(self.slot_table, jnp.int32)
        parts = []
        if blocks:
            mix = counter_random.mix32
            key = mix(
                mix(jnp.asarray(seed, jnp.uint32) ^ jnp.uint32(LAYOUT_TAG))
                ^ mix(jnp.asarray(step, jnp.uint32))
            )
            cells = jnp.arange(blocks * self.period, dtype=jnp.uint32).reshape(blocks, -1)
            order = jnp.argsort(mix(cells ^ key), axis=1)  # a permutation per block
            parts.append(table[order].reshape(-1))
        if rest:
            parts.append(table[:rest])
        return jnp.concatenate(parts)

    def indices_for_step(self, seed, step, batch: int):
        """Pure and jittable: the global indices int32[batch] of training step `step`."""
        component = self.batch_components(seed, step, batch)
        caps = jnp.asarray(self.capacities(batch), jnp.uint32)
        hot = component[:, None] == jnp.arange(len(self.parts))[None, :]
        rank = jnp.take_along_axis(jnp.cumsum(hot, axis=0) - 1, component[:, None], 1)[:, 0]
        sample = jnp.asarray(step, jnp.uint32) * caps[component] + rank.astype(jnp.uint32)
        local = jnp.zeros(batch, jnp.int32)
        for k, part in enumerate(self.parts):
            order = epoch_order(component_seed(seed, k), sample, part.num_images)
            local = jnp.where(component == k, order, local)
        return jnp.asarray(self.index_offsets[:-1], jnp.int32)[component] + local

    def categories(self, indices):
        """The class int32[B] of each global index (single-label components)."""
        component, local = self.split(indices)
        out = jnp.zeros(component.shape, jnp.int32)
        for k, part in enumerate(self.parts):
            safe = jnp.clip(local, 0, part.num_images - 1)
            out = jnp.where(component == k, part.categories(safe) + self.class_offsets[k], out)
        return out

    def preview_indices(self, num: int) -> np.ndarray:
        """Image k shows component k mod K, through that component's own preview walk."""
        count = len(self.parts)
        out = np.zeros(num, np.int32)
        for k, part in enumerate(self.parts):
            mine = np.arange(k, num, count)
            if hasattr(part.renderer, "preview_indices"):
                walk = np.asarray(part.renderer.preview_indices(len(mine)))
            else:
                walk = category_walk(part.num_classes, part.images_per_category, len(mine))
            out[mine] = walk + self.index_offsets[k]
        return out

    # -- rendering ----------------------------------------------------------------------------
    def lift(self, labels, k: int):
        """Component k's labels -> the mixture's (offset; multi-hot over C if any part is)."""
        offset = int(self.class_offsets[k])
        if not self.multi_label:
            return labels + offset
        if labels.ndim == 1:
            return jax.nn.one_hot(labels + offset, self.num_classes, dtype=jnp.int32)
        after = self.num_classes - offset - labels.shape[1]
        return jnp.pad(labels.astype(jnp.int32), ((0, 0), (offset, after)))

    def render_part(self, seed, k, local):
        images, labels, info = self.parts[k].renderer.render(component_seed(seed, k), local)
        return images, self.lift(labels, k), info["degenerate"], info["fill"]

    def render(self, seed, indices):
        """seed: uint32 scalar; indices int32[B] -> (images, labels int32[B] or int32[B, C],
        info {degenerate bool[B], fill float[B]})."""
        component, local = self.split(indices)
        caps = self.capacities(component.shape[0])
        counts = jnp.sum(component[:, None] == jnp.arange(len(self.parts))[None, :], axis=0)

        def own_slots(component, local):  # each component renders only its own images
            order = jnp.argsort(component, stable=True)
            outputs, start = [], 0
            for k, cap in enumerate(caps):
                if cap:
                    where = order[start : start + cap]
                    outputs.append((where, self.render_part(seed, k, local[where])))
                start += int(cap)
            first = outputs[0][1]
            result = [jnp.zeros((component.shape[0], *x.shape[1:]), x.dtype) for x in first]
            for where, values in outputs:
                result = [r.at[where].set(v) for r, v in zip(result, values)]
            return tuple(result)

        def every_slot(component, local):  # any indices: render all, select
            result = None
            for k, part in enumerate(self.parts):
                values = self.render_part(seed, k, jnp.clip(local, 0, part.num_images - 1))
                if result is None:
                    result = values
                    continue
                pick = component == k
                result = tuple(
                    jnp.where(pick.reshape(-1, *[1] * (v.ndim - 1)), v, r)
                    for r, v in zip(result, values)
                )
            return result

        images, labels, degenerate, fill = jax.lax.cond(
            jnp.all(counts == jnp.asarray(caps)), own_slots, every_slot, component, local
        )
        return images, labels, {"degenerate": degenerate, "fill": fill}


def renderer(config, table) -> MixtureImages:
    return MixtureImages(config, table)


def mixture_config(components: dict, weights: dict, **overrides) -> ml_collections.ConfigDict:
    """The data config of a mixture of `components` (name -> data config) with `weights`
    (name -> weight); image_size, dtype and num_classes come from the components."""
    first = next(iter(components.values()))
    values = dict(
        components=ml_collections.ConfigDict(dict(components)),
        weights=ml_collections.ConfigDict({k: float(v) for k, v in weights.items()}),
        image_size=first.image_size,
        dtype=first.dtype,
        num_classes=sum(c.num_classes for c in components.values()),
    )
    values.update(overrides)
    return family.data_config("mixture", **values)


def preview_overrides(num: int, image_size: int) -> dict:
    """Half the classes from OFDB, half from Anderson & Farrell's multi-instance images (or
    all from OFDB for a grid of one)."""
    counts = {"ofdb": num - num // 2, "multi_instance": num // 2}
    components = {}
    for name, count in counts.items():
        if count:
            extra = family.FAMILIES.lookup(name).preview_overrides(count, image_size)
            components[name] = family.data_config(
                name, num_classes=count, image_size=image_size, **extra
            )
    return dict(
        components=ml_collections.ConfigDict(components),
        weights=ml_collections.ConfigDict({name: 1.0 for name in components}),
        period=len(components),
    )


family.FAMILIES.register("mixture", sys.modules[__name__])

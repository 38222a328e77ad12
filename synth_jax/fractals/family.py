"""Data families: a config names a family (`config.family`), and the family's module does the rest.

`data_config(family)` holds the one set of defaults that `configs/data/*.py` and the pre-training
configs share (the shared keys of `data_keys` plus the family's own). `build_table(config)`
validates the config (errors name the key) and returns the family's `FamilyTable`, built once
from numpy's seeded streams, saved and reloaded (npz + json) when `table_path` is set;
`synth_jax.fractals.FractalDataset` renders from it on the device.

Adding a family is one module and one table entry. The module defines

    DEFAULTS: dict           its keys with their defaults; may also change a shared default
                             (data_keys.SHARED_DEFAULTS: image_size, points, patch, colour, ...)
    CHOICES: dict            optional: key -> allowed values (checked before `validate`); a
                             shared key here (e.g. degenerate) takes the family's values
    TABLE_FREE_KEYS: tuple   its keys that change the images but not the table
    validate(config)         raises synth_jax.errors.UsageError naming the first bad key (use
                             synth_jax.config.check / check_choice); the shared keys are checked
    build_table(config, rng, progress) -> (arrays: dict of np arrays, stats: dict)
                             the per-category parameters the renderer draws from, from the numpy
                             generator rng = default_rng(config.seed); ({}, {}) for none
    renderer(config, table) -> an object with
        images_per_category: int     the index layout: image i shows category
                                     i // images_per_category
        render(seed, indices) -> (images uint8|bfloat16[B, H, W, 3] on the 0..255 scale,
                                  labels int32[B] (or multi-hot int32[B, C], below),
                                  info {"degenerate": bool[B], "fill": float[B]})
                                     pure and jittable (vmap inside); seed: uint32 scalar,
                                     indices: int32[B] in [0, num_images)
    preview_overrides(num, image_size) -> dict
                             data-config overrides of a preview grid that builds in seconds

and is registered with `FAMILIES.register("name", module)` (from the module itself or the config
file that uses it; see docs/extending.md). The built-in families are fractaldb, sigma, onepfrac,
one_image, multi_instance, ofdb, visualatom, rcdb, dead_leaves and spectrum; `mixture`
(mixture.py, which needs this table) registers itself when synth_jax.fractals is imported. The
shared IFS renderer is `ifs_images.IFSImages`.

A renderer may also define (all optional; FractalDataset falls back to the layout above):
    multi_label: bool            True: render returns multi-hot labels int32[B, C] (several
                                 classes per image; the trainer's loss is then the weighted
                                 binary cross-entropy, and `synth-jax export` writes TFDS only)
    num_images: int              an epoch, when it is not num_classes x images_per_category
    indices_for_step(seed, step, batch) -> int32[batch]    its own batch layout (mixture)
    categories(indices) -> int32[B]                        its own index -> class map
    preview_indices(num) -> int[num]                       indices a preview grid shows

Reproducibility: every candidate system comes from `np.random.default_rng(seed)`, so it is the
same on any machine. The search filters (fill rate, degeneracy) render candidates with the device
renderer in float32; a candidate whose fill rate sits within float noise of the threshold could
be judged differently on another backend. Set `table_path` to build a table once and ship it.
"""

from __future__ import annotations

import dataclasses
import json
import os

import ml_collections
import numpy as np

from synth_jax.config import check_choice, config_to_dict, require_keys
from synth_jax.errors import UsageError
from synth_jax.files import atomic_path, write_json
from synth_jax.fractals.engine import data_keys
from synth_jax.fractals.families import (
    dead_leaves,
    fractaldb,
    multi_instance,
    ofdb,
    one_image,
    onepfrac,
    rcdb,
    sigma,
    spectrum,
    visualatom,
)
from synth_jax.registry import Registry

FAMILIES = Registry(
    "data family",
    "family",
    {
        "fractaldb": fractaldb,
        "sigma": sigma,
        "onepfrac": onepfrac,
        "one_image": one_image,
        # Anderson & Farrell's multi-instance images; OFDB (one image per class)
        "multi_instance": multi_instance,
        "ofdb": ofdb,
        # contour and noise families: tables of drawn category values, instances on the device
        "visualatom": visualatom,
        "rcdb": rcdb,
        "dead_leaves": dead_leaves,
        "spectrum": spectrum,
    },
    required=("DEFAULTS", "validate", "build_table", "renderer", "preview_overrides"),
)


def _defaults(family: str) -> dict:
    return {**data_keys.SHARED_DEFAULTS, **FAMILIES.lookup(family).DEFAULTS, "family": family}


def data_config(family: str, **overrides) -> ml_collections.ConfigDict:
    """The default data config of `family` (one of FAMILIES) with `overrides` applied."""
    values = _defaults(family)
    for key, value in overrides.items():
        if key not in values:
            raise UsageError(f"data config key {key!r} is unknown for family {family!r}")
        values[key] = value
    return ml_collections.ConfigDict(values)


def validate(config) -> None:
    """Raises UsageError naming the first bad key of a data config."""
    module = FAMILIES.lookup(config.get("family"))
    require_keys(config, {k: None for k in _defaults(config.family)})
    own_choices = getattr(module, "CHOICES", {})
    data_keys.check_shared(config, own_choices)
    for key, choices in own_choices.items():
        check_choice(config, key, choices)
    module.validate(config)
    if "images_per_category" in config:  # before the table is built (the dataset checks again)
        check_image_count(config.num_classes * config.images_per_category)


def check_image_count(num_images: int) -> None:
    """An epoch's images are indexed by int32 on the device: refuses 2^31 or more."""
    if num_images >= 2**31:
        raise UsageError(
            f"data config: 'num_classes' x images per category = {num_images:,} images, but a "
            f"dataset holds at most 2^31 - 1 (int32 indices): lower num_classes or "
            f"images_per_category"
        )


@dataclasses.dataclass
class FamilyTable:
    """What a family's renderer draws from: `arrays` (numpy, per category; the IFS families' are
    `params`, `variants`, `variant_ok`, see ifs_images), `stats` (what the build drew and
    rejected) and `config` (the keys that determine the table). Arrays read as attributes too:
    `table.params` is `table.arrays["params"]`."""

    family: str
    arrays: dict
    stats: dict
    config: dict

    @property
    def num_classes(self) -> int:
        return int(self.config["num_classes"])

    def __getattr__(self, name):
        if name.startswith("__") or name == "arrays":
            raise AttributeError(name)
        try:
            return self.arrays[name]
        except KeyError:
            raise AttributeError(f"FamilyTable of {self.family!r} has no array {name!r}") from None


def table_fingerprint(config) -> dict:
    """The config keys that determine the table (image options do not)."""
    free = set(data_keys.TABLE_FREE_KEYS)
    free |= set(getattr(FAMILIES.lookup(config.family), "TABLE_FREE_KEYS", ()))
    return {k: v for k, v in config_to_dict(config).items() if k not in free}


def build_table(config, progress: bool = False) -> FamilyTable:
    """Validates `config` and builds (or loads from config.table_path) the family's table."""
    validate(config)
    if config.table_path and os.path.exists(config.table_path):
        table = load_table(config.table_path)
        if table.config != table_fingerprint(config):
            raise UsageError(
                f"config key 'table_path'={config.table_path!r}: the table there was built from a "
                f"different config ({table.config}); remove the file or point table_path elsewhere"
            )
        return table
    module = FAMILIES.lookup(config.family)
    arrays, stats = module.build_table(config, np.random.default_rng(config.seed), progress)
    table = FamilyTable(config.family, dict(arrays), stats, table_fingerprint(config))
    if config.table_path:
        save_table(config.table_path, table)
    return table


def save_table(path: str, table: FamilyTable) -> None:
    """Writes `path` (.npz: the arrays) and `path`.json (family, stats, config) atomically."""
    if not path.endswith(".npz"):
        raise UsageError(f"config key 'table_path'={path!r}: expected a .npz path")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **table.arrays)
    write_json(
        path + ".json", {"family": table.family, "stats": table.stats, "config": table.config}
    )


def load_table(path: str) -> FamilyTable:
    try:
        with np.load(path) as data:
            arrays = {name: data[name] for name in data.files}
        with open(path + ".json") as f:
            meta = json.load(f)
    except (OSError, KeyError, ValueError) as e:
        raise UsageError(f"table {path!r}: cannot read it ({e}); delete it to rebuild") from None
    return FamilyTable(meta["family"], arrays, meta["stats"], meta["config"])

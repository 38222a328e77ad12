"""A run's first phase: the trainer's config schema, its checks, and what the workdir allows,
all decided before anything compiles or is written.

    run = prepare(config, workdir, source, extend=None, restart=False)

`train_config()` holds the trainer's keys and defaults (the schema); `validate` checks them,
naming the key of the first fault (UsageError, one line), and turns the durations people write
(`total_epochs`, `optim.warmup_epochs`) into steps in one place; `check_same_run` tells whether a
workdir's config.json is the same experiment (what a resumed run may change is
RESUMABLE_CHANGES); `prepare` does all of it for `train` and returns a `Run`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import jax
import ml_collections

from synth_jax import evaluators, files, models
from synth_jax.config import (
    allowed_keys,
    check,
    check_finite,
    config_to_dict,
    replace_keys,
    with_defaults,
)
from synth_jax.errors import UsageError
from synth_jax.train import augment as augment_lib
from synth_jax.train import lock, objectives
from synth_jax.train import mesh as mesh_lib
from synth_jax.train import optim as optim_lib
from synth_jax.train import workdir as workdir_lib
from synth_jax.train.metrics import log_line

# Keys a resumed run may change (the run's length, logging, checkpointing, evaluating, or moving
# it to another mesh: the state restores onto any mesh); any other change needs a new workdir. A
# length that changes the learning-rate schedule needs `extend` (synth_jax.train.workdir).
RESUMABLE_CHANGES = (
    "total_steps",
    "total_epochs",
    "log_every_steps",
    "checkpoint.",
    "evals.",
    "mesh.",
)


def train_config(**overrides) -> ml_collections.ConfigDict:
    """The trainer's defaults, the schema of its keys; callers add their own sections (e.g.
    `data`). `overrides` replace whole keys (a section is given whole)."""
    config = ml_collections.ConfigDict(
        dict(
            seed=0,
            batch_size=128,
            total_steps=0,
            total_epochs=0.0,
            image_size=0,  # 0: the data's size
            log_every_steps=10,
            # Images each device renders at once (0 or more than its share of the batch: all
            # of it); a divisor of the share compiles faster and needs less memory
            # (synth_jax.train.local_batch).
            render_chunk=0,
            # Run the model as at evaluation while training (no dropout, batch statistics
            # frozen): for a frozen backbone, with optim.trainable naming what trains.
            inference_mode=False,
            # evals.<name> = eval_config(TYPE, every_steps=N, ...): run every N steps and at the
            # end, logged beside the loss (synth_jax.evaluators)
            evals=ml_collections.ConfigDict(),
            model=models.model_config("Ti/16"),
            # What the step minimises: supervised | simclr | mae, with that objective's keys
            # (synth_jax.train.objectives)
            objective=objectives.objective_config("supervised"),
            optim=optim_lib.optim_config(),
            augment=augment_lib.augment_config(),
            mesh=ml_collections.ConfigDict(dict(data=-1, fsdp=1, model=1)),
            checkpoint=ml_collections.ConfigDict(dict(every_steps=1000, keep=3, async_save=True)),
        )
    )
    return replace_keys(config, overrides, "trainer")


# Keys the trainer reads (from its defaults); other top-level keys (data, ...) belong to the
# caller. The model module checks the `model` section (its keys depend on the model), the
# evaluators their `evals.<name>` sections.
TRAIN_KEYS = allowed_keys(train_config(), open_sections=("model", "evals", "objective"))


def validate(
    config, num_images: int | None, data_image_size: int | None, num_devices: int | None = None
) -> dict:
    """Checks the trainer's keys before anything compiles; returns resolved durations.
    num_devices: the mesh's device count (default: jax.device_count()).

    Raises UsageError naming the key. Returns {total_steps, steps_per_epoch, image_size,
    mesh_shape}.
    """
    config = with_defaults(config, train_config(), open_sections=("model", "objective"))
    check_finite(config)
    _check_keys(config)
    image_size = int(config.get("image_size", 0) or data_image_size or 0)
    if image_size <= 0:
        raise UsageError("image_size: set it (the model's input size in pixels)")
    models.check_model_config(config.model, image_size)
    objectives.validate(config.objective, config.model)
    _check_views_source(config)
    evaluators.validate_evals(config.evals)
    optim_lib.check_optim_config(config.optim)
    augment_lib.check_augment_config(config.augment)
    try:
        shape = mesh_lib.mesh_shape(config.mesh, num_devices or jax.device_count())
    except ValueError as e:
        raise UsageError(str(e)) from None
    _check_batch(config, data_parallel=shape["data"] * shape["fsdp"])
    total, steps_per_epoch = _resolve_steps(config, num_images)
    if config.log_every_steps < 1:
        raise UsageError(f"log_every_steps={config.log_every_steps}: must be >= 1")
    if num_devices is None:  # a run here (not a compile for another machine): does it fit?
        check_memory(config, image_size, shape["data"] * shape["fsdp"])
    return dict(
        total_steps=total, steps_per_epoch=steps_per_epoch, image_size=image_size, mesh_shape=shape
    )


def device_memory_bytes() -> int | None:
    """What one local device may hold: its memory limit (GPU, TPU), or for the CPU the
    machine's memory shared by its (possibly simulated) devices; None when unknown."""
    device = jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # a backend without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return total // max(1, jax.local_device_count())


def check_memory(config, image_size: int, data_parallel: int) -> None:
    """Refuses, before anything compiles, a step that cannot fit: a floor of its memory per
    device (the float32 input images of one micro-batch, and the rendered points of one render
    chunk) against the device's memory. A floor only: a run that passes may still not fit
    (`synth-jax compile` measures it), but one that fails never would."""
    available = device_memory_bytes()
    if not available:
        return
    per_device = max(1, int(config.batch_size) // data_parallel)
    micro = max(1, per_device // max(1, int(config.optim.accum_steps)))
    floors = [
        (
            micro * image_size * image_size * 3 * 4,
            f"batch_size={config.batch_size}: {micro} images of {image_size}x{image_size}x3 "
            f"float32 per device",
            "lower batch_size, or raise optim.accum_steps",
        )
    ]
    data = config.get("data") or {}
    points = data.get("points", 0) if hasattr(data, "get") else 0
    if isinstance(points, int) and points > 0:
        chunk = int(config.render_chunk) if 0 < config.render_chunk < per_device else per_device
        floors.append(
            (
                chunk * points * 2 * 4,
                f"data.points={points}: {chunk} images of {points} float32 (x, y) points "
                f"rendered at once per device",
                "lower data.points, or set render_chunk to a small divisor of the share",
            )
        )
    for need, what, fix in floors:
        if need > available:
            raise UsageError(
                f"{what} need at least {need / 2**30:,.1f} GiB, more than the "
                f"{available / 2**30:,.1f} GiB a device has; {fix}"
            )


def _check_views_source(config) -> None:
    """SimCLR and MAE make their own views of the images: the trainer's augmentation must not
    mix images (mixup, cutmix) first."""
    kind = config.objective.get("type", "supervised")
    if kind == "supervised":
        return
    for key in ("mixup", "cutmix"):
        if config.augment[key] > 0:
            raise UsageError(
                f"augment.{key}={config.augment[key]}: objective.type={kind!r} makes its own views "
                f"of the images; set augment.{key}=0"
            )


def _check_keys(config) -> None:
    """The types of the scalar keys, and no unknown key in the trainer's sections."""
    check(
        config, "seed", lambda v: isinstance(v, int) and 0 <= v < 2**32, "an integer in [0, 2**32)"
    )
    for key in ("every_steps", "keep"):
        check(
            config.checkpoint,
            key,
            lambda v: isinstance(v, int) and v >= 1,
            "an integer >= 1",
            "checkpoint.",
        )
    check(config, "total_steps", lambda v: isinstance(v, int), "an integer (0: use total_epochs)")
    check(config, "batch_size", lambda v: isinstance(v, int), "an integer")
    for section, sub in TRAIN_KEYS.items():
        if isinstance(sub, dict) and section in config:
            unknown = sorted(set(config[section].keys()) - set(sub))
            if unknown:
                raise UsageError(
                    f"config key '{section}.{unknown[0]}' is unknown; known keys here: "
                    f"{', '.join(sorted(sub))}"
                )


def _check_batch(config, data_parallel: int) -> None:
    """The global batch splits evenly: over the data-parallel devices, into micro-batches, into
    mixup pairs on each device, into render chunks, and over the processes."""
    dp, batch = data_parallel, int(config.batch_size)
    if batch <= 0 or batch % dp:
        raise UsageError(
            f"batch_size={batch}: the global batch must be a positive multiple of the "
            f"data-parallel size {dp} (mesh data x fsdp)"
        )
    accum = int(config.optim.accum_steps)
    if batch % accum or (batch // accum) % dp:
        raise UsageError(
            f"optim.accum_steps={accum}: batch_size {batch} must split into {accum} "
            f"micro-batches that are each a multiple of the data-parallel size {dp}"
        )
    per_device = batch // dp
    if (config.augment.mixup > 0 or config.augment.cutmix > 0) and per_device % 2:
        raise UsageError(
            f"batch_size={batch}: with mixup or cutmix each device's share of the batch must be "
            f"even (it mixes neighbouring images on one device), not {per_device} (data x fsdp "
            f"= {dp}); change batch_size or the mesh"
        )
    check(
        config,
        "render_chunk",
        lambda v: isinstance(v, int) and v >= 0,
        "an integer >= 0 (0: each device renders its whole share at once)",
    )
    if 0 < config.render_chunk < per_device and per_device % config.render_chunk:
        raise UsageError(
            f"render_chunk={config.render_chunk}: must divide each device's share of the batch, "
            f"{per_device} images (batch_size {batch} / data x fsdp {dp})"
        )
    if batch % jax.process_count():
        raise UsageError(
            f"batch_size={batch}: must be a multiple of the process count {jax.process_count()}"
        )


def _resolve_steps(config, num_images: int | None) -> tuple[int, float]:
    """(total steps, steps per epoch: nan without num_images) from total_steps or total_epochs."""
    steps_per_epoch = num_images / config.batch_size if num_images else float("nan")
    if config.total_steps > 0 and config.total_epochs > 0:
        raise UsageError("total_steps and total_epochs are both set; set one (the other to 0)")
    if config.total_steps > 0:
        total = int(config.total_steps)
    elif config.total_epochs > 0:
        if not num_images:
            raise UsageError("total_epochs needs a source with num_images; set total_steps instead")
        total = max(1, int(math.ceil(config.total_epochs * steps_per_epoch)))
    else:
        raise UsageError("total_steps: set total_steps or total_epochs to a positive number")
    if config.optim.warmup_epochs and not num_images:
        raise UsageError(
            "optim.warmup_epochs needs a source with num_images; use optim.warmup_steps"
        )
    return total, steps_per_epoch


def _flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _json_flat(tree) -> dict:
    return _flatten(json.loads(json.dumps(tree, default=files._json_default)))


def check_same_run(workdir: str, config_dict: dict, old: dict | None = None):
    """A resumed workdir must hold the same experiment: name the first key that differs.
    `old`: the workdir's config.json (read from there when not given).

    A key that only one of the two configs has, at its default value, is no difference: a
    config.json written by an earlier version lacks keys added since (and may hold model keys
    of other model kinds), and those runs used the defaults."""
    if old is None:
        old = workdir_lib.read_config(workdir, has_checkpoints=True)
        if old is None:
            return
    old = _flatten(old)
    new = _json_flat(config_dict)
    defaults = _json_flat(
        {
            **config_to_dict(train_config()),
            "model": models.all_model_defaults(),
            "data": {"label_noise": 0.0},  # a data key added later; earlier runs had none
        }
    )
    for key in sorted(set(old) | set(new)):
        if key.startswith(RESUMABLE_CHANGES) or key in RESUMABLE_CHANGES:
            continue
        if (key in old) != (key in new) and key in defaults:
            if defaults[key] == (old[key] if key in old else new[key]):
                continue
        if old.get(key) != new.get(key):
            raise UsageError(
                f"{workdir} holds a run whose config differs at {key!r} "
                f"({old.get(key)!r} there, {new.get(key)!r} now); use another --workdir"
            )


def renders_on_device(source) -> bool:
    """Whether `source` is rendered inside the step (FractalDataset-like) rather than host-fed."""
    return hasattr(source, "render") and hasattr(source, "indices_for_step")


@dataclasses.dataclass(frozen=True)
class Run:
    """A run that may start: its config (with the trainer's defaults) and what was resolved."""

    config: ml_collections.ConfigDict
    config_dict: dict  # what config.json records
    resolved: dict  # validate's {total_steps, steps_per_epoch, image_size, mesh_shape}
    workdir: str  # absolute
    plan: workdir_lib.Plan | None  # what the workdir allows (None on processes other than 0)
    on_device: bool  # the source renders inside the step
    num_images: int | None

    @property
    def total_steps(self) -> int:
        return self.resolved["total_steps"]

    @property
    def global_batch(self) -> int:
        return int(self.config.batch_size)


def _locked_check(workdir: str, config_dict: dict, **kwargs) -> workdir_lib.Plan:
    """Takes the workdir's lock (synth_jax.train.lock; held until `train` ends), then decides
    what the workdir allows; a refusal gives the lock back."""
    lock.acquire(workdir, log=log_line)
    try:
        return workdir_lib.check(workdir, config_dict, **kwargs)
    except BaseException:
        lock.release(workdir)
        raise


def prepare(config, workdir: str, source, *, extend: bool | None, restart: bool) -> Run:
    """Validates `config` for `source` and decides what `workdir` allows (`train`'s `extend`
    and `restart`); writes nothing but the workdir's lock (process 0 holds it from here until
    `train` ends). Raises UsageError (one line) for what it refuses."""
    on_device = renders_on_device(source)
    if not on_device and not (hasattr(source, "get_state") and hasattr(source, "set_state")):
        raise TypeError(
            "source: a FractalDataset-like object or an iterator with get_state()/set_state()"
        )
    num_images = getattr(source, "num_images", None)
    config = with_defaults(config, train_config(), open_sections=("model", "objective"))
    resolved = validate(config, num_images, getattr(source, "image_size", None))
    workdir = os.path.abspath(workdir)
    config_dict = config_to_dict(config)
    plan = workdir_lib.agree(
        lambda: _locked_check(
            workdir,
            config_dict,
            total_steps=resolved["total_steps"],
            steps_per_epoch=resolved["steps_per_epoch"],
            optim=config.optim,
            every_steps=int(config.checkpoint.every_steps),
            same_run=check_same_run,
            extend=bool(extend),
            restart=restart,
            can_extend=extend is not None,
        )
    )
    for note in plan.notes if plan else ():
        log_line(note)
    return Run(config, config_dict, resolved, workdir, plan, on_device, num_images)

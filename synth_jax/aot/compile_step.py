"""Compile a pre-training config's training step and evaluation step for a target's devices
(a TPU slice by name, or this machine's devices) and report what they cost per chip.

    result = compile_config(config, "v5p-128", hlo_path="step.hlo")
    print("\\n".join(report_text(result)))

The training step is the trainer's own (`trainer.build_step`: rendering, augmentation, forward,
backward and optimiser update, on the mesh the config asks for); the evaluation step is the
model's inference forward pass over one global batch of images (what the evaluators run). A
fractal family's step is compiled over a "shaped" table (`shaped_dataset`): the same arrays,
shapes and classes as the real one, without the category search that a run does first. The
step's render is costed as a piece of its own (synth_jax.aot.render_cost), next to the model's.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from synth_jax import chips
from synth_jax.aot import render_cost, topology
from synth_jax.aot import report as report_lib
from synth_jax.config import with_defaults
from synth_jax.errors import UsageError
from synth_jax.files import write_text
from synth_jax.fractals import FractalDataset, family
from synth_jax.models import flops as flops_lib
from synth_jax.train import mesh as mesh_lib
from synth_jax.train import pretrain, trainer

# Families whose table is built in full even for `compile` (a mixture's table is its parts').
_BUILD_WHOLE = ("mixture",)
_SHAPED_FROM = 2  # categories searched for a shaped table, then repeated


def shaped_dataset(data_config) -> FractalDataset:
    """A FractalDataset whose table has the real one's arrays and shapes (per-category arrays
    repeated from the first categories found) but is built in seconds: what a compiled program
    depends on, not which fractals it draws. Rendering from it is not the run's data."""
    classes = int(data_config.num_classes)
    if data_config.family in _BUILD_WHOLE or classes <= _SHAPED_FROM:
        return FractalDataset(data_config)
    small = data_config.copy_and_resolve_references()
    small.num_classes = _SHAPED_FROM
    small.table_path = ""
    table = family.build_table(small)
    arrays = {
        name: np.resize(a, (classes, *a.shape[1:])) if a.ndim and a.shape[0] == _SHAPED_FROM else a
        for name, a in table.arrays.items()
    }
    config = dict(table.config, num_classes=classes)
    return FractalDataset(
        data_config, table=family.FamilyTable(table.family, arrays, table.stats, config)
    )


def _local_capacity(devices) -> tuple[float | None, str]:
    """Bytes one local device may use: the runtime's limit (GPUs), or for CPU devices the
    machine's memory shared by the fake devices."""
    stats = devices[0].memory_stats() if hasattr(devices[0], "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return float(stats["bytes_limit"]), "the runtime's memory limit"
    if devices[0].platform == "cpu":
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return total / len(devices), "this machine's memory shared by its CPU devices"
    return None, "unknown"


def _compile(lowered):
    """(compiled, None) or (None, (bytes needed, bytes available)) when XLA says it cannot fit."""
    try:
        return lowered.compile(), None
    except Exception as e:  # XLA reports a program larger than the chip as a compile error
        oom = report_lib.out_of_memory(e)
        if oom is None:
            raise
        return None, oom


def _oom_report(oom, capacity, images, model_flops) -> dict:
    need, have = oom
    return dict(
        memory=None,
        total_bytes=need,
        capacity_bytes=capacity or have,
        fits=False,
        collectives={},
        collective_bytes=None,
        images_per_step=images,
        model_flops_per_step=model_flops,
        xla_flops_per_chip=None,
        bytes_accessed_per_chip=None,
        model_piece=None,
        render=None,
        roofline=None,
    )


def _prepare(config, target: str, nodes: int):
    """Checks `config` for `target` and builds what the compile needs: (config with defaults,
    devices, resolved sizes, on-device source or None, num_classes)."""
    if nodes < 1:
        raise UsageError(f"--nodes {nodes}: expected a positive number of nodes")
    devices = topology.target_devices(target)
    if "data" not in config:
        raise UsageError("config key 'data' is missing: set config.data = data_config(FAMILY)")
    if nodes > 1:
        batch = int(config.get("batch_size", trainer.train_config().batch_size))
        if batch % nodes:
            raise UsageError(
                f"--nodes {nodes}: batch_size {batch} does not split over {nodes} nodes"
            )
        config = config.copy_and_resolve_references()
        config.batch_size = batch // nodes
    real = pretrain.is_real_data(config.data)
    pretrain.check_config(config, num_devices=len(devices))
    config = with_defaults(config, trainer.train_config(), open_sections=("model", "objective"))
    resolved = trainer.validate(
        config,
        num_images=1,
        data_image_size=config.image_size if real else config.data.image_size,
        num_devices=len(devices),
    )
    if not real:
        source = shaped_dataset(config.data)
        return config, devices, resolved, source, source.num_classes
    if not config.data.get("num_classes"):
        raise UsageError("data.num_classes: set it to compile a real-data config's step")
    return config, devices, resolved, None, int(config.data.num_classes)


def _train_report(config, program, source, mesh, device, image_size, hlo_path, **common):
    """The training step compiled and reported; its render costed as a piece of its own."""
    batch = common["images"]
    args = (program.abstract_state,)
    if source is None:  # host-fed: uint8 images of the model's size, split over the batch axes
        shape = jax.ShapeDtypeStruct
        b = program.batch_shardings
        args += (
            dict(
                image=shape((batch, image_size, image_size, 3), jnp.uint8, sharding=b["image"]),
                label=shape((batch,), jnp.int32, sharding=b["label"]),
            ),
        )
    compiled, oom = _compile(program.step_fn.lower(*args))
    if compiled is None:
        return _oom_report(oom, common["capacity"], batch, common["model_flops"])
    if hlo_path:
        write_text(hlo_path, compiled.as_text())
    per_device = batch // mesh_lib.data_parallel_size(mesh)
    chunk = min(int(config.render_chunk) or per_device, per_device)
    render = render_cost.render_piece(source, chunk, per_device // chunk, device)
    return report_lib.step_report(
        compiled, loop_scale=float(config.optim.accum_steps), render=render, **common
    )


def _eval_report(program, mesh, image_size: int, **common) -> dict:
    """The evaluation step (the inference forward pass over one global batch) compiled and
    reported."""
    state = program.abstract_state
    key = jax.random.key(0)

    def eval_step(params, model_state, images):
        return program.apply_model(params, model_state, images, False, key)[0]

    eval_fn = jax.jit(
        eval_step,
        in_shardings=(
            program.state_shardings["params"],
            program.state_shardings["model_state"],
            mesh_lib.batch_sharding(mesh, 4),
        ),
        out_shardings=mesh_lib.batch_sharding(mesh, 2),
    )
    images = jax.ShapeDtypeStruct((common["images"], image_size, image_size, 3), jnp.float32)
    compiled, oom = _compile(eval_fn.lower(state["params"], state["model_state"], images))
    if compiled is None:
        return _oom_report(oom, common["capacity"], common["images"], common["model_flops"])
    return report_lib.step_report(compiled, **common)


def compile_config(config, target: str, hlo_path: str | None = None, nodes: int = 1) -> dict:
    """Compiles `config`'s steps for `target` ("local" or a slice name); returns the report.

    nodes: compile one node's share of a job over `nodes` such nodes: the global batch divided
    by `nodes` over the target's devices, so each device holds the images it will hold in the
    job. A mesh axis of -1 then spans one node: an FSDP state is split over fewer devices than
    in the job, so a share that fits means the job fits (the other way round is not certain).

    Raises UsageError (exit 2) for a bad target or a config that cannot shard on it."""
    config, devices, resolved, source, num_classes = _prepare(config, target, nodes)
    image_size, batch = resolved["image_size"], int(config.batch_size)
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    program = trainer.build_step(config, resolved, source, num_classes=num_classes, mesh=mesh)

    kind = devices[0].device_kind
    chip = chips.chip_for_device_kind(kind)
    if chip is not None:
        capacity, capacity_source = chip.hbm_bytes, chip.source
    else:
        capacity, capacity_source = _local_capacity(devices)
    per_image = flops_lib.train_flops(config.model, image_size, num_classes)
    model_flops = None if per_image is None else per_image * batch
    common = dict(chip=chip, capacity=capacity, devices=len(devices), images=batch)
    train = _train_report(
        config,
        program,
        source,
        mesh,
        devices[0],
        image_size,
        hlo_path,
        model_flops=model_flops,
        **common,
    )
    evaluation = _eval_report(
        program,
        mesh,
        image_size,
        model_flops=None if model_flops is None else model_flops / 3,
        **common,
    )
    worst = max((train, evaluation), key=lambda r: r["total_bytes"])
    return dict(
        target=target,
        nodes=nodes,
        devices=len(devices),
        device_kind=kind,
        chip=chip.name if chip else None,
        capacity_source=capacity_source,
        mesh=dict(mesh.shape),
        model=dict(config.model),
        image_size=image_size,
        batch_size=batch,
        num_classes=num_classes,
        state_bytes_per_device=mesh_lib.bytes_per_device(
            program.abstract_state, program.state_shardings
        ),
        fits=bool(train["fits"] is not False and evaluation["fits"] is not False),
        total_bytes=worst["total_bytes"],
        verdict=report_lib.fit_line(worst),
        train_step=train,
        eval_step=evaluation,
    )


def _share(result: dict) -> str:
    nodes = result.get("nodes", 1)
    return f" (one node's share of {nodes} nodes)" if nodes > 1 else ""


def report_text(result: dict) -> list[str]:
    """The printed report: the target, then each step's lines."""
    lines = [
        f"target {result['target']}{_share(result)}: {result['devices']} x "
        f"{result['device_kind']} "
        f"({result['chip'] or 'no chip table entry'}), mesh {result['mesh']}; "
        f"{result['model'].get('name', '?')} at {result['image_size']} px, "
        f"{result['num_classes']} classes",
        f"  parameters + optimiser state: {result['state_bytes_per_device'] / 2**30:.2f} GiB "
        "per device",
    ]
    for title, key in (("train step", "train_step"), ("eval step", "eval_step")):
        step = result[key]
        if step["memory"] is None:
            lines += [
                f"{title}: {step['images_per_step']} images per step",
                f"  {report_lib.fit_line(step)} (XLA refused to compile it)",
            ]
        else:
            lines += report_lib.report_lines(title, step)
    if "compile_s" in result:
        lines.append(f"compiled in {result['compile_s']:.1f} s")
    return lines

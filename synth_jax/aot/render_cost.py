"""What rendering costs one chip per training step, where XLA's count of the step falls short.

    piece = render_piece(source, chunk=8, chunks=16, device=devices[0])
    piece["bytes"], piece["flops"]    # the device's whole render, per step
    piece["counted"]                  # what the step's own count holds of it

XLA's cost analysis of a compiled step misses or misprices three things of an on-device render:
- it counts a loop's body once: of the chunks a device renders its rows in (`render_chunk`),
  and of each of the chaos game's two scans (burn-in, then ~100 steps at 100k points);
- on TPUs with SparseCores (v5p, v6e) XLA offloads the histogram's scatter-add to them, and
  its cost model then charges a 4 KiB tile read and one written per added point (~820 MB per
  image at 100k points, whatever the image size, with the op's estimated cycles at INT64_MAX).
  The indices arrive sorted, thousands of consecutive points to a tile: not plausible traffic.

So the render is costed as a piece of its own: one chunk compiled alone for one of the
target's devices as the step compiles it (`counted`: what the step's count holds once, which
the caller subtracts to leave the rest of the step), and where that program offloads the
scatter, compiled again with the offload off (`OFFLOAD_OPTION`), which prices the same scatter
as TensorCore traffic (~3 MB per image); times the chunks; plus the chaos game's steps beyond
the one per scan that the count holds, a step compiled alone (renderers that run chaos games
list them: `chaos_games(batch)`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from synth_jax.aot import report as report_lib
from synth_jax.fractals.engine import render

OFFLOAD_OPTION = "xla_tpu_enable_offloading_scatter_to_sparsecore"
# How an op run on a SparseCore shows in a compiled TPU program's text.
_ON_SPARSECORE = 'async_execution_thread="sparsecore"'


def _counts(compiled) -> dict:
    """{flops, bytes} of XLA's cost analysis (zeros where the backend has none)."""
    cost = report_lib.cost(compiled)
    return dict(flops=float(cost.get("flops", 0.0)), bytes=float(cost.get("bytes accessed", 0.0)))


def chaos_step_cost(spec: render.RenderSpec, maps: int, games: int, device) -> dict:
    """FLOPs and bytes of one step of `games` chaos games side by side (systems of `maps`
    maps), each kind of step compiled alone for `device`: {"step": an emitting step (the
    main scan's body), "burn": a burn-in step}, each {flops, bytes}."""
    one = jax.sharding.SingleDeviceSharding(device)

    def shape(dims, dtype=jnp.float32):
        return jax.ShapeDtypeStruct((games, *dims), dtype, sharding=one)

    tables = (shape((6, maps)), shape((maps - 1,), jnp.uint32), shape((2,), jnp.uint32))
    chains = shape((spec.chains,))
    t = jax.ShapeDtypeStruct((), jnp.int32, sharding=one)

    def step(tables, carry, t):
        return jax.vmap(lambda tb, c: render.game_step(tb, c, t, spec))(tables, carry)

    def burn(tables, x, y, t):
        return jax.vmap(lambda tb, a, b: render.apply_maps(tb, a, b, t, spec))(tables, x, y)

    return dict(
        step=_counts(jax.jit(step).lower(tables, (chains,) * 6, t).compile()),
        burn=_counts(jax.jit(burn).lower(tables, chains, chains, t).compile()),
    )


def _chaos_loops(renderer, chunk: int, device) -> dict | None:
    """The chaos games' steps in one chunk's render that XLA's count leaves out (all but one
    per scan): {steps, burn_in, flops, bytes, step_flops, step_bytes} (step_*: one emitting
    step per image), or None for a renderer without chaos games."""
    games = getattr(renderer, "chaos_games", lambda batch: [])(chunk)
    if not games:
        return None
    costs = [(spec, chaos_step_cost(spec, maps, count, device)) for spec, maps, count in games]

    def left_out(key):
        return sum(
            max(spec.steps - 1, 0) * cost["step"][key]
            + max(spec.burn_in - 1, 0) * cost["burn"][key]
            for spec, cost in costs
        )

    return dict(
        steps=games[0][0].steps,
        burn_in=games[0][0].burn_in,
        flops=left_out("flops"),
        bytes=left_out("bytes"),
        step_flops=sum(cost["step"]["flops"] for _, cost in costs) / chunk,
        step_bytes=sum(cost["step"]["bytes"] for _, cost in costs) / chunk,
    )


def render_piece(source, chunk: int, chunks: int, device) -> dict | None:
    """The render of one device's rows of a step, `chunks` loop iterations of `chunk` images
    (1 chunk: no loop), costed as the module docstring says; None for a host-fed step. Returns
    {images, chunk, chunks, flops, bytes (the whole render), counted {flops, bytes} (what the
    step's count holds), sparsecore (None, or {"bytes": what XLA's cost model charged for one
    chunk with the scatter offloaded}), chaos_game (see _chaos_loops)}."""
    if source is None:
        return None
    one = jax.sharding.SingleDeviceSharding(device)
    lowered = jax.jit(source.render).lower(
        jax.ShapeDtypeStruct((), jnp.uint32, sharding=one),
        jax.ShapeDtypeStruct((chunk,), jnp.int32, sharding=one),
    )
    compiled = lowered.compile()
    counted = _counts(compiled)
    own, sparsecore = counted, None
    if _ON_SPARSECORE in compiled.as_text():
        own = _counts(lowered.compile(compiler_options={OFFLOAD_OPTION: False}))
        sparsecore = dict(bytes=counted["bytes"])
    chaos = _chaos_loops(getattr(source, "renderer", None), chunk, device)
    extra = chaos or dict(flops=0.0, bytes=0.0)
    return dict(
        images=chunk * chunks,
        chunk=chunk,
        chunks=chunks,
        flops=chunks * (own["flops"] + extra["flops"]),
        bytes=chunks * (own["bytes"] + extra["bytes"]),
        counted=counted,
        sparsecore=sparsecore,
        chaos_game=chaos,
    )

"""What one compiled step costs on one chip: memory against the chip's HBM, the collectives with
their bytes, model FLOPs and a roofline estimate of step time, as a JSON-able dict and as text.

    report = step_report(compiled, chip=chips.CHIPS["TPU v5p"], capacity=None, devices=64,
                         images=8192, model_flops=3 * 35e9 * 8192)
    print("\\n".join(report_lines("train step", report)))

Memory is XLA's account of the compiled program on one chip: arguments (the state and batch
shards it reads) + outputs - what the outputs reuse of the arguments (donated buffers) +
temporaries + the program itself. The roofline is a lower bound on step time from the chip's
published bf16 peak and HBM bandwidth: max(FLOPs / peak, bytes accessed / bandwidth), per chip,
with FLOPs the larger of XLA's count and the model's (see `roofline`); it ignores collectives
(their bytes are listed) and anything slower than the peak, so real steps are slower. A step
that renders its images is counted in two pieces, each with its bytes and FLOPs: the render,
costed on its own (synth_jax.aot.render_cost), and the rest of XLA's count of the step (the
model's piece: augmentation, forward, backward, update).
"""

from __future__ import annotations

import re

from synth_jax.aot import hlo

GIB = 2**30


def cost(compiled) -> dict:
    """XLA's cost analysis of a compiled program ({} where the backend has none)."""
    try:
        counts = compiled.cost_analysis()
    except Exception:  # cost analysis is optional on some backends
        return {}
    return (counts[0] if isinstance(counts, (list, tuple)) else counts) or {}


def step_report(
    compiled,
    *,
    chip,
    capacity: float | None,
    devices: int,
    images: int,
    model_flops: float | None,
    loop_scale: float = 1.0,
    render: dict | None = None,
) -> dict:
    """The numbers of one compiled step (all per chip unless named per step).

    chip: a synth_jax.chips.Chip or None (CPUs: no roofline); capacity: bytes one device may use
    (None: the chip's HBM); devices: how many run the step; images: global images per step;
    model_flops: the model's FLOPs per step, all devices (synth_jax.models.flops); loop_scale:
    how much XLA's per-chip FLOPs and bytes of the rest of the step undercount because it
    counts a loop's body once (gradient accumulation; 1.0 without); render: the step's render
    costed on its own (render_cost.render_piece): what XLA's count holds of it is taken out of
    the step's count, which leaves the model's piece (augmentation, forward, backward, update),
    and the render's own count put in."""
    memory = compiled.memory_analysis()
    parts = {
        "argument_bytes": int(memory.argument_size_in_bytes),
        "output_bytes": int(memory.output_size_in_bytes),
        "alias_bytes": int(memory.alias_size_in_bytes),
        "temp_bytes": int(memory.temp_size_in_bytes),
        "code_bytes": int(memory.generated_code_size_in_bytes),
    }
    total = (
        parts["argument_bytes"]
        + parts["output_bytes"]
        - parts["alias_bytes"]
        + parts["temp_bytes"]
        + parts["code_bytes"]
    )
    if capacity is None and chip is not None:
        capacity = chip.hbm_bytes
    ops = hlo.collectives(compiled.as_text())
    counts = cost(compiled)
    counted = render["counted"] if render else {"flops": 0.0, "bytes": 0.0}
    model = {
        "flops": max(float(counts.get("flops", 0.0)) - counted["flops"], 0.0) * loop_scale,
        "bytes": max(float(counts.get("bytes accessed", 0.0)) - counted["bytes"], 0.0) * loop_scale,
    }
    xla_flops = model["flops"] + (render["flops"] if render else 0.0)
    bytes_accessed = model["bytes"] + (render["bytes"] if render else 0.0)
    report = dict(
        memory=parts,
        total_bytes=total,
        capacity_bytes=capacity,
        fits=None if capacity is None else total <= capacity,
        collectives=hlo.by_kind(ops),
        collective_bytes=sum(op.bytes * op.runs for op in ops),
        images_per_step=images,
        model_flops_per_step=model_flops,
        xla_flops_per_chip=xla_flops or None,
        bytes_accessed_per_chip=bytes_accessed or None,
        model_piece=model if render else None,
        render=render,
        roofline=None,
    )
    if chip is not None and (xla_flops or model_flops):
        report["roofline"] = roofline(
            chip,
            model["flops"],
            bytes_accessed,
            model_flops,
            devices=devices,
            images=images,
            render_flops=render["flops"] if render else 0.0,
        )
    return report


def roofline(
    chip, xla_flops, bytes_accessed, model_flops, *, devices, images, render_flops=0.0
) -> dict:
    """Lower bound on one step's time per chip. FLOPs: the larger of XLA's count of the step
    without its render (xla_flops) and the model's share per chip, since XLA counts a loop's
    body once (a ViT's blocks are one scan, so its count can be a twelfth of the work), plus the
    render's. Bytes: the model's piece by XLA's count, a lower bound for the same reason (a
    scanned model's blocks are counted once), plus the render's."""
    flops = max(xla_flops or 0.0, (model_flops or 0.0) / devices) + render_flops
    compute_s = flops / chip.peak_bf16_flops
    memory_s = (bytes_accessed or 0.0) / chip.hbm_bytes_per_s
    step_s = max(compute_s, memory_s)
    return dict(
        chip=chip.name,
        compute_s=compute_s,
        memory_s=memory_s,
        step_s=step_s,
        images_per_s=images / step_s,
        bound="compute" if compute_s >= memory_s else "memory",
        mfu=(model_flops / devices / step_s / chip.peak_bf16_flops) if model_flops else None,
    )


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def _si(n: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {prefix}{unit}"
    return f"{n:.3g} {unit}"


def fit_line(report: dict) -> str:
    """'fits: 31.40 GiB of 95.00 GiB (33%)' or 'does not fit: 2.10 GiB over 16.00 GiB'."""
    total, capacity = report["total_bytes"], report["capacity_bytes"]
    if capacity is None:
        return f"{_gib(total)} (capacity unknown)"
    if report["fits"]:
        return f"fits: {_gib(total)} of {_gib(capacity)} ({100 * total / capacity:.0f}%)"
    return f"does not fit: {_gib(total - capacity)} over {_gib(capacity)} ({_gib(total)} needed)"


def report_lines(title: str, report: dict) -> list[str]:
    """The human-readable report of one step."""
    m = report["memory"]
    lines = [
        f"{title}: {report['images_per_step']} images per step",
        f"  memory per chip: arguments {_gib(m['argument_bytes'])}, outputs "
        f"{_gib(m['output_bytes'])} (reusing {_gib(m['alias_bytes'])} of the arguments), "
        f"temporaries {_gib(m['temp_bytes'])}, program {_gib(m['code_bytes'])}",
        f"  {fit_line(report)}",
    ]
    if report["collectives"]:
        parts = [
            f"{kind} x{c['runs']} {_si(c['bytes'], 'B')} (largest {c['largest']})"
            for kind, c in sorted(report["collectives"].items())
        ]
        lines.append(f"  collectives per step per chip: {'; '.join(parts)}")
    else:
        lines.append("  collectives per step per chip: none")
    flops = report["model_flops_per_step"]
    xla = report["xla_flops_per_chip"]
    line = f"  model FLOPs per step: {_si(flops, 'FLOP')}" if flops else "  model FLOPs: unknown"
    if xla:
        line += f"; XLA's count per chip {_si(xla, 'FLOP')}"
    lines.append(line)
    if report.get("render"):
        lines += piece_lines(report["render"], report["model_piece"])
    r = report["roofline"]
    if r:
        mfu = f", MFU {100 * r['mfu']:.0f}% there" if r["mfu"] else ""
        lines.append(
            f"  roofline on {r['chip']}: compute {r['compute_s'] * 1e3:.1f} ms, HBM >= "
            f"{r['memory_s'] * 1e3:.1f} ms (XLA's bytes) -> step >= "
            f"{r['step_s'] * 1e3:.1f} ms "
            f"({r['bound']}-bound), <= {r['images_per_s']:,.0f} images/s{mfu}"
        )
    return lines


def piece_lines(render: dict, model: dict) -> list[str]:
    """The step's two pieces, render and model, each with its bytes and FLOPs per chip."""
    n = render["images"]
    chunks = f" in {render['chunks']} chunks of {render['chunk']}" if render["chunks"] > 1 else ""
    lines = [
        f"  render: {n} images per chip{chunks}: {_si(render['bytes'], 'B')} accessed, "
        f"{_si(render['flops'], 'FLOP')} ({_si(render['bytes'] / n, 'B')} and "
        f"{_si(render['flops'] / n, 'FLOP')} per image)"
    ]
    chaos = render["chaos_game"]
    if chaos:
        lines.append(
            f"    chaos game: {chaos['burn_in']} + {chaos['steps']} steps of "
            f"{_si(chaos['step_bytes'], 'B')} per image (XLA's count holds one per loop; "
            "the others added)"
        )
    if render["sparsecore"]:
        lines.append(
            "    scatter-add costed with the SparseCore offload off (XLA's cost model charges "
            f"the offloaded one {_si(render['sparsecore']['bytes'] / render['chunk'], 'B')} "
            "per image: a 4 KiB tile read and written per point)"
        )
    lines.append(
        f"  model (augmentation, forward, backward, update): {_si(model['bytes'], 'B')} "
        f"accessed, {_si(model['flops'], 'FLOP')}"
    )
    return lines


# XLA's message when a program cannot fit: "... required for HLO temporaries (37.29G) exceeds
# available HBM (15.75G)" (sizes in GiB).
_OOM = re.compile(r"\(([\d.]+)([KMGT])\)[^()]*exceeds available HBM \(([\d.]+)([KMGT])\)")
_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def out_of_memory(error: Exception) -> tuple[float, float] | None:
    """(bytes needed, bytes available) from XLA's out-of-memory compile error, else None."""
    text = str(error)
    if "RESOURCE_EXHAUSTED" not in text:
        return None
    match = _OOM.search(text)
    if not match:
        return (float("nan"), float("nan"))
    need = float(match.group(1)) * _UNITS[match.group(2)]
    have = float(match.group(3)) * _UNITS[match.group(4)]
    return need, have

"""`synth-jax compile`: compile a pre-training config's exact training step (and its evaluation
step) for a target it does not own, and say whether it fits, what it sends and how fast it can go.

    synth-jax compile --config configs/pretrain/fractaldb21k_vit_base.py --topology v5p-128
    synth-jax compile --config configs/pretrain/cpu_tiny.py:mu                  # local devices
    synth-jax compile --config C.py --topology v5litepod-16 --out report.json --hlo step.hlo

Targets (--topology): a TPU slice by name (v4-128, v5p-128, v5litepod-16, v6e-256, 2xv5p-128;
libtpu from the `tpu` extra: any Linux machine, no TPU needed) or `local` (this machine's
devices: fake CPU devices, or its GPUs). The steps are the trainer's own (trainer.build_step),
on the mesh the config asks for over the target's devices; a fractal family's step is compiled
without its category search (see `shaped_dataset`).

Prints, per step: memory per chip from the compiled program against the chip's HBM ("fits", or
"does not fit: N GiB over"), the collectives with their bytes per step, model FLOPs and a
roofline step time and images/s from the chip's bf16 peak and HBM bandwidth (synth_jax.chips);
a step that renders its images shows its two pieces, render and model, each with its bytes and
FLOPs (the render costed on its own: synth_jax.aot.render_cost says how and why).
--out writes the same as JSON (`fits`, `total_bytes` per chip, and the details); --hlo the
compiled training step's HLO text. --nodes N compiles one node's share of an N-node job (the
batch divided by N over this node's devices: launch/slurm.sbatch's pre-flight). Exit codes: 0
fits, 1 does not fit, 2 bad input (a name that is no slice, a batch the slice cannot split, an
FSDP axis larger than the slice).
"""

from __future__ import annotations

import sys
import time

from synth_jax.aot import compile_step
from synth_jax.config import config_from_argv
from synth_jax.errors import ArgumentParser
from synth_jax.files import file_arg, write_json

EXIT_DOES_NOT_FIT = 1


def _parser():
    p = ArgumentParser(
        prog="synth-jax compile",
        description="Compile a config's training and evaluation steps for a target: --config "
        "FILE.py[:arg] [--config.KEY=VALUE ...] --topology NAME",
    )
    p.add_argument(
        "--topology",
        default="local",
        help="a TPU slice (v4-128, v5p-128, v5litepod-16, v6e-256, 2xv5p-128, v5e:4x4) or "
        "'local' (default)",
    )
    p.add_argument(
        "--nodes",
        type=int,
        default=1,
        help="compile one node's share of a job over this many nodes (the batch divided by it)",
    )
    p.add_argument("--out", type=file_arg, help="write the report as JSON here")
    p.add_argument("--hlo", type=file_arg, help="write the compiled training step's HLO text here")
    return p


def main(argv: list[str]) -> int:
    config, rest = config_from_argv(argv)
    args = _parser().parse_args(rest)
    t = time.perf_counter()
    result = compile_step.compile_config(config, args.topology, hlo_path=args.hlo, nodes=args.nodes)
    result["compile_s"] = round(time.perf_counter() - t, 1)
    print("\n".join(compile_step.report_text(result)), flush=True)
    if args.out:
        write_json(args.out, result)
    if not result["fits"]:
        print(f"synth-jax compile: {result['verdict']}", file=sys.stderr)
        return EXIT_DOES_NOT_FIT
    return 0

"""The `synth-jax` command: `synth-jax VERB [args]`, one module per verb.

No registry: a verb is a module path here, and each module has `main(argv) -> int`. Modules are
imported only when their verb runs, so `synth-jax --help` is instant and one verb's heavy imports
never slow another.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading

from synth_jax import progress
from synth_jax.aot.topology import attached_tpu_chips
from synth_jax.errors import UsageError

# verb -> (module with main(argv), one-line help)
VERBS = {
    "demo": (
        "synth_jax.experiments.demo",
        "the whole story on a laptop CPU: render, pre-train, fine-tune, fit, report",
    ),
    "render": (
        "synth_jax.fractals.render_cli",
        "write a labelled preview grid of a fractal family",
    ),
    "export": ("synth_jax.fractals.export", "write a fractal dataset to disk (PNG tree or TFDS)"),
    "export-model": (
        "synth_jax.weights.export",
        "write a checkpoint as a timm model folder (safetensors + config.json)",
    ),
    "pretrain": ("synth_jax.train.pretrain", "pre-train a model on synthetic (or real) images"),
    "data": (
        "synth_jax.data.importer",
        "build a TFDS dataset from local files: data import NAME --from PATH",
    ),
    "finetune": (
        "synth_jax.transfer.finetune",
        "fine-tune, linear-probe or few-shot a model on real data",
    ),
    "fit-law": ("synth_jax.scaling.cli", "fit a transfer scaling law to a results table"),
    "sweep": (
        "synth_jax.experiments.sweep",
        "run a grid of pre-training and fine-tuning cells, then report",
    ),
    "protocol-search": (
        "synth_jax.experiments.protocol",
        "where does pre-training help at laptop scale: a grid of transfer cells on digits",
    ),
    "compile": (
        "synth_jax.aot.cli",
        "compile a config's steps for a TPU slice or local devices: fits? collectives? speed?",
    ),
    "bench": ("synth_jax.bench", "benchmarks: bench render | train | fit"),
}


# Device nodes of NVIDIA (Linux, WSL) and AMD GPUs.
_GPU_NODES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg", "/dev/kfd")


def choose_cpu_without_accelerators():
    """With libtpu installed (the `tpu` extra, for compiling TPU programs on any machine) on a
    machine without TPU chips, JAX would still start the TPU runtime at its first device query,
    which fails after printing libtpu's warnings. When no platform is chosen (JAX_PLATFORMS) and
    no TPU or GPU is attached, the CPU is the only platform there is: say so."""
    if "JAX_PLATFORMS" in os.environ or importlib.util.find_spec("libtpu") is None:
        return
    if attached_tpu_chips() or any(os.path.exists(node) for node in _GPU_NODES):
        return
    os.environ["JAX_PLATFORMS"] = "cpu"


def usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = ["usage: synth-jax VERB [args]   (synth-jax VERB --help for its arguments)", ""]
    lines += [f"  {verb:<{width}}  {help_}" for verb, (_, help_) in VERBS.items()]
    return "\n".join(lines)


def _exit_now_if_stuck(code: int) -> int:
    """Exits at once when background work would outlive the error: a failed Orbax save leaves
    threads waiting (for minutes) on a step that will never come, and coroutines whose
    collection at shutdown prints a traceback each ("Exception ignored in ..."). The error line
    is the last word."""
    stuck = [t for t in threading.enumerate() if t.is_alive() and not t.daemon]
    if any(t is not threading.main_thread() for t in stuck) or "orbax.checkpoint" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def main(argv: list[str] | None = None) -> int:
    as_program = argv is None  # not called from Python: free to end the process
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"synth-jax: unknown verb {verb!r}; one of: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    choose_cpu_without_accelerators()
    try:
        module = importlib.import_module(VERBS[verb][0])
        return int(module.main(rest) or 0)
    except UsageError as e:
        progress.clear_open_line()
        print(f"synth-jax {verb}: error: {one_line(str(e))}", file=sys.stderr)
        return _exit_now_if_stuck(2) if as_program else 2
    except KeyboardInterrupt:
        progress.clear_open_line()
        print(f"synth-jax {verb}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # argparse after --help
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)


def one_line(message: str) -> str:
    """The message on one line (a file name or a library's message may hold line breaks)."""
    return " ".join(line.strip() for line in message.splitlines() if line.strip())

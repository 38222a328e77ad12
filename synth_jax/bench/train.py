"""`synth-jax bench train`: training-step throughput with fractals rendered inside the step,
beside the same step on a fixed pre-rendered batch, in the same process.

    synth-jax bench train --model Ti/16 --image-size 224 --batch 256
    synth-jax bench train --model mu/4 --image-size 32 --batch 32 --steps 20   # a CPU check

Prints one JSON object: images/s and step time for both, MFU where the device's bf16 peak is
known, and data_stall_ratio = images/s with rendering / images/s on the fixed batch (1.0: the
renderer costs nothing; the goal on one H100/H200 is >= 0.9). The fixed batch is fed from host
memory, so its side includes one host-to-device copy per step: the ratio errs towards 1 by that
copy's time (small beside a ViT step on a GPU; on a CPU it is a memcpy).
"""

from __future__ import annotations

import json
import tempfile

import jax
import numpy as np

from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.fractals import FractalDataset, data_config
from synth_jax.models import model_config
from synth_jax.train import trainer


def _parser():
    p = ArgumentParser(prog="synth-jax bench train", description=__doc__.splitlines()[0])
    p.add_argument("--model", default="Ti/16", help="model name, e.g. Ti/16, B/16, ResNet-50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=256, help="global batch")
    p.add_argument("--steps", type=int, default=50, help="timed steps per variant")
    p.add_argument("--family", default="onepfrac", help="fractal family to render")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--points", type=int, default=100_000, help="chaos-game points per image")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument("--fsdp", type=int, default=1, help="mesh fsdp size (data takes the rest)")
    p.add_argument(
        "--render-chunk",
        type=int,
        default=0,
        help="images each device renders at once (0: its whole share of the batch)",
    )
    return p


class FixedBatch:
    """Host-fed source that yields the same pre-rendered batch every step."""

    def __init__(self, images, labels, num_images):
        self.batch = {"image": images, "label": labels}
        self.num_images = num_images
        self.image_size = images.shape[1]

    def __iter__(self):
        return self

    def __next__(self):
        return self.batch

    def get_state(self):
        return {}

    def set_state(self, state):
        pass


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.steps < 4:
        raise UsageError("--steps: at least 4")
    log_every = max(1, args.steps // 10)
    config = trainer.train_config(
        batch_size=args.batch,
        total_steps=args.steps + log_every,  # the first interval includes the first step
        image_size=args.image_size,
        log_every_steps=log_every,
    )
    config.model = model_config(args.model, dtype=args.dtype)
    config.mesh.fsdp = args.fsdp
    config.render_chunk = args.render_chunk
    config.checkpoint.every_steps = 10**9  # only the final save
    config.checkpoint.async_save = True
    # IFS families take the point counts; the contour and noise families have no such keys.
    ifs_keys = dict(points=args.points, search_points=min(args.points, 20_000), search_size=128)
    defaults = data_config(args.family)
    data = data_config(
        args.family,
        num_classes=args.classes,
        image_size=args.image_size,
        **{k: v for k, v in ifs_keys.items() if k in defaults},
    )
    dataset = FractalDataset(data)
    trainer.validate(config, dataset.num_images, args.image_size)

    def measure(source, label):
        with tempfile.TemporaryDirectory() as workdir:
            summary, _ = trainer.train(config, workdir, source, num_classes=dataset.num_classes)
            with open(f"{workdir}/metrics.jsonl") as f:
                rows = [json.loads(line) for line in f]
        rates = [r["images_per_s"] for r in rows if "images_per_s" in r]
        mfus = [r["mfu"] for r in rows if "mfu" in r]
        if not rates:
            raise UsageError(f"--steps {args.steps}: too few steps to time the {label} variant")
        return float(np.median(rates)), (float(np.median(mfus)) if mfus else None), summary

    render_ips, mfu, summary = measure(dataset, "rendering")
    indices = dataset.indices_for_step(0, 0, args.batch)
    images, labels = jax.jit(dataset.render)(0, indices)
    fixed = FixedBatch(np.asarray(images), np.asarray(labels), dataset.num_images)
    fixed_ips, _, _ = measure(fixed, "fixed-batch")
    result = dict(
        model=args.model,
        image_size=args.image_size,
        batch=args.batch,
        dtype=args.dtype,
        family=args.family,
        points=args.points,
        render_chunk=args.render_chunk,
        device=jax.devices()[0].device_kind,
        devices=jax.device_count(),
        steps=args.steps,
        images_per_s=render_ips,
        step_time_s=args.batch / render_ips,
        mfu=mfu,
        images_per_s_fixed_batch=fixed_ips,
        step_time_s_fixed_batch=args.batch / fixed_ips,
        data_stall_ratio=render_ips / fixed_ips,
        state_bytes_per_device=summary["state_bytes_per_device"],
    )
    print(json.dumps(result))
    return 0

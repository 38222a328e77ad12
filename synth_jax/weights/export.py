"""`synth-jax export-model --from WORKDIR_OR_CHECKPOINT --out DIR`: a synth_jax checkpoint as a
timm model folder, loadable with `timm.create_model("local-dir:DIR", pretrained=True)`.

    DIR/model.safetensors  the backbone (and with --with-head the classifier) under timm's names
                           and layouts for the twin architecture (vit_tiny_patch16_224, resnet50..)
    DIR/config.json        timm's config (architecture, model_args for what differs from it, the
                           eval transform) and a `synth_jax` section (model, differences, source)
    DIR/README.md          how to load it in timm

`--verify` then loads DIR in timm (needs the timm extra) and compares its outputs with synth_jax's
on eight images of the pre-training's own data (fractal families; noise otherwise).
Nothing is written unless everything succeeds: the folder is assembled under a temporary name
and renamed into place; an existing, non-empty --out is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

import numpy as np

from synth_jax import files
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.train import checkpoint
from synth_jax.weights import safetensors_file, sidecar, timm_resnet, timm_vit

WEIGHTS = "model.safetensors"
VERIFY_IMAGES = 8
# Of the largest |logit|: float32 rounding measured below 1e-6 (ViT-Ti to L, ResNet-10 to 101),
# the tests' misplaced arrays 6e-2 to 1.3 (docs/weights.md): 1e-4 has room either side.
TOLERANCE = 1e-4


def _image_size(config: dict) -> int:
    size = int(config.get("image_size") or (config.get("data") or {}).get("image_size") or 0)
    if size <= 0:
        raise UsageError("the run's config.json sets no image_size; cannot size the export")
    return size


def timm_export(
    params: dict, model_state: dict, run_config: dict, with_head: bool, step: int = 0
) -> tuple[dict, dict]:
    """(timm state dict, config.json dict) for a checkpoint's arrays and its run config."""
    model, image_size = dict(run_config["model"]), _image_size(run_config)
    augment = run_config.get("augment") or {}
    if with_head and "head" not in params:
        raise UsageError("--with-head: the checkpoint has no head/ parameters")
    is_resnet = model["name"].startswith("ResNet")
    if is_resnet:
        arch, args, differences = timm_resnet.timm_twin(model, image_size)
        tensors = timm_resnet.to_timm(params, model_state, model, image_size, with_head, step)
        first_conv, classifier, global_pool = "conv1", "fc", "avg"
    else:
        arch, args, differences = timm_vit.timm_twin(model, image_size)
        tensors = timm_vit.to_timm(params, model_state, model, image_size, with_head)
        first_conv, classifier = "patch_embed.proj", "head"
        global_pool = "avg" if model.get("pool", "gap") == "gap" else "token"
    if model.get("dtype", "float32") != "float32":
        differences.append(
            f"synth_jax computed in {model['dtype']} (parameters are float32); timm computes in "
            "float32, so its logits match synth_jax's float32 logits"
        )
    num_classes = int(params["head"]["bias"].shape[0]) if with_head else 0
    data = run_config.get("data") or {}
    config = sidecar.build(
        architecture=arch,
        model_args=args,
        num_classes=num_classes,
        num_features=int(np.shape(params["head"]["kernel"])[0]),
        global_pool=global_pool,
        image_size=image_size,
        mean=augment.get("mean", (0.5, 0.5, 0.5)),
        std=augment.get("std", (0.5, 0.5, 0.5)),
        first_conv=first_conv,
        classifier=classifier,
        fixed_input_size=not is_resnet,
        synth_jax=dict(
            model=model,
            image_size=image_size,
            differences=differences,
            step=int(step),
            pretraining=dict(
                family=data.get("family") or data.get("name"),
                num_classes=data.get("num_classes"),
                method=(run_config.get("objective") or {}).get("type", "supervised"),
            ),
        ),
    )
    return tensors, config


def readme(out: str, config: dict) -> str:
    """DIR/README.md: what the folder holds and the lines that load it in timm."""
    arch, args = config["architecture"], config["model_args"]
    kwargs = "".join(f", {k}={v!r}" for k, v in args.items())
    differences = config["synth_jax"]["differences"] or ["none: this is the timm architecture"]
    cfg = config["pretrained_cfg"]
    return "\n".join(
        [
            f"# {arch} weights from a synth_jax pre-training",
            "",
            f"synth_jax model {config['synth_jax']['model']['name']} at "
            f"{config['synth_jax']['image_size']} px, step {config['synth_jax']['step']}; "
            f"{config['num_classes'] or 'no'} classifier outputs.",
            "",
            "```python",
            "import timm",
            "",
            f'model = timm.create_model("local-dir:{out}", pretrained=True).eval()',
            "# the same without the folder's config.json:",
            "# import safetensors.torch",
            f'# model = timm.create_model("{arch}", num_classes={config["num_classes"]}{kwargs})',
            f'# model.load_state_dict(safetensors.torch.load_file("{out}/{WEIGHTS}"))',
            "data_config = timm.data.resolve_data_config({}, model=model)",
            "transform = timm.data.create_transform(**data_config)  # PIL image -> tensor",
            "```",
            "",
            f"Inputs: {cfg['input_size'][1]} px RGB, the whole image resized, then "
            f"(x - {cfg['mean']}) / {cfg['std']} on [0, 1] pixels.",
            "",
            "Differences from synth_jax's model:",
            "",
            *[f"- {d}" for d in differences],
            "",
        ]
    )


def _verification_images(run_config: dict, image_size: int, n: int) -> tuple[np.ndarray, str]:
    """float32[n, S, S, 3] normalised as in evaluation: the pre-training's own images when it
    rendered fractals, seeded noise otherwise; and what they are, in words."""
    import jax.numpy as jnp
    import ml_collections

    from synth_jax.data import preprocess

    augment = run_config.get("augment") or {}
    mean, std = augment.get("mean", (0.5,) * 3), augment.get("std", (0.5,) * 3)
    data = run_config.get("data") or {}
    if data.get("family"):
        from synth_jax.fractals import FractalDataset

        dataset = FractalDataset(ml_collections.ConfigDict(data))
        indices = np.arange(n, dtype=np.int64) * dataset.num_images // n  # spread over categories
        images, _ = dataset.render(0, jnp.asarray(indices, jnp.int32))
        what = f"{n} {data['family']} images"
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
        what = f"{n} noise images"
    x = preprocess.eval_images(jnp.asarray(images), image_size, mean, std)
    return np.asarray(x, np.float32), what


def verify(out: str, params: dict, model_state: dict, run_config: dict) -> tuple[bool, str]:
    """Loads `out` in timm; (agrees, one-line report) on the pre-training's images."""
    from synth_jax.weights import timm_check

    timm_check.require_timm()
    image_size = _image_size(run_config)
    images, what = _verification_images(run_config, image_size, VERIFY_IMAGES)
    with open(os.path.join(out, sidecar.FILE)) as f:
        with_head = json.load(f)["num_classes"] > 0
    if not with_head:
        params = {k: v for k, v in params.items() if k != "head"}
    ours = timm_check.synth_jax_outputs(
        run_config["model"], image_size, params, model_state, images
    )
    theirs = timm_check.timm_outputs(out, images)
    diff, largest = float(np.max(np.abs(ours - theirs))), float(np.max(np.abs(ours)))
    kind = "logits" if with_head else "features"
    report = f"on {what}: max |{kind} difference| {diff:.2e} (largest |{kind[:-1]}| {largest:.3g})"
    if with_head:
        same = int(np.sum(ours.argmax(-1) == theirs.argmax(-1)))
        report += f"; same top-1 class for {same} of {len(images)}"
    return diff <= TOLERANCE * max(1.0, largest), report


def load_checkpoint(source: str) -> tuple[dict, dict, int, dict]:
    """(params, model_state, step, run config) of the newest checkpoint at `source`."""
    state = checkpoint.load_train_state(source)
    _, run_config = checkpoint.load_params(source)
    if not run_config or "model" not in run_config:
        raise UsageError(f"--from {source}: no config.json with a model section beside it")
    return state["params"], state.get("model_state") or {}, int(state.get("step", 0)), run_config


def write_folder(out: str, tensors: dict, config: dict) -> None:
    """Writes model.safetensors, config.json and README.md into the new folder `out`, all or
    nothing: they are assembled in a temporary folder that is then renamed to `out`."""
    out = os.path.abspath(out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UsageError(f"--out {out}: exists and is not empty; choose a new folder")
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(out)}.")
        _write_into(tmp, out, tensors, config)
    except OSError as e:  # a full disk, a read-only folder: nothing is left behind
        raise UsageError(
            f"--out {out}: writing the model failed ({e.strerror or e}); nothing was kept: free "
            f"space (or fix permissions) and export again"
        ) from None


def _write_into(tmp: str, out: str, tensors: dict, config: dict) -> None:
    """write_folder's work: the files in `tmp`, then `tmp` renamed to `out`."""
    try:
        safetensors_file.write(os.path.join(tmp, WEIGHTS), tensors, {"format": "pt"})
        files.write_json(os.path.join(tmp, sidecar.FILE), config)
        files.write_text(os.path.join(tmp, "README.md"), readme(out, config))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # a folder to share: mkdtemp/mkstemp made it private
        for name in os.listdir(tmp):
            os.chmod(os.path.join(tmp, name), 0o666 & ~umask)
        if os.path.isdir(out):
            os.rmdir(out)  # empty (checked above): the rename needs the name free
        os.rename(tmp, out)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)


def main(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="synth-jax export-model",
        description="Write a synth_jax checkpoint as a timm model folder (safetensors + "
        "config.json): --from WORKDIR_OR_CHECKPOINT --out DIR",
    )
    parser.add_argument("--from", dest="source", required=True, help="run workdir or checkpoint")
    parser.add_argument("--out", required=True, help="new folder to write")
    parser.add_argument("--format", default="safetensors", choices=["safetensors"])
    parser.add_argument("--with-head", action="store_true", help="include the classifier")
    parser.add_argument(
        "--verify", action="store_true", help="load the folder in timm and compare outputs"
    )
    args = parser.parse_args(argv)
    if not os.path.exists(args.source):
        raise UsageError(f"--from {args.source}: no such workdir or checkpoint")
    out = os.path.abspath(args.out)
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UsageError(f"--out {args.out}: exists and is not empty; choose a new folder")
    problem = files.path_problem(out)
    if problem:
        raise UsageError(f"--out {args.out}: {problem}; choose a new folder")
    summary = checkpoint.run_summary(args.source) or {}
    if summary.get("status") == "diverged":  # as fine-tuning from it is refused
        raise UsageError(
            f"--from {args.source}: that run stopped at step {summary.get('diverged_at_step')} "
            f"on a non-finite loss (its summary.json); export a run that finished"
        )
    if args.verify:  # before anything is written
        from synth_jax.weights import timm_check

        timm_check.require_timm()
    params, model_state, step, run_config = load_checkpoint(args.source)
    tensors, config = timm_export(params, model_state, run_config, args.with_head, step)
    config["synth_jax"]["source"] = args.source
    write_folder(out, tensors, config)
    args_text = f" with model_args {config['model_args']}" if config["model_args"] else ""
    print(
        f"wrote {os.path.join(args.out, WEIGHTS)}: timm {config['architecture']}{args_text}, "
        f"{config['num_classes'] or 'no'} classes"
    )
    for difference in config["synth_jax"]["differences"]:
        print(f"  difference: {difference}")
    if args.verify:
        agrees, report = verify(out, params, model_state, run_config)
        print(f"timm {'agrees' if agrees else 'DISAGREES'} {report}")
        if not agrees:
            print("the export does not reproduce synth_jax's outputs: a bug", file=sys.stderr)
            return 1
    return 0

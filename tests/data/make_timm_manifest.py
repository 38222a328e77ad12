"""Writes tests/data/timm_manifest.json: for each synth_jax model that synth_jax exports to timm,
the timm architecture and model_args it is exported as, and the state-dict names and shapes that
timm builds for them. tests/test_weights_layout.py checks synth_jax's exports against it
without PyTorch. Run it again (where PyTorch and timm are installed: the `timm` extra) when
timm or the mapping changes:

    PYTHONPATH=. python tests/data/make_timm_manifest.py
"""

import json
import os
import re

import timm
import torch

from synth_jax.weights import timm_resnet, timm_vit

# (synth_jax model name, pool (ViTs), image size)
MODELS = [
    ("Ti/16", "cls", 224),
    ("Ti/16", "gap", 224),
    ("S/16", "cls", 224),
    ("B/16", "cls", 224),
    ("L/16", "cls", 224),
    ("M/16", "gap", 256),
    ("Ti/4", "gap", 32),
    ("Nano/4", "gap", 32),
    ("ResNet-10", None, 224),
    ("ResNet-18", None, 224),
    ("ResNet-34", None, 224),
    ("ResNet-50", None, 224),
    ("ResNet-101", None, 224),
]
NUM_CLASSES = 1000


def entry(name: str, pool: str | None, image_size: int) -> dict:
    model = {"name": name} if pool is None else {"name": name, "pool": pool}
    mapping = timm_resnet if name.startswith("ResNet") else timm_vit
    arch, args, _ = mapping.timm_twin(model, image_size)
    with torch.device("meta"):  # names and shapes only: nothing is allocated
        net = timm.create_model(arch, num_classes=NUM_CLASSES, **args)
    tensors = {}
    for key, value in net.state_dict().items():
        tensors[key] = list(value.shape)
        if value.dtype != torch.float32:
            tensors[key].append(str(value.dtype).removeprefix("torch."))
    return dict(
        model=model, image_size=image_size, architecture=arch, model_args=args, tensors=tensors
    )


def main():
    manifest = dict(
        timm=timm.__version__,
        torch=torch.__version__.split("+")[0],
        num_classes=NUM_CLASSES,
        models=[entry(*m) for m in MODELS],
    )
    text = json.dumps(manifest, indent=1)
    # one line per tensor: [192, 3, 16, 16]
    one_line = lambda m: "[" + " ".join(m.group(1).split()) + "]"
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", one_line, text)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "timm_manifest.json")
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"wrote {path}: {len(MODELS)} models")


if __name__ == "__main__":
    main()

"""Exports and imports checked numerically without PyTorch: synth_jax's logits against timm's
forward pass re-implemented in NumPy (synth_jax.weights.timm_reference, float64), on random
weights, batch statistics and images. Unlike names/shapes and round trips, this sees a
transposed square kernel, a wrong q/k/v order or an error made alike by export and import."""

import json
import math
import os

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from test_weights_layout import MANIFEST, assert_trees_equal, random_state

from synth_jax.models import create_model, model_config
from synth_jax.transfer import pretrained
from synth_jax.weights import export, safetensors_file, timm_check, timm_resnet, timm_vit
from synth_jax.weights import load as load_weights
from synth_jax.weights import timm_reference as ref

# of the largest |logit|: float32 against float64 measures 2e-7 to 9e-7 (ViT-mu/4 to Ti/16,
# ResNet-10/50), so 1e-5 passes every correct export and fails every misplaced array.
TOLERANCE = 1e-5
MU = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
MODELS = [  # (synth_jax model, image size, model keywords): the ResNets above 64 px (timm stem)
    ("mu/4", 32, dict(pool="gap")),
    ("mu/4", 32, dict(pool="cls")),
    ("mu/4", 32, dict(pool="cls", posemb="sincos2d")),
    ("ResNet-10", 72, {}),
    ("ResNet-50", 72, {}),
]


def images(size, n=2, seed=1):
    """float32[n, size, size, 3], roughly normalised images (NHWC, as synth_jax takes them)."""
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def relative_difference(ours, reference) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def exported(tmp_path, name, size, kw, with_head=True):
    """(synth_jax outputs, the folder's tensors and config.json) of an exported random model."""
    model, params, model_state = random_state(name, size, num_classes=10, **kw)
    run_config = dict(model=model, image_size=size)
    tensors, config = export.timm_export(params, model_state, run_config, with_head)
    out = str(tmp_path / "out")
    export.write_folder(out, tensors, config)
    if not with_head:
        params = {k: v for k, v in params.items() if k != "head"}
    ours = timm_check.synth_jax_outputs(model, size, params, model_state, images(size))
    tensors, _ = safetensors_file.read(os.path.join(out, export.WEIGHTS))
    with open(os.path.join(out, "config.json")) as f:
        return ours, tensors, json.load(f)


@pytest.fixture(scope="module")
def export_of(tmp_path_factory):
    """export_of(i, with_head=True): `exported` for MODELS[i], made once per module."""
    cache = {}

    def get(index, with_head=True):
        if (index, with_head) not in cache:
            folder = tmp_path_factory.mktemp("export")
            cache[index, with_head] = exported(folder, *MODELS[index], with_head)
        return cache[index, with_head]

    return get


def reference_outputs(config, tensors, size):
    """The timm model that `timm.create_model("local-dir:DIR")` builds, run in NumPy."""
    return ref.forward(ref.from_config(config), tensors, images(size).transpose(0, 3, 1, 2))


def test_reference_builds_the_state_dicts_timm_builds():
    """The reference's architectures hold exactly timm's names, order, shapes and dtypes (the
    manifest was made from timm itself)."""
    with open(MANIFEST) as f:
        manifest = json.load(f)
    for entry in manifest["models"]:
        args = ref.create(entry["architecture"], num_classes=1000, **entry["model_args"])
        got = {
            name: list(shape) + ([] if ref.dtype(name) == np.float32 else [str(ref.dtype(name))])
            for name, shape in ref.shapes(args).items()
        }
        assert list(got.items()) == list(entry["tensors"].items()), entry["architecture"]


@pytest.mark.parametrize(
    "index", range(len(MODELS)), ids=lambda i: f"{MODELS[i][0]}-{MODELS[i][2]}"
)
def test_exported_logits_equal_timm_forward_in_numpy(export_of, index):
    name, size, kw = MODELS[index]
    ours, tensors, config = export_of(index)
    theirs = reference_outputs(config, tensors, size)
    diff = relative_difference(ours, theirs)
    print(f"{name} {kw} at {size} px: max |logit difference| / max |logit| {diff:.1e}")
    assert diff <= TOLERANCE
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()


@pytest.mark.parametrize("index", [0, 3], ids=lambda i: MODELS[i][0])
def test_exported_backbone_features_equal_timm_pre_logits(export_of, index):
    ours, tensors, config = export_of(index, with_head=False)
    assert (
        config["num_classes"] == 0 and "head.weight" not in tensors and "fc.weight" not in tensors
    )
    theirs = reference_outputs(config, tensors, MODELS[index][1])
    assert ours.shape == theirs.shape and relative_difference(ours, theirs) <= TOLERANCE


def test_the_config_json_is_checked_too(export_of):
    """timm builds the model from config.json: without fc_norm=False a GAP ViT normalises after
    pooling, holds fc_norm instead of norm, and the strict load refuses the file."""
    _, tensors, config = export_of(0)
    assert config["model_args"]["fc_norm"] is False
    wrong = dict(
        config, model_args={k: v for k, v in config["model_args"].items() if k != "fc_norm"}
    )
    with pytest.raises(ValueError, match=r"missing \['fc_norm.bias', 'fc_norm.weight'\]"):
        reference_outputs(wrong, tensors, 32)


# -- negative controls: what a wrong mapping could write under timm's names and shapes ----------
def on(suffixes, f):
    """The state dict with f applied to every entry whose name ends with one of `suffixes`."""
    return lambda tensors: {k: f(v) if k.endswith(suffixes) else v for k, v in tensors.items()}


def swap_q_k(a):
    q, k, v = np.split(a, 3)
    return np.concatenate([k, q, v])


def heads_major(a):
    """Rows ordered (heads, 3, head_dim) instead of timm's (3, heads, head_dim); mu has 2 heads."""
    return a.reshape(3, 2, -1, *a.shape[1:]).swapaxes(0, 1).reshape(a.shape)


def transpose_grid(pos):
    """pos_embed [1, slot + g*g, D] with its g x g grid transposed (rows <-> columns)."""
    grid = math.isqrt(pos.shape[1])
    slot = pos.shape[1] - grid * grid
    patches = pos[:, slot:].reshape(1, grid, grid, -1).swapaxes(1, 2).reshape(1, grid * grid, -1)
    return np.concatenate([pos[:, :slot], patches], axis=1)


QKV = (".attn.qkv.weight", ".attn.qkv.bias")
ROWS_COLUMNS = lambda a: a.swapaxes(2, 3)  # a conv kernel [out, in, kh, kw] transposed spatially
IN_OUT = lambda a: a.swapaxes(0, 1)  # a square conv kernel read as [in, out, ...]
CONTROLS = {  # name -> (MODELS index, the wrong state dict)
    "q-and-k-swapped": (1, on(QKV, swap_q_k)),
    "qkv-heads-major": (1, on(QKV, heads_major)),
    "square-attention-out-kernel-transposed": (1, on((".attn.proj.weight",), np.transpose)),
    "patch-kernel-rows-columns-swapped": (1, on(("patch_embed.proj.weight",), ROWS_COLUMNS)),
    "position-grid-transposed": (0, on(("pos_embed",), transpose_grid)),
    "3x3-kernels-rows-columns-swapped": (3, on((".conv2.weight",), ROWS_COLUMNS)),
    "square-3x3-kernel-in-out-swapped": (3, on(("layer1.0.conv1.weight",), IN_OUT)),
    "square-1x1-kernel-in-out-swapped": (4, on(("layer1.0.conv1.weight",), IN_OUT)),
}


@pytest.mark.parametrize("control", CONTROLS)
def test_a_misplaced_array_is_caught(export_of, control):
    """Each wrong state dict has timm's names and shapes (the manifest check passes it), yet the
    logits disagree by far more than the tolerance."""
    index, wrong = CONTROLS[control]
    ours, tensors, config = export_of(index)
    bad = wrong(tensors)
    assert {k: v.shape for k, v in bad.items()} == {k: v.shape for k, v in tensors.items()}
    assert any(not np.array_equal(bad[k], tensors[k]) for k in tensors)
    diff = relative_difference(ours, reference_outputs(config, bad, MODELS[index][1]))
    print(f"{control}: max |logit difference| / max |logit| {diff:.2f}")
    assert diff > 1000 * TOLERANCE


SYMMETRIC = {  # name -> (MODELS index, mapping module, an involution on its state dicts)
    "q-and-k-swapped": (1, timm_vit, on(QKV, swap_q_k)),
    "position-grid-transposed": (1, timm_vit, on(("pos_embed",), transpose_grid)),
    "3x3-kernels-rows-columns-swapped": (3, timm_resnet, on((".conv2.weight",), ROWS_COLUMNS)),
}


@pytest.mark.parametrize("bug", SYMMETRIC)
def test_an_error_made_alike_by_export_and_import_is_caught(tmp_path, monkeypatch, bug):
    """A mapping wrong the same way in both directions survives the round trip exactly (what
    test_weights_layout checks) and is caught here."""
    index, module, wrong = SYMMETRIC[bug]
    to_timm, from_timm = module.to_timm, module.from_timm
    monkeypatch.setattr(module, "to_timm", lambda *a, **k: wrong(to_timm(*a, **k)))
    monkeypatch.setattr(module, "from_timm", lambda sd, *a: from_timm(wrong(sd), *a))
    name, size, kw = MODELS[index]
    model, params, model_state = random_state(name, size, num_classes=10, **kw)
    run_config = dict(model=model, image_size=size)
    tensors, config = export.timm_export(params, model_state, run_config, with_head=True)
    export.write_folder(str(tmp_path / "out"), tensors, config)
    params2, model_state2, _ = load_weights(str(tmp_path / "out" / export.WEIGHTS))
    assert_trees_equal(params2, params)
    assert_trees_equal(model_state2, model_state)
    ours = timm_check.synth_jax_outputs(model, size, params, model_state, images(size))
    assert relative_difference(ours, reference_outputs(config, tensors, size)) > 1000 * TOLERANCE


# -- the import direction ------------------------------------------------------------------------
IMPORTS = [  # (timm architecture, its arguments, the synth_jax twin, its keywords, image size)
    ("vit_tiny_patch16_224", MU, "mu/4", dict(pool="cls"), 32),
    ("vit_tiny_patch16_224", dict(MU, no_embed_class=True), "mu/4", dict(pool="cls"), 32),
    (
        "vit_tiny_patch16_224",
        dict(MU, class_token=False, global_pool="avg", fc_norm=False),
        "mu/4",
        dict(pool="gap"),
        32,
    ),
    ("resnet18", dict(layers=[1, 1, 1, 1]), "ResNet-10", {}, 72),
    ("resnet50", {}, "ResNet-50", {}, 72),
]


@pytest.mark.parametrize("arch, args, name, kw, size", IMPORTS, ids=lambda v: str(v))
def test_a_timm_state_dict_initialises_synth_jax_exactly(tmp_path, arch, args, name, kw, size):
    """A random state dict of timm's architecture (the class token's position slot included),
    saved as a plain .safetensors file and read by `--config.init_from=FILE` (head included),
    gives synth_jax timm's logits."""
    timm_args = ref.create(arch, num_classes=5, **args)
    tensors = ref.random_state_dict(timm_args, seed=2)
    path = str(tmp_path / "timm.safetensors")
    safetensors_file.write(path, tensors)
    config = model_config(name, **kw)
    model = create_model(config, 5, size, nnx.Rngs(params=0))
    pretrained.load_into(model, config, path, dont_load=())
    x = images(size)
    ours = np.asarray(model(jnp.asarray(x), train=False))
    theirs = ref.forward(timm_args, tensors, x.transpose(0, 3, 1, 2))
    assert relative_difference(ours, theirs) <= TOLERANCE

"""Exports against timm itself (runs where PyTorch and timm are installed: the `timm` extra):
the exported ViT-Ti/16 and ResNet-50 give timm logits equal to synth_jax's to float32
tolerance, timm's own .npz loader reads the big_vision layouts as synth_jax does, the committed
manifest is what the installed timm builds, the NumPy reference (which CI runs instead) is timm
to float64 precision, and `export-model --verify` says so."""

import json
import os
import sys

import numpy as np
import pytest
from test_weights_layout import make_checkpoint, random_state, write_npz

from synth_jax import cli
from synth_jax.weights import export, timm_check
from synth_jax.weights import load as load_weights
from synth_jax.weights import timm_reference as ref

NEEDS = "checks against timm itself need the timm extra (pip install -e '.[timm]')"
torch = pytest.importorskip("torch", reason=f"torch missing: {NEEDS}")
timm = pytest.importorskip("timm", reason=f"timm missing: {NEEDS}")
safetensors_torch = pytest.importorskip("safetensors.torch", reason=f"safetensors missing: {NEEDS}")

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
TOLERANCE = 1e-5  # of the largest |logit|; measured differences are below 1e-6 of it


def images(size, n=2, seed=0):
    """float32[n, size, size, 3], roughly normalised images."""
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


def timm_logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()


def export_and_compare(tmp_path, name, size, **kw):
    model, params, model_state = random_state(name, size, num_classes=1000, **kw)
    tensors, config = export.timm_export(
        params, model_state, dict(model=model, image_size=size), True
    )
    out = str(tmp_path / "out")
    export.write_folder(out, tensors, config)
    x = images(size)
    ours = timm_check.synth_jax_outputs(model, size, params, model_state, x)
    # timm's loader reading the folder (config.json + model.safetensors) ...
    theirs = timm_logits(timm.create_model(f"local-dir:{out}", pretrained=True).eval(), x)
    # ... and the plain architecture with the file read by the reference safetensors library
    net = timm.create_model(config["architecture"], num_classes=1000, **config["model_args"])
    net.load_state_dict(safetensors_torch.load_file(os.path.join(out, "model.safetensors")))
    plain = timm_logits(net.eval(), x)
    np.testing.assert_array_equal(plain, theirs)
    diff, scale = float(np.abs(ours - theirs).max()), float(np.abs(ours).max())
    print(
        f"{name} {kw} -> {config['architecture']}: max |logit diff| {diff:.2e}, |logit| {scale:.2f}"
    )
    assert diff <= TOLERANCE * max(1.0, scale)
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()
    return diff


@pytest.mark.parametrize("pool", ["gap", "cls"])
def test_vit_tiny_logits_equal_timm(tmp_path, pool):
    export_and_compare(tmp_path, "Ti/16", 224, pool=pool)


def test_resnet50_logits_equal_timm(tmp_path):
    export_and_compare(tmp_path, "ResNet-50", 224)


@pytest.mark.parametrize(
    "layout, pool, timm_args",
    [
        ("vt", "cls", {}),  # the public AugReg ViTs: pos_embed with a class-token slot
        ("vt", "gap", dict(class_token=False, global_pool="avg", fc_norm=False)),
        ("bv", "gap", dict(class_token=False, global_pool="avg", fc_norm=False)),
        ("bv", "cls", dict(no_embed_class=True)),  # big_vision adds posemb before the token
    ],
)
def test_timm_reads_npz_files_as_synth_jax_does(tmp_path, layout, pool, timm_args):
    from timm.models.vision_transformer import _load_weights

    _, params, _ = random_state("mu/4", 32, num_classes=10, pool=pool)
    path = str(tmp_path / "vit.npz")
    write_npz(path, params, layout, prefix="params/" if layout == "bv" else "")
    loaded, _, info = load_weights(path)
    x = images(32)
    ours = timm_check.synth_jax_outputs(info["model"], 32, loaded, {}, x)
    args = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
    net = timm.create_model("vit_tiny_patch16_224", num_classes=10, **args, **timm_args)
    _load_weights(net, path)
    np.testing.assert_allclose(ours, timm_logits(net.eval(), x), rtol=0, atol=1e-5)


def test_committed_manifest_is_what_timm_builds():
    sys.path.insert(0, DATA)
    try:
        import make_timm_manifest
    finally:
        sys.path.remove(DATA)
    with open(os.path.join(DATA, "timm_manifest.json")) as f:
        committed = json.load(f)["models"]
    for entry in committed:
        model = entry["model"]
        fresh = make_timm_manifest.entry(model["name"], model.get("pool"), entry["image_size"])
        assert fresh == entry, f"{model}: run tests/data/make_timm_manifest.py again"


def test_export_model_verify_loads_in_timm_and_agrees(tmp_path, capsys):
    workdir, out = str(tmp_path / "run"), str(tmp_path / "out")
    make_checkpoint(workdir, "mu/4", 32, num_classes=5)
    rc = cli.main(["export-model", "--from", workdir, "--out", out, "--with-head", "--verify"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "timm agrees on 8 onepfrac images" in text and "same top-1 class for 8 of 8" in text
    assert not any(name.startswith(".") for name in os.listdir(tmp_path))  # no temporary left


@pytest.mark.parametrize(
    "arch, timm_args, size",
    [
        # a standard class-token ViT: timm's random pos_embed has a class-token slot to fold
        (
            "vit_tiny_patch16_224",
            dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0),
            32,
        ),
        ("resnet18", {}, 96),
    ],
)
def test_a_file_saved_by_timm_initialises_synth_jax_exactly(tmp_path, arch, timm_args, size):
    """The other direction: a timm model's own state dict (no config.json) read by synth_jax
    gives synth_jax the same logits."""
    torch.manual_seed(0)
    net = timm.create_model(arch, num_classes=5, **timm_args).eval()
    with torch.no_grad():
        for name, value in net.state_dict().items():
            if "running_var" in name:
                value.copy_(torch.rand_like(value) + 0.5)
            elif value.dtype == torch.float32:  # biases, norms and statistics off their init
                value.add_(0.05 * torch.randn_like(value))
    path = str(tmp_path / "timm.safetensors")
    safetensors_torch.save_file(net.state_dict(), path)
    params, stats, info = load_weights(path)
    x = images(size)
    ours = timm_check.synth_jax_outputs(info["model"], size, params, stats, x)
    np.testing.assert_allclose(ours, timm_logits(net, x), rtol=0, atol=1e-4)


MU = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)


@pytest.mark.parametrize(
    "arch, kwargs, size",
    [
        ("vit_tiny_patch16_224", MU, 32),
        ("vit_tiny_patch16_224", dict(MU, class_token=False, global_pool="avg", fc_norm=False), 32),
        ("vit_tiny_patch16_224", dict(MU, class_token=False, global_pool="avg"), 32),  # fc_norm
        ("vit_tiny_patch16_224", dict(MU, no_embed_class=True), 32),
        ("vit_tiny_patch16_224", dict(MU, init_values=0.1, qkv_bias=False, num_heads=4), 32),
        ("vit_tiny_patch16_224", dict(MU, num_classes=0), 32),
        ("resnet18", dict(layers=[1, 1, 1, 1]), 72),
        ("resnet18", dict(num_classes=0), 67),
        ("resnet50", dict(layers=[1, 2, 1, 1]), 72),
    ],
)
def test_numpy_reference_is_timm(arch, kwargs, size):
    """The NumPy forward pass that CI compares exports against, against timm itself in float64
    on the same random state dict: equal to rounding."""
    kwargs = dict(kwargs)
    kwargs.setdefault("num_classes", 7)
    args = ref.create(arch, **kwargs)
    state_dict = ref.random_state_dict(args, seed=1)
    net = timm.create_model(arch, **kwargs).double().eval()
    net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()})
    x = np.random.default_rng(2).normal(size=(2, 3, size, size))
    with torch.no_grad():
        features = net.forward_features(torch.from_numpy(x))
        theirs = net.forward_head(features, pre_logits=not kwargs["num_classes"]).numpy()
    np.testing.assert_allclose(ref.forward(args, state_dict, x), theirs, rtol=0, atol=1e-12)

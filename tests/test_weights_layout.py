"""Weights in and out without PyTorch: the safetensors format, timm's names and shapes (against a
manifest made once from timm), exact round trips synth_jax -> timm layout -> synth_jax, the
big_vision / vision_transformer .npz layouts, the `export-model` verb, the `init_from` hook and
the one-line refusals of bad input."""

import functools
import json
import math
import os
import struct

import jax
import numpy as np
import pytest
from flax import nnx

from synth_jax import cli, files
from synth_jax.config import config_to_dict
from synth_jax.errors import UsageError
from synth_jax.fractals import data_config
from synth_jax.models import create_model, model_config, vit
from synth_jax.train import checkpoint
from synth_jax.transfer import pretrained
from synth_jax.weights import export, safetensors_file, timm_resnet, timm_vit
from synth_jax.weights import load as load_weights

MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "timm_manifest.json")


@functools.cache
def abstract_state(name, image_size, num_classes=1000, **model_kw):
    """(model config dict, params, model_state) as shape structs (built once per model)."""
    config = model_config(name, head_zero_init=False, **model_kw)
    model = nnx.eval_shape(lambda: create_model(config, num_classes, image_size, nnx.Rngs(0)))
    _, params, model_state = nnx.split(model, nnx.Param, ...)
    return config.to_dict(), nnx.to_pure_dict(params), nnx.to_pure_dict(model_state)


def random_state(name, image_size, num_classes=1000, seed=0, **model_kw):
    """(model config dict, params, model_state) with every array random (norm scales and biases,
    batch statistics, class token...), so that a swapped or mis-transposed array changes the
    outputs; kernels scaled by 1/sqrt(fan-in) so that activations stay O(1)."""
    config, params, model_state = abstract_state(name, image_size, num_classes, **model_kw)
    rng = np.random.default_rng(seed)

    def fill(path, x):
        key, shape = jax.tree_util.keystr(path), x.shape
        if "var" in key:
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        if "scale" in key:
            return (1.0 + rng.normal(0.0, 0.2, shape)).astype(np.float32)
        if "kernel" in key:
            return rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape).astype(np.float32)
        return rng.normal(0.0, 0.05, shape).astype(np.float32)

    params = jax.tree_util.tree_map_with_path(fill, params)
    if "posemb" in model_state:  # a fixed sin-cos table is what it is
        grid, width = math.isqrt(model_state["posemb"].shape[1]), model_state["posemb"].shape[2]
        model_state = {"posemb": vit.sincos_posemb_2d(grid, grid, width)}
    else:
        model_state = jax.tree_util.tree_map_with_path(fill, model_state)
    return dict(config), params, model_state


def assert_trees_equal(a, b):
    flat_a = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(a)[0]}
    flat_b = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(b)[0]}
    assert sorted(flat_a) == sorted(flat_b)
    for key, value in flat_a.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_b[key]), err_msg=key)


def make_checkpoint(workdir, name, image_size, num_classes=10, step=5, **model_kw):
    """A run folder as the trainer leaves it (config.json + checkpoints/<step>/), no training."""
    config, params, model_state = random_state(name, image_size, num_classes, **model_kw)
    manager = checkpoint.make_manager(str(workdir), 1, 1, async_save=False)
    state = dict(params=params, model_state=model_state, step=np.int32(step))
    checkpoint.save(manager, step, state, {"source": None, "seed": 0}, force=True)
    manager.wait_until_finished()
    manager.close()
    run_config = dict(
        model=config,
        image_size=image_size,
        augment=dict(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
        data=config_to_dict(
            data_config("onepfrac", num_classes=num_classes, image_size=image_size)
        ),
    )
    files.write_json(os.path.join(workdir, "config.json"), run_config)
    return params, model_state


# ---------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip_is_exact_for_every_dtype(tmp_path):
    import ml_dtypes

    rng = np.random.default_rng(0)
    tensors = {
        "a.weight": rng.normal(size=(3, 4)).astype(np.float32),
        "b": rng.normal(size=(5,)).astype(np.float16),
        "c": rng.normal(size=(2, 2)).astype(ml_dtypes.bfloat16),
        "steps": np.asarray(7, np.int64),
        "mask": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
        "view": rng.normal(size=(4, 3)).astype(np.float32).T,  # not contiguous
    }
    path = str(tmp_path / "t.safetensors")
    safetensors_file.write(path, tensors, {"format": "pt"})
    back, metadata = safetensors_file.read(path)
    assert metadata == {"format": "pt"}
    assert sorted(back) == sorted(tensors)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape, name
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    with open(path, "rb") as f:  # the format: u64 header length, JSON padded to 8 bytes
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    assert n % 8 == 0 and header["__metadata__"] == {"format": "pt"}
    assert (header["steps"]["dtype"], header["steps"]["shape"]) == ("I64", [])
    assert (header["c"]["dtype"], header["c"]["shape"]) == ("BF16", [2, 2])


def test_safetensors_matches_the_reference_implementation(tmp_path):
    st = pytest.importorskip(
        "safetensors.numpy",
        reason="safetensors missing: needs the timm extra (pip install -e '.[timm]')",
    )
    rng = np.random.default_rng(1)
    tensors = {"x": rng.normal(size=(3, 5)).astype(np.float32), "n": np.arange(4, dtype=np.int64)}
    ours, theirs = str(tmp_path / "ours.safetensors"), str(tmp_path / "theirs.safetensors")
    safetensors_file.write(ours, tensors)
    st.save_file(tensors, theirs)
    for name, value in st.load_file(ours).items():
        np.testing.assert_array_equal(value, tensors[name])
    for name, value in safetensors_file.read(theirs)[0].items():
        np.testing.assert_array_equal(value, tensors[name])


def test_truncated_or_foreign_safetensors_is_one_line(tmp_path):
    path = str(tmp_path / "t.safetensors")
    safetensors_file.write(path, {"w": np.ones((64, 64), np.float32)})
    data = open(path, "rb").read()
    for name, content, words in [
        ("cut.safetensors", data[:-100], "truncated"),
        ("head.safetensors", data[:20], "truncated"),
        ("tiny.safetensors", data[:5], "no header"),
        ("text.safetensors", b"hello world, not tensors", "not a safetensors"),
    ]:
        bad = str(tmp_path / name)
        open(bad, "wb").write(content)
        with pytest.raises(UsageError, match=words) as e:
            safetensors_file.read(bad)
        assert "\n" not in str(e.value) and bad in str(e.value)


# ---------------------------------------------------------------------------- timm layout


def manifest_entries():
    with open(MANIFEST) as f:
        return json.load(f)["models"]


@pytest.mark.parametrize(
    "entry", manifest_entries(), ids=lambda e: f"{e['model']['name']}-{e['image_size']}"
)
def test_export_has_timm_names_and_shapes(entry):
    """synth_jax's export of every mapped model against timm's state dict (the manifest)."""
    model, size = dict(entry["model"]), entry["image_size"]
    is_resnet = model["name"].startswith("ResNet")
    mapping = timm_resnet if is_resnet else timm_vit
    arch, args, _ = mapping.timm_twin(model, size)
    assert (arch, args) == (entry["architecture"], entry["model_args"])
    kw = {k: v for k, v in model.items() if k != "name"}
    _, params, model_state = abstract_state(model["name"], size, 1000, **kw)
    # zero-stride arrays: the shapes flow through the mapping without allocating the model
    shaped = lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape)
    params, model_state = jax.tree.map(shaped, params), jax.tree.map(shaped, model_state)
    tensors = mapping.to_timm(params, model_state, model, size, with_head=True)
    got = {}
    for key, value in tensors.items():
        got[key] = list(np.shape(value)) + ([] if value.dtype == np.float32 else [str(value.dtype)])
    assert got == entry["tensors"]


@pytest.mark.parametrize(
    "name, size, kw",
    [
        ("Ti/16", 224, {}),
        ("Ti/16", 224, dict(pool="cls")),
        ("mu/4", 32, dict(pool="cls", posemb="sincos2d")),
        ("ResNet-18", 96, {}),
    ],
)
def test_round_trip_through_timm_layout_is_exact(tmp_path, name, size, kw):
    model, params, model_state = random_state(name, size, **kw)
    run_config = dict(model=model, image_size=size)
    tensors, config = export.timm_export(params, model_state, run_config, with_head=True, step=3)
    export.write_folder(str(tmp_path / "out"), tensors, config)
    params2, model_state2, info = load_weights(str(tmp_path / "out" / "model.safetensors"))
    assert_trees_equal(params2, params)
    assert_trees_equal(model_state2, model_state)
    assert info == dict(model=model, image_size=size)


def test_a_plain_timm_file_without_config_is_inferred(tmp_path):
    """A file without config.json (e.g. from timm's save_file): model, pool and size from shapes;
    timm's class-token slot of pos_embed is folded into the class token."""
    model, params, model_state = random_state("Ti/16", 224, pool="cls")
    tensors = timm_vit.to_timm(params, model_state, model, 224, with_head=False)
    slot = np.random.default_rng(3).normal(size=(1, 1, 192)).astype(np.float32)
    tensors["pos_embed"] = np.concatenate([slot, tensors["pos_embed"][:, 1:]], axis=1)
    path = str(tmp_path / "vit.safetensors")
    safetensors_file.write(path, tensors)
    loaded, _, info = load_weights(path)
    assert info["model"]["name"] == "Ti/16" and info["model"]["pool"] == "cls"
    assert info["image_size"] == 224 and "head" not in loaded
    np.testing.assert_allclose(loaded["cls"], params["cls"] + slot, rtol=0, atol=0)
    np.testing.assert_array_equal(loaded["posemb"], params["posemb"])


# ---------------------------------------------------------------------------- big_vision .npz


def write_npz(path, params, layout, scanned=False, prefix="", extra_arrays=None):
    """A synth_jax ViT's parameters under big_vision's ("bv") or vision_transformer's ("vt")
    names: the reference the importer is checked against (and, in test_weights_timm.py, timm's
    own .npz loader)."""
    width = params["embedding"]["bias"].shape[0]
    heads = {32: 2, 96: 3, 192: 3}[width]
    attn_i, ln2_i, mlp_i = (0, 1, 0) if layout == "bv" else (1, 2, 3)
    a = {f"embedding/{k}": v for k, v in params["embedding"].items()}
    pos = params["posemb"]
    if "cls" in params:
        a["cls"] = params["cls"]
        if layout == "vt":  # the slot is added to the class token: store cls - slot
            slot = np.full((1, 1, width), 0.25, np.float32)
            a["cls"] = params["cls"] - slot
            pos = np.concatenate([slot, pos], axis=1)
    a["pos_embedding" if layout == "bv" else "Transformer/posembed_input/pos_embedding"] = pos
    blocks = []
    for i in sorted(params["blocks"]):
        b, mha = params["blocks"][i], f"MultiHeadDotProductAttention_{attn_i}"
        d = {"LayerNorm_0/scale": b["norm1"]["scale"], "LayerNorm_0/bias": b["norm1"]["bias"]}
        for n in ("query", "key", "value"):
            d[f"{mha}/{n}/kernel"] = b["attn"][n]["kernel"].reshape(width, heads, -1)
            d[f"{mha}/{n}/bias"] = b["attn"][n]["bias"].reshape(heads, -1)
        d[f"{mha}/out/kernel"] = b["attn"]["out"]["kernel"].reshape(heads, -1, width)
        d[f"{mha}/out/bias"] = b["attn"]["out"]["bias"]
        d[f"LayerNorm_{ln2_i}/scale"] = b["norm2"]["scale"]
        d[f"LayerNorm_{ln2_i}/bias"] = b["norm2"]["bias"]
        for j, m in enumerate(("mlp1", "mlp2")):
            d[f"MlpBlock_{mlp_i}/Dense_{j}/kernel"] = b[m]["kernel"]
            d[f"MlpBlock_{mlp_i}/Dense_{j}/bias"] = b[m]["bias"]
        blocks.append(d)
    if scanned:
        for key in blocks[0]:
            a[f"Transformer/encoderblock/{key}"] = np.stack([d[key] for d in blocks])
    else:
        for i, d in enumerate(blocks):
            a.update({f"Transformer/encoderblock_{i}/{k}": v for k, v in d.items()})
    a["Transformer/encoder_norm/scale"] = params["norm"]["scale"]
    a["Transformer/encoder_norm/bias"] = params["norm"]["bias"]
    a["head/kernel"], a["head/bias"] = params["head"]["kernel"], params["head"]["bias"]
    a.update(extra_arrays or {})
    np.savez(path, **{prefix + k: np.asarray(v) for k, v in a.items()})


@pytest.mark.parametrize(
    "layout, pool, scanned, prefix",
    [
        ("vt", "cls", False, ""),
        ("vt", "gap", False, "opt/target/"),
        ("bv", "gap", False, "params/"),
        ("bv", "cls", True, "params/"),
    ],
)
def test_npz_layouts_load_exactly(tmp_path, layout, pool, scanned, prefix):
    model, params, _ = random_state("mu/4", 32, pool=pool)
    path = str(tmp_path / "vit.npz")
    write_npz(path, params, layout, scanned, prefix)
    loaded, stats, info = pretrained.load_pretrained(path)  # through the fine-tuning hook
    assert stats == {} and info == dict(model=model | dict(head_zero_init=True), image_size=32)
    if pool == "cls":
        np.testing.assert_allclose(loaded.pop("cls"), params["cls"], rtol=0, atol=1e-7)
        params = {k: v for k, v in params.items() if k != "cls"}
    assert_trees_equal(loaded, params)


def test_npz_refusals_are_one_line(tmp_path):
    _, params, _ = random_state("mu/4", 32)
    cases = {
        "map.npz": dict(extra_arrays={"MAPHead_0/probe": np.zeros((1, 1, 32))}),
        "stray.npz": dict(extra_arrays={"Transformer/encoderblock_0/model_state/w": np.zeros(3)}),
    }
    for name, kw in cases.items():
        write_npz(str(tmp_path / name), params, "bv", **kw)
    with pytest.raises(UsageError, match="MAPHead"):
        load_weights(str(tmp_path / "map.npz"))
    with pytest.raises(UsageError, match="no place for: Transformer/encoderblock_0/model_state/w"):
        load_weights(str(tmp_path / "stray.npz"))
    data = open(tmp_path / "map.npz", "rb").read()
    open(tmp_path / "cut.npz", "wb").write(data[: len(data) // 2])
    with pytest.raises(UsageError, match="not a readable .npz") as e:
        load_weights(str(tmp_path / "cut.npz"))
    assert "\n" not in str(e.value)
    # pre_logits (old ImageNet-21k ViTs): dropped with the head it feeds
    pre_logits = {"pre_logits/kernel": np.zeros((32, 32)), "pre_logits/bias": np.zeros(32)}
    write_npz(str(tmp_path / "pre.npz"), params, "vt", extra_arrays=pre_logits)
    loaded, _, _ = load_weights(str(tmp_path / "pre.npz"))
    assert "head" not in loaded and "pre_logits" not in loaded


# ---------------------------------------------------------------------------- the verb and hook


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("weights") / "run")
    params, model_state = make_checkpoint(workdir, "mu/4", 32, num_classes=7)
    return workdir, params, model_state


def test_export_model_verb_writes_a_timm_folder(run_dir, tmp_path, capsys):
    workdir, params, model_state = run_dir
    out = str(tmp_path / "exported")
    assert cli.main(["export-model", "--from", workdir, "--out", out, "--with-head"]) == 0
    assert sorted(os.listdir(out)) == ["README.md", "config.json", "model.safetensors"]
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["architecture"] == "vit_tiny_patch16_224"
    assert config["model_args"] == dict(
        img_size=32,
        patch_size=4,
        embed_dim=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        class_token=False,
        global_pool="avg",
        fc_norm=False,
    )
    assert config["num_classes"] == 7 and config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert config["synth_jax"]["step"] == 5 and config["synth_jax"]["differences"]
    assert (
        f'timm.create_model("local-dir:{out}", pretrained=True)'
        in open(os.path.join(out, "README.md")).read()
    )
    assert "vit_tiny_patch16_224 with model_args" in capsys.readouterr().out
    # the fine-tuning hook reads the file exactly as the checkpoint
    from_file = pretrained.load_pretrained(os.path.join(out, "model.safetensors"))
    from_run = pretrained.load_pretrained(workdir)
    assert_trees_equal(from_file[0], from_run[0])
    assert from_file[1] == {} and from_file[2]["model"] == from_run[2]["model"]
    # without --with-head: the backbone only
    out2 = str(tmp_path / "backbone")
    assert cli.main(["export-model", "--from", workdir, "--out", out2]) == 0
    backbone, _, _ = pretrained.load_pretrained(os.path.join(out2, "model.safetensors"))
    assert "head" not in backbone and json.load(open(f"{out2}/config.json"))["num_classes"] == 0
    # an existing folder is never overwritten
    before = open(os.path.join(out, "model.safetensors"), "rb").read()
    assert cli.main(["export-model", "--from", workdir, "--out", out]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert open(os.path.join(out, "model.safetensors"), "rb").read() == before


@pytest.mark.parametrize(
    "name, size, kw, words",
    [
        ("ResNet-18", 96, dict(norm="group"), "no timm twin: timm's group-norm ResNet"),
        ("ResNet-18", 32, {}, "no timm twin: at 64 px or less"),
    ],
)
def test_export_refuses_models_without_a_timm_twin(tmp_path, capsys, name, size, kw, words):
    workdir, out = str(tmp_path / "run"), str(tmp_path / "out")
    make_checkpoint(workdir, name, size, **kw)
    assert cli.main(["export-model", "--from", workdir, "--out", out]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not os.path.exists(out) and os.listdir(tmp_path) == ["run"]  # nothing written


def test_files_of_another_architecture_are_one_line(tmp_path):
    model, params, model_state = random_state("ResNet-18", 96)
    resnet = timm_resnet.to_timm(params, model_state, model, 96, with_head=True)
    cases = {
        # an SE-ResNet: attention modules synth_jax's ResNet does not have
        "se": (
            {**resnet, "layer1.0.se.fc1.weight": np.zeros((4, 64, 1, 1), np.float32)},
            "unexpected layer1.0.se.fc1.weight",
        ),
        # a basic-block ResNet with (1, 2, 2, 2) blocks per stage
        "r26": (
            {k: v for k, v in resnet.items() if not k.startswith("layer1.1.")},
            "basic ResNet with (1, 2, 2, 2) blocks per stage has no synth_jax twin",
        ),
        # a ViT of width 64 (no synth_jax variant)
        "vit64": (
            {"patch_embed.proj.weight": np.zeros((64, 3, 16, 16), np.float32)},
            "width 64, depth 0",
        ),
        # not an image model at all
        "bert": (
            {"embeddings.word_embeddings.weight": np.zeros((4, 4), np.float32)},
            "neither a timm ViT",
        ),
    }
    for name, (tensors, words) in cases.items():
        path = str(tmp_path / f"{name}.safetensors")
        safetensors_file.write(path, tensors)
        with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")) as e:
            load_weights(path)
        assert "\n" not in str(e.value) and path in str(e.value)
    # a ViT with layer scale (e.g. DeiT III) names what synth_jax has no place for
    model, params, model_state = random_state("mu/4", 32)
    vit = timm_vit.to_timm(params, model_state, model, 32, with_head=False)
    vit["blocks.0.ls1.gamma"] = np.ones(32, np.float32)
    safetensors_file.write(str(tmp_path / "ls.safetensors"), vit)
    with pytest.raises(UsageError, match="unexpected blocks.0.ls1.gamma"):
        load_weights(str(tmp_path / "ls.safetensors"))

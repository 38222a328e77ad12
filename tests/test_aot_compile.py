"""`synth-jax compile`: the trainer's step compiled for 4 fake CPU devices (and, with libtpu, for
two small TPU slices) fits, sends no image or batch histogram between devices, and FSDP shrinks
the state each device holds; the render is costed in full and apart from the model; bad targets
and unshardable configs are one-line usage errors."""

import importlib.util
import json
import math
import os

import numpy as np
import pytest

from synth_jax import cli
from synth_jax.aot import compile_step, hlo, render_cost, report

CONFIG = os.path.join(os.path.dirname(__file__), "..", "configs", "pretrain", "cpu_tiny.py")
# cpu_tiny:mu (a 2-block, 32-wide ViT, batch 64) at 40 px, a size no model dimension has, with
# mixup and cutmix, which pair images.
SIZE, BATCH = 40, 64
ARGS = [
    "--config",
    CONFIG + ":mu",
    f"--config.image_size={SIZE}",
    f"--config.data.image_size={SIZE}",
    "--config.augment.mixup=0.8",
    "--config.augment.cutmix=1.0",
]
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None


def compile_report(tmp_path, name, *extra):
    out, hlo_file = tmp_path / f"{name}.json", tmp_path / f"{name}.hlo"
    code = cli.main(["compile", *ARGS, *extra, "--out", str(out), "--hlo", str(hlo_file)])
    with open(out) as f:
        return code, json.load(f), hlo_file.read_text()


def largest_collective_operand(hlo_text: str) -> int:
    """Elements of the largest operand of any collective in the program (0: none)."""
    ops = hlo.collectives(hlo_text)
    return max((math.prod(dims) for op in ops for _, dims in op.shapes), default=0)


def image_operands(hlo_text: str) -> list:
    """Collective operands that hold images or a per-pixel histogram: a SIZE x SIZE plane, or a
    dimension of SIZE * SIZE (+ 1) pixels (the renderer's flattened histogram)."""
    found = []
    for op in hlo.collectives(hlo_text):
        for dtype, dims in op.shapes:
            planes = any(dims[i : i + 2] == (SIZE, SIZE) for i in range(len(dims) - 1))
            if planes or {SIZE * SIZE, SIZE * SIZE + 1} & set(dims):
                found.append((op.kind, dtype, dims))
    return found


@pytest.fixture(scope="module")
def data_parallel(tmp_path_factory):
    return compile_report(tmp_path_factory.mktemp("dp"), "dp")


@pytest.fixture(scope="module")
def fsdp(tmp_path_factory):
    # One node's share of a two-node job (half the batch over these 4 devices): what --nodes
    # does is checked on this compile too.
    return compile_report(
        tmp_path_factory.mktemp("fsdp"),
        "fsdp",
        "--config.mesh.data=1",
        "--config.mesh.fsdp=4",
        "--nodes",
        "2",
    )


def test_step_fits_and_sends_no_image_between_devices(data_parallel):
    code, result, text = data_parallel
    assert code == 0 and result["fits"] is True and result["devices"] == 4
    assert result["mesh"] == {"data": 4, "fsdp": 1, "model": 1}
    train = result["train_step"]
    assert 0 < result["total_bytes"] <= train["capacity_bytes"]
    assert result["total_bytes"] >= train["memory"]["temp_bytes"]
    # One channel of a device's own 16 images is 16 x 40 x 40 elements; the renderer's histogram
    # of the whole batch, summed over devices when the partitioner splits it, is 64 x 1601.
    assert largest_collective_operand(text) < (BATCH // 4) * SIZE * SIZE
    assert image_operands(text) == []
    # Data parallelism still all-reduces the gradients.
    assert train["collectives"]["all-reduce"]["bytes"] > 0
    assert train["model_flops_per_step"] > 0 and result["eval_step"]["fits"] is True
    # The render and the model, each with its bytes and FLOPs; the chaos game's steps that
    # XLA's count holds once are added.
    render, model = train["render"], train["model_piece"]
    assert render["images"] == BATCH // 4 and render["chaos_game"]["steps"] > 1
    assert 0 < render["chaos_game"]["bytes"] < render["bytes"] and model["bytes"] > 0
    assert train["bytes_accessed_per_chip"] == pytest.approx(render["bytes"] + model["bytes"])
    lines = compile_step.report_text(result)
    assert any(line.startswith("  render: 16 images per chip") for line in lines)
    assert any(line.startswith("  model (augmentation") for line in lines)


def test_fsdp_shrinks_the_state_each_device_holds(data_parallel, fsdp):
    code, result, text = fsdp
    assert code == 0 and result["fits"] is True
    assert result["mesh"] == {"data": 1, "fsdp": 4, "model": 1}
    # --nodes 2: half the batch over these 4 devices, the images each device holds in the job
    assert result["nodes"] == 2 and result["batch_size"] == BATCH // 2
    assert result["train_step"]["images_per_step"] == BATCH // 2
    replicated = data_parallel[1]["state_bytes_per_device"]
    assert result["state_bytes_per_device"] < 0.4 * replicated
    assert result["train_step"]["memory"]["argument_bytes"] < (
        0.4 * data_parallel[1]["train_step"]["memory"]["argument_bytes"]
    )
    # Parameters are gathered and gradients reduced; no image travels, and no activation: the
    # largest collective operand is smaller than one device's share of one block's activations
    # (8 images x 100 tokens x 32 wide). Left to the partitioner, FSDP all-reduced activations
    # of the whole batch (f32[64,100,64] at 64 images), 13.6 MB per step against 0.12 MB.
    assert image_operands(text) == []
    assert largest_collective_operand(text) < (BATCH // 2 // 4) * 100 * 32
    assert "all-gather" in result["train_step"]["collectives"]


def test_fsdp_resnet_gathers_weights_not_activations(tmp_path):
    # Under FSDP the step gathers each weight where it is used. Left to choose, the partitioner
    # gathered or all-reduced activations of the whole batch inside a ResNet's blocks (e.g.
    # f32[24,8,8,256]), the logits and pooled features. 6 images per device, 24 in all: no layer
    # of ResNet-10 has a dimension of either size.
    from synth_jax.config import load_config
    from synth_jax.models import model_config

    config = load_config(CONFIG + ":mu")
    config.model = model_config("ResNet-10")
    config.image_size = config.data.image_size = 32
    config.batch_size = 24
    config.mesh.data, config.mesh.fsdp = 1, 4
    hlo_file = tmp_path / "resnet.hlo"
    result = compile_step.compile_config(config, "local", hlo_path=str(hlo_file))
    assert result["fits"] is True and "all-gather" in result["train_step"]["collectives"]
    batch_shaped = [
        (op.kind, dims)
        for op in hlo.collectives(hlo_file.read_text())
        for _, dims in op.shapes
        if {6, 24} & set(dims)
    ]
    assert batch_shaped == [] and "all-to-all" not in result["train_step"]["collectives"]


def test_rendering_in_chunks_is_counted_in_full(data_parallel, tmp_path):
    # XLA counts a loop's body once: the render is costed on its own, a chunk times the chunks,
    # so the step's bytes and FLOPs are those of rendering the shard whole; XLA's count of the
    # chunked step alone (the model's piece + one chunk) is short of them.
    code, result, _ = compile_report(tmp_path, "chunks", "--config.render_chunk=4")
    whole, chunked = data_parallel[1]["train_step"], result["train_step"]
    assert code == 0 and chunked["render"]["chunks"] == 4 and whole["render"]["chunks"] == 1
    for key in ("bytes_accessed_per_chip", "xla_flops_per_chip"):
        assert chunked[key] == pytest.approx(whole[key], rel=0.02)
    xla_count = chunked["model_piece"]["bytes"] + chunked["render"]["counted"]["bytes"]
    assert xla_count < 0.99 * whole["bytes_accessed_per_chip"]


def test_a_share_of_nodes_the_batch_cannot_split_is_refused(capsys):
    assert cli.main(["compile", *ARGS, "--nodes", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--nodes 3" in err[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--topology", "v7-8"], "not a known target"),
        (["--config.mesh.fsdp=8", "--config.mesh.data=1"], "mesh"),
        (["--config.batch_size=66"], "batch_size=66"),
    ],
)
def test_bad_targets_and_unshardable_configs_exit_2(extra, message, capsys):
    assert cli.main(["compile", *ARGS, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_xla_out_of_memory_becomes_does_not_fit():
    error = RuntimeError(
        "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space "
        "hbm. Used 37.29G of 15.75G hbm. Exceeded hbm capacity by 21.54G. ... required for HLO "
        "temporaries (37.29G) exceeds available HBM (15.75G)"
    )
    need, have = report.out_of_memory(error)
    assert (need, have) == (37.29 * 2**30, 15.75 * 2**30)
    assert report.out_of_memory(ValueError("shapes differ")) is None
    line = report.fit_line({"total_bytes": need, "capacity_bytes": have, "fits": False})
    assert line.startswith("does not fit: 21.54 GiB over 15.75 GiB")


@pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu is not installed (.ci/run installs it)")
def test_step_compiled_for_two_tpu_slices(tmp_path, capsys):
    # Two v5p slices of 4 chips: the smallest target with two slices and with SparseCores, so
    # one compile shows the step on TPUs, the slices' split and the render's SparseCore cost.
    from synth_jax.aot import topology
    from synth_jax.train import mesh as mesh_lib

    # Only the data axis crosses the slow link between slices: its first half is one slice.
    devices = topology.target_devices("2xv5p-8")
    mesh = mesh_lib.make_mesh({"data": -1, "fsdp": 2, "model": 1}, devices)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "model": 1}
    slices = np.vectorize(lambda d: d.slice_index)(mesh.devices)
    assert (slices[:2] == 0).all() and (slices[2:] == 1).all()
    code, result, text = compile_report(tmp_path, "2x", "--topology", "2xv5p-8")
    assert code == 0 and result["fits"] is True and result["chip"] == "TPU v5p"
    assert result["devices"] == 8 and result["train_step"]["roofline"]["step_s"] > 0
    assert largest_collective_operand(text) < (BATCH // 8) * SIZE * SIZE
    assert image_operands(text) == []
    # XLA's cost model charges the histogram's scatter-add on the SparseCore over a 4 KiB tile
    # per point (4,096 points per image here); the render is costed with the offload off.
    render = result["train_step"]["render"]
    charged = render["sparsecore"]["bytes"] / render["chunk"]
    assert charged > 4096 * 4096 and render["bytes"] / render["images"] < 0.2 * charged
    # an FSDP axis over both slices is refused, naming the key to change
    argv = ["compile", *ARGS, "--topology", "2xv5p-8", "--config.mesh.data=1"]
    assert cli.main([*argv, "--config.mesh.fsdp=-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mesh.data=1" in err[0]


@pytest.mark.skipif(not HAS_LIBTPU, reason="libtpu is not installed (.ci/run installs it)")
def test_onepfrac_render_on_a_v5p_costs_below_100_mb_per_image():
    # onepfrac_vit_tiny.py's images (224 px, 100k points) at batch 64 on a v5p-8: 16 per chip,
    # costed here one image per chunk (the report's render piece; chunks change the bytes per
    # image by ~10%). With the scatter-add on the SparseCore XLA's cost model charges ~830 MB
    # per image; with a gather of each step's maps the chaos game alone moved ~1.5 MB per
    # step (~180 MB per image over its 122 steps).
    from synth_jax.aot import topology
    from synth_jax.config import load_config

    config = load_config(os.path.join(os.path.dirname(CONFIG), "onepfrac_vit_tiny.py"))
    source = compile_step.shaped_dataset(config.data)
    device = topology.target_devices("v5p-8")[0]
    piece = render_cost.render_piece(source, 1, 64 // 4, device)
    assert piece["images"] == 16 and piece["sparsecore"]["bytes"] > 500e6
    assert piece["bytes"] / piece["images"] < 100e6
    chaos = piece["chaos_game"]
    assert (chaos["burn_in"], chaos["steps"]) == (24, 98) and chaos["step_bytes"] < 0.6e6

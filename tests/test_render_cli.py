"""`synth-jax render`: a labelled grid, and one-line errors (exit 2) that name the bad key."""

import json

import pytest
from PIL import Image

from synth_jax import cli
from synth_jax.fractals import FAMILIES
from synth_jax.fractals.preview import render_previews

SMALL = (
    "--config.num_classes=4 --config.image_size=32 --config.points=2048 "
    "--config.chains=128 --config.burn_in=16 --config.pad=2"
).split()


def test_render_writes_a_labelled_grid(tmp_path, capsys):
    out = tmp_path / "grid.png"
    argv = ["render", "--config", "configs/data/sigma_random.py", *SMALL, "--num", "6"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 6 and summary["classes_shown"] == 4
    assert summary["degenerate"] == 0
    grid = Image.open(out)
    assert grid.width >= 3 * 32 and grid.height >= 2 * (32 + 12)  # 3 x 2 cells with captions


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--config.image_size=1000"], "image_size"),
        (["--config.colour=purple"], "colour"),
        (["--config.no_such_key=1"], "no_such_key"),
        (["--config.points=many"], "points"),
        (["--num", "0"], "--num"),
        (["--out", "grid.jpg"], "--out"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle, capsys, tmp_path):
    argv = ["render", "--config", "configs/data/sigma_random.py", *SMALL]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "g.png")]
    assert cli.main(argv + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("synth-jax render: error:") and needle in err[0]
    assert not (tmp_path / "g.png").exists()


def test_missing_config_file_is_refused(capsys, tmp_path):
    assert cli.main(["render", "--config", "configs/data/nope.py", "--out", "x.png"]) == 2
    assert "nope.py" in capsys.readouterr().err


def test_render_previews_one_grid_per_family(tmp_path):
    paths = render_previews(str(tmp_path), num=4, image_size=32)
    names = [p.rsplit("/", 1)[1] for p in paths]
    assert names == [f"{family}.png" for family in FAMILIES]
    assert {
        "fractaldb.png",
        "sigma.png",
        "onepfrac.png",
        "one_image.png",
        "multi_instance.png",
        "ofdb.png",
        "mixture.png",
        "visualatom.png",
        "rcdb.png",
        "dead_leaves.png",
        "spectrum.png",
    } <= set(names)
    for p in paths:
        with Image.open(p) as im:
            assert im.size == (2 * 34, 2 * (32 + 12 + 2))

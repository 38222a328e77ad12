"""Every experiment and sweep config loads, expands into cells and passes the trainers' checks."""

from __future__ import annotations

import glob
import os

import pytest

from synth_jax.config import load_config_file
from synth_jax.errors import UsageError
from synth_jax.experiments import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# protocol_search.py and demo.py are not sweeps: `synth-jax protocol-search` and `synth-jax demo`
# run them in memory (below)
NOT_SWEEPS = {"protocol_search.py", "demo.py"}
CONFIGS = sorted(
    path
    for path in glob.glob(os.path.join(ROOT, "configs", "experiments", "*.py"))
    if os.path.basename(path) not in NOT_SWEEPS
)


def specs():
    for path in CONFIGS:
        for variant in ["", ":mini"]:
            yield pytest.param(path + variant, id=os.path.relpath(path, ROOT) + variant)


def test_the_experiment_configs_exist():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {
        "scaling_backwards.py",
        "delta_sweep.py",
        "sigma_sweep.py",
        "synthetic_scaling_law.py",
        "fewshot_vs_full.py",
        "bridged.py",
    } <= names


@pytest.mark.parametrize("spec", list(specs()))
def test_config_expands_and_every_cell_passes_the_trainer_checks(spec):
    config = load_config_file(spec)
    cells = sweep.validate(config)
    sweep.check_cells(cells)
    assert len({c.cell_id for c in cells}) == len(cells)
    assert any(c.scratch for c in cells)  # every experiment compares with scratch
    doc = load_module_doc(spec.partition(":")[0])
    assert "synth-jax " in doc and "--workdir" in doc  # the command to run it
    assert "GPU" in doc or "CPU" in doc  # the hardware


def load_module_doc(path: str) -> str:
    import ast

    with open(path) as f:
        return ast.get_docstring(ast.parse(f.read())) or ""


def test_published_numbers_are_in_the_docstrings():
    docs = {os.path.basename(p): load_module_doc(p) for p in CONFIGS}
    assert "84.2" in docs["scaling_backwards.py"] and "64.2" in docs["scaling_backwards.py"]
    assert "19.9" in docs["delta_sweep.py"] and "83.4" in docs["delta_sweep.py"]
    assert "81.3" in docs["sigma_sweep.py"]
    assert "0.48" in docs["synthetic_scaling_law.py"]
    assert "91.6" in docs["bridged.py"]


def test_sweep_axes_reach_the_resolved_configs():
    cells = sweep.validate(
        load_config_file(os.path.join(ROOT, "configs", "experiments", "delta_sweep.py:mini"))
    )
    deltas = sorted(c.pretrain.data.delta for c in cells if not c.scratch)
    assert deltas == [0.001, 0.01, 0.05, 0.1, 0.2]
    backwards = sweep.validate(
        load_config_file(os.path.join(ROOT, "configs", "experiments", "scaling_backwards.py"))
    )
    families = sorted(c.pretrain.data.family for c in backwards if not c.scratch)
    assert families == ["fractaldb", "onepfrac"]
    fdb = next(c for c in backwards if not c.scratch and c.pretrain.data.family == "fractaldb")
    assert fdb.pretrain.total_epochs == 300.0  # FractalDB keeps its own recipe


def test_a_bad_value_in_any_cell_stops_the_sweep_before_training(tmp_path):
    config = load_config_file(os.path.join(ROOT, "configs", "experiments", "delta_sweep.py:mini"))
    config.axes = [{"finetune.mode": ["full", "fewshot"]}]  # fewshot without shots
    with pytest.raises(UsageError, match="shots"):
        sweep.run(config, str(tmp_path / "sweep"))
    assert not os.path.exists(tmp_path / "sweep" / "results.csv")


@pytest.mark.parametrize(
    "name",
    [
        "protocol_search.py",
        "protocol_search.py:quick",
        "protocol_search.py:wide",
        "demo.py",
        "demo.py:quick",
    ],
)
def test_the_protocol_configs_load_and_pair_every_cell_with_scratch(name):
    from synth_jax.experiments import protocol

    path, _, variant = name.partition(":")
    path = os.path.join(ROOT, "configs", "experiments", path)
    variant = ":" + variant if variant else ""
    config = load_config_file(path + variant)
    protocol.recipe_of(config.recipe)
    cells = protocol.cells(config)
    assert len({c["cell"] for c in cells}) == len(cells)
    for cell in cells:  # every cell has the scratch cell of its mode and k to pair with
        assert protocol.cell_id("scratch", 0, cell["mode"], cell["shots"]) in {
            c["cell"] for c in cells
        }
    assert "digits_0_4" in config.sources  # the positive control
    doc = load_module_doc(path)
    verb = "demo" if name.startswith("demo") else "protocol-search"
    assert f"synth-jax {verb}" in doc and "--workdir" in doc and "CPU" in doc

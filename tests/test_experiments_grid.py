"""Sweep grids and bookkeeping, with fake pre-training and fine-tuning runners (no JAX)."""

from __future__ import annotations

import csv
import io
import json
import os

import ml_collections
import pytest

from synth_jax.config import load_config_file
from synth_jax.errors import UsageError
from synth_jax.experiments import grid, sweep

COLUMNS = ["run_id", "pretrain_images", "model", "seed", "top1", "top1_error", "workdir"]


def sweep_config(sizes=(4, 16, 64), seeds=(0, 1), scratch=True):
    config = ml_collections.ConfigDict()
    config.name = "fake"
    config.pretrain = ml_collections.ConfigDict(
        {"data": {"family": "onepfrac", "num_classes": 4}, "steps": 6, "model": {"name": "Ti/4"}}
    )
    config.finetune = ml_collections.ConfigDict(
        {"seed": 0, "steps": 5, "init_from": "", "results_csv": "", "dataset": "digits"}
    )
    config.axes = [{"pretrain.data.num_classes": list(sizes)}, {"finetune.seed": list(seeds)}]
    config.scratch = scratch
    return config


class FakeRuns:
    """Stand-ins for pretrain.run / finetune.run with the same resume contract: progress lives in
    the workdir, a run continues from it, and a finished fine-tuning appends its results row.
    `crash_at` = (workdir basename prefix, step) raises KeyboardInterrupt there once."""

    def __init__(self, crash_at=None):
        self.calls: list[tuple[str, str, int]] = []  # (stage, workdir basename, start step)
        self.crash_at = crash_at

    def _steps(self, stage, config, workdir):
        os.makedirs(workdir, exist_ok=True)
        progress = os.path.join(workdir, "progress")
        start = int(open(progress).read()) if os.path.exists(progress) else 0
        self.calls.append((stage, os.path.basename(workdir), start))
        for step in range(start, config.steps):
            if self.crash_at and os.path.basename(workdir).startswith(self.crash_at[0]):
                if step == self.crash_at[1]:
                    self.crash_at = None
                    raise KeyboardInterrupt
            with open(progress, "w") as f:
                f.write(str(step + 1))

    def pretrain(self, config, workdir):
        self._steps("pretrain", config, workdir)
        with open(os.path.join(workdir, "summary.json"), "w") as f:
            json.dump({"steps": config.steps}, f)
        return {"steps": config.steps}

    def finetune(self, config, workdir):
        self._steps("finetune", config, workdir)
        images = 0
        if config.init_from:
            # a real fine-tuning reads this from the checkpoint's config
            images = int(
                os.path.basename(config.init_from).split("-")[0].removeprefix("num_classes")
            )
        row = {
            "run_id": os.path.basename(workdir),
            "pretrain_images": images,
            "model": "Ti/4",
            "seed": config.seed,
            "top1": 0.5,
            "top1_error": 0.5,
            "workdir": workdir,
        }
        new = not os.path.exists(config.results_csv)
        with open(config.results_csv, "a", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        return row


def run(config, workdir, fakes, shard=(0, 1)):
    return sweep.run(
        config,
        str(workdir),
        shard=shard,
        pretrain_fn=fakes.pretrain,
        finetune_fn=fakes.finetune,
        report=False,
        out=io.StringIO(),
    )


def test_expand_crosses_axes_shares_pretraining_and_adds_one_scratch_cell_per_setting():
    cells = grid.expand(sweep_config())
    pretrained = [c for c in cells if not c.scratch]
    scratch = [c for c in cells if c.scratch]
    assert len(pretrained) == 3 * 2
    assert len(scratch) == 2  # one per fine-tuning seed, not one per pre-training size
    assert len({c.cell_id for c in cells}) == len(cells)
    assert len({c.pretrain_id for c in pretrained}) == 3  # seeds share the pre-training
    sizes = sorted({c.pretrain.data.num_classes for c in pretrained})
    assert sizes == [4, 16, 64]
    assert {c.finetune.seed for c in scratch} == {0, 1}
    # the base config is untouched; each cell has its own resolved copy
    assert sweep_config().pretrain.data.num_classes == 4


def test_ids_are_stable_and_follow_the_resolved_config():
    a = [c.cell_id for c in grid.expand(sweep_config())]
    b = [c.cell_id for c in grid.expand(sweep_config())]
    assert a == b
    assert a[0].startswith("num_classes4_seed0-")
    changed = sweep_config()
    changed.pretrain.steps = 7  # a different recipe must not reuse the old runs
    c = [cell.cell_id for cell in grid.expand(changed)]
    assert not set(a[:1]) & set(c)


def test_coupled_keys_vary_together():
    config = sweep_config()
    config.axes = [{"pretrain.model.name": ["Ti/4", "S/4"], "pretrain.steps": [6, 12]}]
    config.scratch = False
    cells = grid.expand(config)
    assert [(c.pretrain.model.name, c.pretrain.steps) for c in cells] == [("Ti/4", 6), ("S/4", 12)]


@pytest.mark.parametrize(
    "axes, message",
    [
        ([{"pretrain.data.nope": [1]}], "pretrain.data.nope is not a key"),
        ([{"model.name": ["x"]}], "must start with 'pretrain.' or 'finetune.'"),
        ([{"pretrain.steps": [1, 2], "finetune.steps": [1]}], "need one length"),
        ([{"pretrain.steps": []}], "non-empty list"),
        ("pretrain.steps", "must be a list"),
    ],
)
def test_bad_axes_are_usage_errors_naming_the_key(axes, message):
    config = sweep_config()
    with config.ignore_type():
        config.axes = axes
    with pytest.raises(UsageError, match=message):
        grid.expand(config)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shards_partition_the_cells_and_keep_pretrainings_together(n):
    cells = grid.expand(sweep_config(sizes=(4, 8, 16, 32, 64), seeds=(0, 1, 2)))
    parts = [grid.shard_cells(cells, (i, n)) for i in range(n)]
    ids = [c.cell_id for part in parts for c in part]
    assert sorted(ids) == sorted(c.cell_id for c in cells)  # every cell exactly once
    owners: dict[str, set[int]] = {}
    for i, part in enumerate(parts):
        for c in part:
            if c.pretrain_id:
                owners.setdefault(c.pretrain_id, set()).add(i)
    assert all(len(o) == 1 for o in owners.values())
    if n > 1:
        assert all(parts), "every shard gets work when there are enough groups"


@pytest.mark.parametrize("text", ["1/1", "2/2", "a/b", "0", "-1/3", "0/0"])
def test_parse_shard_rejects_bad_values(text):
    with pytest.raises(UsageError, match="--shard"):
        grid.parse_shard(text)


def test_parse_shard():
    assert grid.parse_shard(None) == (0, 1)
    assert grid.parse_shard("2/4") == (2, 4)


def test_sweep_runs_each_pretraining_once_and_appends_one_row_per_cell(tmp_path):
    fakes = FakeRuns()
    result = run(sweep_config(), tmp_path, fakes)
    assert len(result["ran"]) == 8 and result["skipped"] == []
    stages = [stage for stage, _, _ in fakes.calls]
    assert stages.count("pretrain") == 3 and stages.count("finetune") == 8
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert sorted(os.path.basename(r["workdir"]) for r in rows) == sorted(result["cells"])
    plan = json.load(open(tmp_path / "cells.json"))
    assert [c["cell_id"] for c in plan["cells"]] == result["cells"]
    # a re-run does nothing
    again = FakeRuns()
    result = run(sweep_config(), tmp_path, again)
    assert again.calls == [] and result["ran"] == [] and len(result["skipped"]) == 8


def test_interrupted_sweep_resumes_the_half_finished_cell_without_redoing_finished_ones(tmp_path):
    cells = grid.expand(sweep_config())
    victim = cells[3]  # a fine-tuning in the middle of the sweep
    fakes = FakeRuns(crash_at=(victim.cell_id, 2))
    with pytest.raises(KeyboardInterrupt):
        run(sweep_config(), tmp_path, fakes)
    finished_before = sweep.finished_cells(str(tmp_path), cells)
    assert finished_before == {c.cell_id for c in cells[:3]}

    resumed = FakeRuns()
    result = run(sweep_config(), tmp_path, resumed)
    assert set(result["skipped"]) == finished_before
    assert set(result["ran"]) == {c.cell_id for c in cells[3:]}
    finetunes = [(name, start) for stage, name, start in resumed.calls if stage == "finetune"]
    assert finetunes[0] == (victim.cell_id, 2)  # resumed mid-cell, from its own progress
    assert all(name not in finished_before for name, _ in finetunes)
    # the pre-training the victim used was finished: reused, not re-run
    pretrains = [name for stage, name, _ in resumed.calls if stage == "pretrain"]
    assert victim.pretrain_id not in pretrains
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == len(cells)  # no duplicate rows


def test_interrupted_pretraining_resumes_from_its_progress(tmp_path):
    cells = grid.expand(sweep_config())
    fakes = FakeRuns(crash_at=(cells[0].pretrain_id, 4))
    with pytest.raises(KeyboardInterrupt):
        run(sweep_config(), tmp_path, fakes)
    resumed = FakeRuns()
    run(sweep_config(), tmp_path, resumed)
    assert resumed.calls[0] == ("pretrain", cells[0].pretrain_id, 4)


def test_shards_together_run_every_cell_once(tmp_path):
    fakes = FakeRuns()
    results = [run(sweep_config(), tmp_path, fakes, shard=(i, 3)) for i in range(3)]
    ran = [cell for r in results for cell in r["ran"]]
    assert sorted(ran) == sorted(results[0]["cells"])


def test_finetune_config_points_at_the_pretraining_and_the_results_table(tmp_path):
    cells = grid.expand(sweep_config())
    pretrained, scratch = cells[0], next(c for c in cells if c.scratch)
    config = sweep.cell_finetune_config(pretrained, str(tmp_path))
    assert config.init_from == os.path.join(str(tmp_path), "pretrain", pretrained.pretrain_id)
    assert config.results_csv == os.path.join(str(tmp_path), "results.csv")
    assert sweep.cell_finetune_config(scratch, str(tmp_path)).init_from == ""


def test_sweep_config_with_unknown_keys_is_rejected(tmp_path):
    config = sweep_config()
    config.lawz = {}
    with pytest.raises(UsageError, match="lawz"):
        sweep.validate(config)


def test_rows_of_seed_folders_belong_to_their_cell_and_a_cell_needs_all_its_seeds(tmp_path):
    assert grid.cell_id_of_run("/r/sweep/finetune/abc-1234") == "abc-1234"
    assert grid.cell_id_of_run("/r/sweep/finetune/abc-1234/seed_2") == "abc-1234"
    assert grid.cell_id_of_run("/r/elsewhere/run") is None
    config = sweep_config(sizes=(4,), seeds=(0,), scratch=False)
    config.finetune.seeds = (0, 1)
    (cell,) = grid.expand(config)
    _, run_dir = grid.cell_dirs(str(tmp_path), cell)
    table = tmp_path / "results.csv"
    table.write_text(f"workdir\n{run_dir}/seed_0\n")
    assert sweep.finished_cells(str(tmp_path), [cell]) == set()
    with open(table, "a") as f:
        f.write(f"{run_dir}/seed_1\n")
    assert sweep.finished_cells(str(tmp_path), [cell]) == {cell.cell_id}


def test_a_preempted_finetuning_stops_the_sweep_for_a_later_resume(tmp_path):
    fakes = FakeRuns()
    result = sweep.run(
        sweep_config(),
        str(tmp_path),
        pretrain_fn=fakes.pretrain,
        finetune_fn=lambda config, workdir: {"status": "preempted"},
        report=False,
        out=io.StringIO(),
    )
    assert result["preempted"] and result["ran"] == []
    assert [stage for stage, _, _ in fakes.calls] == ["pretrain"]


def test_a_missing_finetune_dataset_stops_the_sweep_before_any_pretraining(tmp_path, capsys):
    config = load_config_file("configs/experiments/delta_sweep.py:mini")
    config.finetune.data.data_dir = str(tmp_path / "no_datasets_here")
    workdir = tmp_path / "sweep"
    with pytest.raises(UsageError, match="finetune.data.train_split: .*fashion_mnist"):
        sweep.run(config, str(workdir))
    assert not (workdir / "pretrain").exists() and not (workdir / "finetune").exists()

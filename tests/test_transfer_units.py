"""Few-shot and fraction sampling, the results table, metrics and the linear-probe solver."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from synth_jax.errors import UsageError
from synth_jax.evaluators import classification, inference
from synth_jax.models import vit
from synth_jax.transfer import fewshot, linear_probe, results


def test_k_per_class_is_exact_without_repeats_and_reproducible():
    labels = np.random.default_rng(0).integers(0, 7, 500)
    for k in (1, 5, 20):
        idx = fewshot.k_per_class(labels, k, seed=3)
        assert len(idx) == len(set(idx.tolist())) == 7 * k
        np.testing.assert_array_equal(np.bincount(labels[idx], minlength=7), [k] * 7)
        np.testing.assert_array_equal(idx, fewshot.k_per_class(labels, k, seed=3))
    assert not np.array_equal(fewshot.k_per_class(labels, 5, 0), fewshot.k_per_class(labels, 5, 1))
    small = np.array([0, 0, 0, 1, 1])
    with pytest.raises(UsageError, match="class 1 has only 2"):
        fewshot.k_per_class(small, 3, 0)


def test_fraction_subset_is_stratified():
    labels = np.repeat(np.arange(4), [100, 50, 10, 1])
    idx = fewshot.fraction_subset(labels, 0.1, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[idx]), [10, 5, 1, 1])
    assert len(set(idx.tolist())) == len(idx)
    assert len(fewshot.fraction_subset(labels, 1.0, 0)) == len(labels)
    with pytest.raises(UsageError):
        fewshot.fraction_subset(labels, 0.0, 0)
    mean, std = fewshot.mean_std([0.5, 0.7])
    assert mean == pytest.approx(0.6) and std == pytest.approx(np.std([0.5, 0.7], ddof=1))


def test_metrics_match_brute_force():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(50, 8))
    labels = rng.integers(0, 8, 50)
    top = np.asarray(inference.top5_predictions(logits))
    m = classification.classification_metrics(top, labels, 8)
    ranks = np.argsort(-logits, axis=1)
    assert m["top1"] == pytest.approx(np.mean(ranks[:, 0] == labels))
    assert m["top5_error"] == pytest.approx(
        1 - np.mean([y in r[:5] for y, r in zip(labels, ranks)])
    )
    for c in range(8):
        sel = labels == c
        assert m["per_class"][c] == pytest.approx(np.mean(ranks[sel, 0] == c))
    halves = classification.class_counts(top[:20], labels[:20], 8) + classification.class_counts(
        top[20:], labels[20:], 8
    )
    assert classification.metrics_from_counts(halves)["top1"] == m["top1"]


def test_logistic_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n, d, c, strength = 300, 12, 4, 0.5
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(d, c)) + rng.normal(size=(n, c)), axis=1)
    w, b = linear_probe.fit_logistic_regression(x, y, c, l2=1 / (strength * n), steps=200)
    reference = LogisticRegression(C=strength, tol=1e-10, max_iter=10_000).fit(x, y)
    np.testing.assert_allclose(np.asarray(w), reference.coef_.T, atol=2e-3)
    # The unpenalised bias is defined up to a constant shift (softmax ignores it).
    b, ref_b = np.asarray(b), reference.intercept_
    np.testing.assert_allclose(b - b.mean(), ref_b - ref_b.mean(), atol=2e-3)


def test_results_table_appends_and_refuses_a_foreign_header(tmp_path):
    path = str(tmp_path / "results.csv")
    results.append_row(path, dict(run_id="a", **results.pretrain_info(None), top1=0.5))
    results.append_row(path, dict(run_id="b", pretrain_family="onepfrac", top1=0.6, shots=5))
    rows = results.read_rows(path)
    assert list(rows[0]) == list(results.COLUMNS)
    assert rows[0]["pretrain_family"] == "scratch" and rows[0]["pretrain_images"] == ""
    assert rows[1]["shots"] == "5" and rows[1]["fraction"] == ""
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n")
    with pytest.raises(UsageError, match="header"):
        results.append_row(str(other), dict(run_id="c"))


def test_a_table_from_before_pretrain_method_reads_and_gains_the_column(tmp_path):
    path = tmp_path / "results.csv"
    old = [dict(run_id="a", pretrain_family="fractaldb", top1="0.5", workdir="/runs/a")]
    old.append(dict(run_id="b", pretrain_family="scratch", top1="0.4", workdir="/runs/b"))
    path.write_text(
        ",".join(results.LEGACY_COLUMNS)
        + "\n"
        + "".join(",".join(r.get(c, "") for c in results.LEGACY_COLUMNS) + "\n" for r in old)
    )
    results.check_table(str(path))  # an old table is no foreign header
    assert [r["top1"] for r in results.read_rows(str(path))] == ["0.5", "0.4"]
    results.append_row(
        str(path),
        dict(
            run_id="c",
            pretrain_family="dead_leaves",
            pretrain_method="simclr",
            top1=0.6,
            workdir="/runs/c",
        ),
    )
    rows = results.read_rows(str(path))
    assert list(rows[0]) == list(results.COLUMNS)
    assert [(r["run_id"], r["pretrain_method"], r["top1"]) for r in rows] == [
        ("a", "supervised", "0.5"),
        ("b", "", "0.4"),
        ("c", "simclr", "0.6"),
    ]


_WRITER = """
import os, sys, time
from synth_jax.transfer import results
path, go, writer = sys.argv[1], sys.argv[2], int(sys.argv[3])
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(10):
    results.append_row(path, dict(workdir=f"/runs/w{writer}_{i}", seed=writer, top1=i / 10,
                                  timestamp="2026-11-30T00:00:00Z"))
"""


def test_concurrent_writers_create_and_append_every_row_once(tmp_path):
    """Sweep shards finishing at once: six processes, released together, create the table and
    append ten rows each; every row is there exactly once, under one header."""
    path, go = str(tmp_path / "results.csv"), str(tmp_path / "go")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, path, go, str(w)], env=env)
        for w in range(6)
    ]
    time.sleep(1.0)  # let every writer reach the start line
    open(go, "w").close()
    assert [w.wait(timeout=120) for w in writers] == [0] * 6
    rows = results.read_rows(path)
    assert sorted(r["workdir"] for r in rows) == sorted(
        f"/runs/w{w}_{i}" for w in range(6) for i in range(10)
    )
    with open(path) as f:
        assert f.read().count("pretrain_family") == 1  # one header


def test_a_row_is_appended_once_and_a_torn_last_row_is_dropped(tmp_path, capsys):
    path = str(tmp_path / "results.csv")
    row = dict(workdir="/runs/a", mode="full", seed=0, top1=0.5, timestamp="2026-11-30T00:00:00Z")
    assert results.append_row(path, row) is True
    assert results.append_row(path, row) is False  # a rerun after a crash: already there
    with open(path, "a") as f:
        f.write("scratch,,,,mu/4,fashion,full,,,1,0.4")  # a writer killed mid-row
    assert results.append_row(path, dict(row, workdir="/runs/b")) is True
    assert [r["workdir"] for r in results.read_rows(path)] == ["/runs/a", "/runs/b"]
    assert "dropped a partial last row" in capsys.readouterr().err


def test_a_complete_row_without_line_break_is_kept_and_an_open_quote_is_one_line(tmp_path):
    path = str(tmp_path / "results.csv")
    row = dict(workdir="/runs/a", mode="full", seed=0, top1=0.5, timestamp="2026-11-30T00:00:00Z")
    results.append_row(path, row)
    by_hand = ",".join(["mine", *[""] * (len(results.COLUMNS) - 3), "/runs/hand", "yesterday"])
    with open(path, "a") as f:
        f.write(by_hand)  # a complete row added by hand, its own timestamp, no line break
    assert results.append_row(path, dict(row, workdir="/runs/b")) is True
    assert [r["workdir"] for r in results.read_rows(path)] == ["/runs/a", "/runs/hand", "/runs/b"]
    # A quote left open would swallow every later row into one cell: refused, nothing appended.
    with open(path, "a") as f:
        f.write('"broken,' + "," * (len(results.COLUMNS) - 2) + "\n")
    with open(path, "rb") as f:
        before = f.read()
    for attempt in (
        lambda: results.check_table(path),
        lambda: results.append_row(path, dict(row, workdir="/runs/c")),
    ):
        with pytest.raises(UsageError, match=r"results\.csv: line \d+: .*quote"):
            attempt()
    with open(path, "rb") as f:
        assert f.read() == before


def test_a_results_csv_that_cannot_take_a_row_is_refused_before_training(tmp_path):
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "file").write_text("x")
    for path, needle in (
        (tmp_path / "folder.csv", "is a folder"),
        (tmp_path / "file" / "results.csv", "is a file"),
    ):
        with pytest.raises(UsageError, match=f"results_csv {path}: .*{needle}"):
            results.check_table(str(path))


def test_adapt_pretrained_lists_every_mismatch_and_resamples_posemb():
    model = {
        "embedding": {"kernel": np.zeros((4, 4, 3, 8))},
        "posemb": np.zeros((1, 64, 8)),
        "norm": {"scale": np.zeros(8)},
        "head": {"kernel": np.zeros((8, 10))},
    }
    loaded = {
        "embedding": {"kernel": np.zeros((8, 8, 3, 8))},
        "posemb": np.zeros((1, 16, 8)),
        "head": {"kernel": np.zeros((8, 5))},
    }
    with pytest.raises(UsageError) as info:
        vit.adapt_pretrained(model, loaded)
    message = str(info.value)
    assert "embedding/kernel (checkpoint (8, 8, 3, 8), model (4, 4, 3, 8))" in message
    assert "norm/scale (not in the checkpoint)" in message
    assert "posemb (" not in message and "head/" not in message
    loaded["embedding"]["kernel"] = np.zeros((4, 4, 3, 8))
    loaded["norm"] = {"scale": np.ones(8)}
    chosen = vit.adapt_pretrained(model, loaded)
    assert sorted(chosen) == ["embedding/kernel", "norm/scale", "posemb"]
    # a class token the model has no place for (cls-pooled file, gap-pooled model) is refused
    loaded["cls"] = np.zeros((1, 1, 8))
    with pytest.raises(UsageError, match=r"cls \(in the checkpoint, not in the model\)"):
        vit.adapt_pretrained(model, loaded)
    # a wrong model mismatches everything: the one line names a few and counts the rest
    many = {f"blocks/{i}": {"kernel": np.zeros(2)} for i in range(40)}
    with pytest.raises(UsageError, match=r"; and 34 more\. Use") as info:
        vit.adapt_pretrained(many, {})
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    "name", ["fashion_mnist", "cifar10", "cifar100", "fewshot", "linear_probe", "bridged"]
)
@pytest.mark.parametrize("arg", ["", ":cpu"])
def test_finetune_configs_pass_their_checks(name, arg):
    from synth_jax.config import load_config
    from synth_jax.transfer import finetune

    config = load_config(f"configs/finetune/{name}.py{arg}")
    finetune.check_config(config)
    assert config.results_csv and config.image_size > 0
    with pytest.raises(UsageError, match="mode"):
        finetune.check_config(load_config(f"configs/finetune/{name}.py{arg}", {"mode": "x"}))


def test_pretrain_info_of_a_weights_file_names_its_pretraining(tmp_path):
    outside = tmp_path / "vit_base_in21k.npz"
    assert results.pretrain_info(str(outside))["pretrain_family"] == "file:vit_base_in21k"
    exported = tmp_path / "export"
    exported.mkdir()
    sidecar = {"architecture": "vit_tiny_patch16_224"}
    sidecar["synth_jax"] = {"pretraining": {"family": "onepfrac", "num_classes": 1000}}
    (exported / "config.json").write_text(json.dumps(sidecar))
    info = results.pretrain_info(str(exported / "model.safetensors"))
    assert info["pretrain_family"] == "onepfrac" and info["pretrain_classes"] == 1000

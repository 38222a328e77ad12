"""Few-shot and fraction sampling, the results table, metrics and the linear-probe solver."""

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

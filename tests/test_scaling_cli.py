"""`synth-jax fit-law` end to end on a small results table, and its one-line errors."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from synth_jax import cli

COLUMNS = (
    "run_id,pretrain_family,pretrain_classes,pretrain_images,pretrain_images_seen,model,dataset,"
    "mode,fraction,shots,seed,top1,top1_error,top5_error,init_from,workdir,timestamp"
).split(",")
TRUTH = {"Ti/16": (2.0, 0.3, 0.3), "S/16": (1.5, 0.35, 0.2)}


def write_table(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Two models, 5 sizes x 2 seeds each (10 points per curve), plus a scratch row each."""
    rng = np.random.default_rng(0)
    rows = []
    for model, (d, alpha, c) in TRUTH.items():
        rows.append(
            dict(
                run_id=f"scratch-{model}",
                pretrain_family="scratch",
                model=model,
                dataset="cifar10",
                seed=0,
                top1_error=0.6,
            )
        )
        for n in np.geomspace(1e3, 1e6, 5):
            for seed in range(2):
                err = d * n**-alpha + c + 0.002 * rng.standard_normal()
                rows.append(
                    dict(
                        run_id=f"{model}-{n:.0f}-{seed}",
                        pretrain_family="fractaldb",
                        pretrain_images=int(n),
                        model=model,
                        dataset="cifar10",
                        seed=seed,
                        top1_error=err,
                    )
                )
    path = tmp_path_factory.mktemp("results") / "results.csv"
    write_table(path, rows)
    return str(path)


def test_fit_law_writes_one_fit_per_group_with_checks_plan_and_plot(table, tmp_path, capsys):
    out, plot = tmp_path / "fit.json", tmp_path / "fit.png"
    rc = cli.main(
        [
            "fit-law",
            table,
            "--law",
            "mikami",
            "--x",
            "pretrain_images",
            "--y",
            "top1_error",
            "--group",
            "model,dataset",
            "--bootstrap",
            "50",
            "--resample-within",
            "pretrain_images",
            "--holdout",
            "1",
            "--target",
            "0.25",
            "--out",
            str(out),
            "--plot",
            str(plot),
        ]
    )
    assert rc == 0
    fits = json.loads(out.read_text())
    assert [g["group"]["model"] for g in fits["groups"]] == list(TRUTH)
    for group in fits["groups"]:
        d, alpha, c = TRUTH[group["group"]["model"]]
        assert group["n_points"] == 10 and group["converged"]
        assert group["params"]["alpha"] == pytest.approx(alpha, abs=0.05)
        assert group["params"]["C"] == pytest.approx(c, abs=0.02)
        assert group["ci"]["C"][0] < group["params"]["C"] < group["ci"]["C"][1]
        assert group["scratch_error"] == 0.6
        assert "set aside" in group["notes"][0]
        assert group["extrapolation"]["heldout_log_rmse"] < 0.05
        assert set(group["plan"]) >= {"floor", "doubling", "size_needed", "reachable"}
    # Ti/16's floor (0.3) is above the target: unreachable; S/16 reaches it
    ti, s = fits["groups"]
    assert ti["plan"]["reachable"] is False and s["plan"]["reachable"] is True
    assert "UNREACHABLE" in capsys.readouterr().out
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_fixing_a_parameter_from_the_command_line(table, tmp_path):
    out = tmp_path / "fit.json"
    assert (
        cli.main(
            [
                "fit-law",
                table,
                "--group",
                "model",
                "--fix",
                "D=0.48",
                "--bounds",
                "alpha=0.1:1.5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    for group in json.loads(out.read_text())["groups"]:
        assert group["params"]["D"] == 0.48 and group["fixed"] == {"D": 0.48}
        assert 0.1 <= group["params"]["alpha"] <= 1.5


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--x", "pretrain_imgs"], "no column(s) 'pretrain_imgs'"),
        (["--law", "kaplan"], "unknown law 'kaplan'"),
        (["--fix", "beta=1"], "no parameter 'beta'"),
        (["--bounds", "alpha=1"], "expected NAME=LO:HI"),
        (["--x", "pretrain_images", "fraction"], "takes 1 input column"),
        (["--plot", "fit.jpg"], ".png, .pdf or .svg"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(table, tmp_path, capsys, extra, message):
    out = tmp_path / "fit.json"
    rc = cli.main(["fit-law", table, "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("synth-jax fit-law: error: ") and message in err
    assert err.count("\n") == 1
    assert not out.exists() and os.listdir(tmp_path) == []


def test_bad_rows_name_the_line(tmp_path, capsys):
    rows = [
        dict(run_id=str(i), pretrain_family="fractaldb", pretrain_images=n, top1_error=0.5)
        for i, n in enumerate([1000, 2000, -5, 4000])
    ]
    path = tmp_path / "bad.csv"
    write_table(path, rows)
    out = tmp_path / "fit.json"
    assert cli.main(["fit-law", str(path), "--out", str(out)]) == 2
    assert "line 4: column 'pretrain_images' is '-5'" in capsys.readouterr().err
    assert not out.exists()


def test_too_few_points_for_the_free_parameters(tmp_path, capsys):
    rows = [
        dict(run_id=str(i), pretrain_family="fractaldb", pretrain_images=n, top1_error=e)
        for i, (n, e) in enumerate([(1000, 0.5), (2000, 0.45)])
    ]
    path = tmp_path / "short.csv"
    write_table(path, rows)
    out = tmp_path / "fit.json"
    assert cli.main(["fit-law", str(path), "--out", str(out)]) == 2
    assert "cannot determine 3 free parameters" in capsys.readouterr().err
    assert not out.exists()


def test_installed_command_exits_2_with_one_line(table, tmp_path):
    out = tmp_path / "fit.json"
    proc = subprocess.run(
        [sys.executable, "-m", "synth_jax", "fit-law", table, "--y", "top9", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no column(s) 'top9'" in proc.stderr
    assert not out.exists()


def test_bench_fit_prints_json_with_speed_and_agreement(capsys):
    from synth_jax import bench

    argv = ["fit", "--replicates", "4", "--scipy-replicates", "1", "--repeats", "1"]
    assert bench.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scipy_projected"] is True and report["scipy_replicates_run"] == 1
    assert report["jax_vs_scipy"]["no_worse_than_scipy"] == 1.0
    assert report["jax_full_vs_scipy"]["max_rel_diff"] < 1e-9
    assert report["jax_s"] > 0 and report["speedup_vs_scipy"] > 0


def test_one_row_per_size_gets_residual_intervals_that_say_so(tmp_path, capsys):
    # --resample-within on a table with one run per size: case resampling
    # within sizes would keep every point in every replicate (zero-width "95%" intervals)
    rng = np.random.default_rng(1)
    rows = [
        dict(run_id=str(i), pretrain_family="onepfrac", pretrain_images=int(n), top1_error=e)
        for i, (n, e) in enumerate(
            (n, 2.0 * n**-0.3 + 0.2 + 0.003 * rng.standard_normal())
            for n in np.geomspace(1e3, 1e6, 6)
        )
    ]
    path = tmp_path / "one_per_size.csv"
    write_table(path, rows)
    out = tmp_path / "fit.json"
    argv = ["fit-law", str(path), "--group", "", "--bootstrap", "100", "--out", str(out)]
    assert cli.main([*argv, "--resample-within", "pretrain_images"]) == 0
    (group,) = json.loads(out.read_text())["groups"]
    for name in ("alpha", "C"):
        assert group["ci"][name][1] - group["ci"][name][0] > 1e-3
    assert group["bootstrap"]["method"] == "residual" and group["bootstrap"]["used"] >= 95
    assert "residuals resampled" in group["bootstrap"]["note"]
    assert group["ci_method"].startswith("95% expanded percentile intervals")
    assert "residual bootstrap" in capsys.readouterr().out
    # asking for case resampling within one-row sizes is refused, nothing written
    out.unlink()
    rc = cli.main([*argv, "--resample-within", "pretrain_images", "--bootstrap-method", "case"])
    assert rc == 2 and "zero-width" in capsys.readouterr().err and not out.exists()


def test_fit_json_compares_each_size_with_scratch_over_seeds(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for seed in range(4):
        rows.append(dict(run_id=f"s{seed}", pretrain_family="scratch", seed=seed, top1_error=0.3))
        for n in (100, 1000, 10000, 100000):
            err = 2.0 * n**-0.3 + 0.1 + 0.002 * rng.standard_normal()
            rows.append(
                dict(
                    run_id=f"{n}-{seed}",
                    pretrain_family="fractaldb",
                    pretrain_images=n,
                    seed=seed,
                    top1_error=err,
                )
            )
    path = tmp_path / "seeds.csv"
    write_table(path, rows)
    out = tmp_path / "fit.json"
    assert cli.main(["fit-law", str(path), "--group", "", "--out", str(out)]) == 0
    (group,) = json.loads(out.read_text())["groups"]
    comparison = group["comparison_with_scratch"]
    assert [d["size"] for d in comparison["per_size"]] == [100, 1000, 10000, 100000]
    assert all(d["pairs"] == 4 for d in comparison["per_size"])
    best = comparison["best"]
    truth = 2.0 * 100000**-0.3 + 0.1 - 0.3
    assert best["size"] == 100000 and best["comparisons"] == 4
    assert best["ci"][0] < truth < best["ci"][1] and best["verdict"] == "lower"
    assert "Bonferroni" in best["method"]


def test_a_row_whose_pretraining_did_not_finish_is_an_error_naming_it(tmp_path, capsys):
    rows = [
        dict(run_id=f"r{n}", pretrain_family="onepfrac", pretrain_images=n, top1_error=0.3)
        for n in (100, 1000, 10000)
    ]
    rows.append(dict(run_id="scratch", pretrain_family="scratch", top1_error=0.35))
    # fine-tuned from a pre-training that had written no summary yet: no size
    rows.append(
        dict(run_id="early", pretrain_family="onepfrac", top1_error=0.6, init_from="/runs/p")
    )
    path = tmp_path / "unfinished.csv"
    write_table(path, rows)
    out = tmp_path / "fit.json"
    assert cli.main(["fit-law", str(path), "--group", "", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "line 6: run early was fine-tuned from a onepfrac pre-training that had not" in err
    assert not out.exists()


def test_the_default_grouping_fits_a_table_of_two_columns(tmp_path, capsys):
    # no --group: a table with only sizes and errors is one curve
    path = tmp_path / "T.csv"
    n = np.geomspace(1e3, 1e6, 6)
    rows = [f"{a:.0f},{2.0 * a**-0.3 + 0.2 + 0.002 * (-1) ** i:.6f}" for i, a in enumerate(n)]
    path.write_text("n,err\n" + "\n".join(rows) + "\n")
    out = tmp_path / "o.json"
    argv = ["fit-law", str(path), "--law", "mikami", "--x", "n", "--y", "err", "--out", str(out)]
    assert cli.main(argv) == 0
    fits = json.loads(out.read_text())
    assert fits["group_by"] == [] and len(fits["groups"]) == 1
    assert fits["groups"][0]["params"]["C"] == pytest.approx(0.2, abs=0.05)
    assert f"wrote {out}" in capsys.readouterr().out


def test_a_results_table_without_group_is_grouped_by_the_default_columns(table, tmp_path):
    out = tmp_path / "fit.json"
    assert cli.main(["fit-law", table, "--bootstrap", "20", "--out", str(out)]) == 0
    fits = json.loads(out.read_text())
    assert fits["group_by"] == ["model", "dataset", "mode"]
    assert [g["group"]["model"] for g in fits["groups"]] == list(TRUTH)


def test_errors_in_percent_are_fitted_as_rates_with_y_scale_percent(tmp_path):
    n = np.geomspace(1e3, 1e6, 6)
    rows = [
        dict(run_id=str(i), pretrain_family="fractaldb", pretrain_images=int(a), top1_error=e)
        for i, (a, e) in enumerate(zip(n, 100 * (2.0 * n**-0.3 + 0.2)))
    ]
    path = tmp_path / "percent.csv"
    write_table(path, rows)
    out = tmp_path / "fit.json"
    argv = ["fit-law", str(path), "--y-scale", "percent", "--target", "25", "--out", str(out)]
    assert cli.main(argv) == 0
    fits = json.loads(out.read_text())
    (group,) = fits["groups"]
    assert fits["y_scale"] == "percent"
    assert group["params"]["C"] == pytest.approx(0.2, abs=1e-4)
    assert group["plan"]["target"] == pytest.approx(0.25)

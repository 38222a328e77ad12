import json

from synth_jax.bench import render, suite


def test_ceilings_are_measured_and_positive():
    c = suite.measure_ceilings(quick=True)
    assert c["bf16_matmul_tflops"] > 0 and c["copy_gb_per_s"] > 0
    assert c["device"].startswith("cpu")


def test_a_failing_benchmark_is_reported_not_raised():
    result = suite.run_bench("render", ["--size", "9"], timeout_s=120)
    assert "error" in result and "exit 2" in result["error"] and "--size" in result["error"]


def test_table_reads_results_against_the_ceilings():
    results = {
        "date": "2026-11-22",
        "command": "synth-jax bench suite",
        "ceilings": {
            "device": "gpu:H100",
            "jax": "0.11",
            "matmul_n": 8192,
            "bf16_matmul_tflops": 700.0,
            "copy_bytes": 1 << 31,
            "copy_gb_per_s": 3000.0,
        },
        "render": [
            (
                suite.RENDER_FULL[1][0],
                {
                    "images_per_sec": 20000.0,
                    "points_per_sec": 4e9,
                    "reference_points_per_sec": 1.1e7,
                    "speedup_vs_reference": 363.6,
                },
            ),
            (suite.RENDER_FULL[0][0], {"error": "exit 1: out of memory"}),
        ],
        "train": [
            (
                "ViT-B/16 224px",
                {
                    "batch": 256,
                    "dtype": "bfloat16",
                    "images_per_s": 3000.0,
                    "images_per_s_fixed_batch": 3100.0,
                    "data_stall_ratio": 0.968,
                    "step_time_s": 0.0853,
                    "mfu": 0.41,
                },
            ),
        ],
    }
    text = suite.table(results)
    assert "700.0 TFLOP/s" in text
    assert "All 1M FractalDB-1k images (362 px, 200k points): 0.8 min." in text
    assert "error: exit 1: out of memory" in text
    assert "| 0.968 |" in text and "41.0%" in text


def test_family_render_bench_and_its_suite_rows(capsys):
    argv = [
        "--config",
        f"{suite.CONFIGS}/data/ofdb_1k.py",
        "--config.num_classes=2",
        "--config.image_size=32",
        "--config.points=2048",
        "--config.chains=128",
        "--config.pad=2",
        "--config.search_points=4096",
        "--config.search_size=64",
        "--config.fill_threshold=0.05",
        "--batch",
        "2",
        "--repeats",
        "1",
    ]
    assert render.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["family"] == "ofdb" and result["images_per_sec"] > 0 and result["size"] == 32
    results = {
        "date": "2026-11-30",
        "command": "synth-jax bench suite",
        "ceilings": {
            "device": "gpu:H200",
            "jax": "0.10.2",
            "matmul_n": 8192,
            "bf16_matmul_tflops": 700.0,
            "copy_bytes": 1 << 31,
            "copy_gb_per_s": 3000.0,
        },
        "render": [],
        "train": [],
        "families": [
            (suite.FAMILY_FULL[1][0], result),
            (suite.FAMILY_FULL[0][0], {"error": "exit 1: oom"}),
        ],
    }
    text = suite.table(results)
    assert f"| {suite.FAMILY_FULL[1][0]} | {result['images_per_sec']:,.1f} | 2 | 32 |" in text
    assert "error: exit 1: oom" in text

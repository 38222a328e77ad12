"""Bad input from a new user, through the real command line: each case must give exactly one
line on stderr that names the field or file, exit code 2, no traceback, and leave every file
as it was (nothing written, nothing overwritten).

Most cases run in-process (`synth_jax.cli.main`, the function behind the `synth-jax` script);
a few run as a subprocess too, to prove the exit code and that no progress output or escape
codes come before the error.
"""

from __future__ import annotations

import ast
import dataclasses
import glob
import hashlib
import io
import os
import pickle
import re
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from synth_jax import cli, files
from synth_jax.config import config_to_dict, load_config_file
from synth_jax.errors import UsageError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
CPU_TINY = os.path.join(CONFIGS, "pretrain", "cpu_tiny.py") + ":mu"
SIGMA = os.path.join(CONFIGS, "data", "sigma_random.py")
SMALL_SIGMA = (
    "--config.num_classes=4 --config.image_size=32 --config.points=2048 "
    "--config.chains=128 --config.burn_in=16 --config.pad=2"
).split()
TINY_BENCH = ["--size", "32", "--points", "256", "--repeats", "1", "--reference_points", "100"]
NAMES = ["zebra", "ant", "cat"]  # the tiny dataset's classes, deliberately not sorted


# ------------------------------------------------------------------ inputs the cases read


def _npz(path, train=24, test=6, channels=None, size=16, class_names=None):
    rng = np.random.default_rng(0)
    shape = (size, size) if channels is None else (size, size, channels)
    arrays = dict(
        train_images=rng.integers(0, 256, (train, *shape), dtype=np.uint8),
        train_labels=np.arange(train) % 3,
        test_images=rng.integers(0, 256, (test, *shape), dtype=np.uint8),
        test_labels=np.arange(test) % 3,
    )
    if class_names:
        arrays["class_names"] = np.array(class_names)
    np.savez(path, **arrays)


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.tobytes())


def truncated_npz(tmp):
    _npz(tmp / "whole.npz")
    data = (tmp / "whole.npz").read_bytes()
    (tmp / "cut.npz").write_bytes(data[: len(data) // 2])


def empty_split_npz(tmp):
    np.savez(
        tmp / "empty.npz",
        train_images=np.zeros((0, 16, 16), np.uint8),
        train_labels=np.zeros(0, np.int64),
        test_images=np.zeros((4, 16, 16), np.uint8),
        test_labels=np.arange(4) % 2,
    )


def idx_header_cut(tmp):
    folder = tmp / "mnist"
    folder.mkdir()
    _idx(folder / "train-images-idx3-ubyte", np.zeros((4, 8, 8), np.uint8))
    _idx(folder / "train-labels-idx1-ubyte", np.arange(4, dtype=np.uint8) % 2)
    _idx(folder / "t10k-images-idx3-ubyte", np.zeros((2, 8, 8), np.uint8))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0]))  # cut at 6 of 8


def cifar_without_data(tmp):
    folder = tmp / "cifar-10-batches-py"
    folder.mkdir()
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [b"a", b"b"]}, f)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"labels": [0, 1]}, f)


def a_file(name):
    def prepare(tmp):
        (tmp / name).write_text("not a folder\n")

    return prepare


def a_folder(name):
    def prepare(tmp):
        (tmp / name).mkdir()

    return prepare


def both(*prepares):
    def prepare(tmp):
        for p in prepares:
            p(tmp)

    return prepare


def nothing(tmp):
    del tmp


def symlink_loop(tmp):
    os.symlink(tmp / "loop2", tmp / "loop")
    os.symlink(tmp / "loop", tmp / "loop2")


def open_quote_table(tmp):
    from synth_jax.transfer import results

    header = ",".join(results.COLUMNS)
    (tmp / "r.csv").write_text(header + "\n" + '"a' + "," * (len(results.COLUMNS) - 1) + "\n")


def corrupt_checkpoint(tmp):
    """A pre-training workdir whose only checkpoint holds garbage."""
    state = tmp / "pre" / "checkpoints" / "4" / "state"
    state.mkdir(parents=True)
    (state / "_METADATA").write_text("garbage")


def results_table(rows=None, encoding="utf-8", header="pretrain_images,top1_error"):
    """A results table of pre-training sizes and errors (default: a curve that falls)."""
    rows = rows or [(1000 * 2**i, 0.5 * 2 ** (-0.3 * i) + 0.2) for i in range(6)]

    def prepare(tmp):
        lines = [header, *(",".join(map(str, r)) for r in rows)]
        (tmp / "results.csv").write_bytes(("\n".join(lines) + "\n").encode(encoding))

    return prepare


@pytest.fixture(scope="module")
def tiny_tfds(tmp_path_factory):
    """A tiny imported dataset whose classes have names (zebra, ant, cat, in that label order),
    and a fine-tuning config file that reads it: 2 steps of a tiny ViT from scratch."""
    root = tmp_path_factory.mktemp("tiny")
    _npz(root / "tiny.npz", class_names=NAMES)
    data_dir = str(root / "tfds")
    assert (
        cli.main(
            [
                "data",
                "import",
                "tiny_named",
                "--from",
                str(root / "tiny.npz"),
                "--data_dir",
                data_dir,
            ]
        )
        == 0
    )
    config = root / "finetune_tiny.py"
    config.write_text(
        "from synth_jax.models import model_config\n"
        "from synth_jax.transfer.finetune import finetune_config\n\n\n"
        "def get_config(arg=None):\n"
        "    config = finetune_config(image_size=32, batch_size=8, total_steps=2,\n"
        "                             eval_batch_size=8, log_every_steps=1,\n"
        "                             model=model_config('mu/4'))\n"
        f"    config.data.name, config.data.data_dir = 'tiny_named', {data_dir!r}\n"
        "    config.data.num_threads = 1\n"
        "    config.checkpoint.async_save = False\n"
        "    return config\n"
    )
    return dict(data_dir=data_dir, config=str(config))


# ------------------------------------------------------------------ the table


@dataclasses.dataclass
class Case:
    name: str
    argv: Callable  # (tmp_path, tiny_tfds) -> argv of `synth-jax`
    needle: str  # the field or file the one line must name
    prepare: Callable = nothing  # writes the inputs into tmp_path
    subprocess: bool = False  # also run it as `python -m synth_jax`


def _import(source):
    return lambda tmp, _: [
        "data",
        "import",
        "foo",
        "--from",
        str(tmp / source),
        "--data_dir",
        str(tmp / "tfds"),
    ]


CASES = [
    # data import
    Case("import_truncated_npz", _import("cut.npz"), "cut.npz", truncated_npz, subprocess=True),
    Case("import_npz_with_empty_split", _import("empty.npz"), "train_images", empty_split_npz),
    Case("import_idx_header_cut", _import("mnist"), "t10k-labels-idx1-ubyte", idx_header_cut),
    Case("import_cifar_without_data", _import("cifar-10-batches-py"), "'data'", cifar_without_data),
    Case(
        "import_data_dir_is_a_file",
        lambda tmp, _: [
            "data",
            "import",
            "foo",
            "--from",
            str(tmp / "whole.npz"),
            "--data_dir",
            str(tmp / "tfds"),
        ],
        "--data_dir",
        both(truncated_npz, a_file("tfds")),
    ),
    Case(
        "import_two_channel_images",
        _import("two.npz"),
        "channels",
        lambda tmp: _npz(tmp / "two.npz", channels=2),
    ),
    # config values on the command line
    Case(
        "total_steps_inf",
        lambda tmp, _: [
            "pretrain",
            "--config",
            CPU_TINY,
            "--workdir",
            str(tmp / "w"),
            "--config.total_steps=inf",
        ],
        "--config.total_steps",
    ),
    Case(
        "total_steps_nan",
        lambda tmp, _: [
            "pretrain",
            "--config",
            CPU_TINY,
            "--workdir",
            str(tmp / "w"),
            "--config.total_steps=nan",
        ],
        "--config.total_steps",
    ),
    Case(
        "render_chunk_not_a_divisor",
        lambda tmp, _: [
            "pretrain",
            "--config",
            CPU_TINY,
            "--workdir",
            str(tmp / "w"),
            "--config.render_chunk=5",
        ],
        "render_chunk=5",
    ),
    Case(
        "config_argument_in_capitals",
        lambda tmp, _: [
            "pretrain",
            "--config",
            os.path.join(CONFIGS, "pretrain", "real_supervised.py") + ":CPU",
            "--workdir",
            str(tmp / "w"),
        ],
        "known: cpu",
    ),
    Case(
        "train_split_not_a_split",
        lambda tmp, t: [
            "finetune",
            "--config",
            t["config"],
            "--workdir",
            str(tmp / "w"),
            "--config.data.train_split=train[abc]",
        ],
        "data.train_split",
    ),
    Case(
        "pretrain_workdir_is_a_file",
        lambda tmp, _: ["pretrain", "--config", CPU_TINY, "--workdir", str(tmp / "w")],
        "--workdir",
        a_file("w"),
    ),
    Case(
        "finetune_workdir_is_a_file",
        lambda tmp, t: ["finetune", "--config", t["config"], "--workdir", str(tmp / "w")],
        "--workdir",
        a_file("w"),
    ),
    # render
    Case(
        "render_seed_too_large",
        lambda tmp, _: [
            "render",
            "--config",
            SIGMA,
            *SMALL_SIGMA,
            "--num",
            "4",
            "--seed",
            "99999999999",
            "--out",
            str(tmp / "g.png"),
        ],
        "--seed",
    ),
    Case(
        "render_seed_too_large_no_progress_noise",
        lambda tmp, _: [
            "render",
            "--config",
            os.path.join(CONFIGS, "data", "fractaldb1k.py") + ":small",
            "--config.num_classes=4",
            "--num",
            "4",
            "--seed",
            "99999999999",
            "--out",
            str(tmp / "g.png"),
        ],
        "--seed",
        subprocess=True,
    ),
    Case(
        "render_out_is_a_folder",
        lambda tmp, _: [
            "render",
            "--config",
            SIGMA,
            *SMALL_SIGMA,
            "--num",
            "4",
            "--out",
            str(tmp / "grid.png"),
        ],
        "--out",
        a_folder("grid.png"),
    ),
    Case(
        "one_image_with_2_31_images",
        lambda tmp, _: [
            "render",
            "--config",
            os.path.join(CONFIGS, "data", "one_image.py"),
            "--config.images_per_category=2147484",
            "--num",
            "4",
            "--out",
            str(tmp / "g.png"),
        ],
        "images_per_category",
    ),
    # fit-law
    Case(
        "fit_law_out_is_a_folder",
        lambda tmp, _: [
            "fit-law",
            str(tmp / "results.csv"),
            "--out",
            str(tmp / "fit"),
            "--plot",
            str(tmp / "fit.png"),
        ],
        "--out",
        both(results_table(), a_folder("fit")),
    ),
    Case(
        "fit_law_fix_nan",
        lambda tmp, _: [
            "fit-law",
            str(tmp / "results.csv"),
            "--out",
            str(tmp / "fit.json"),
            "--fix",
            "D=nan",
        ],
        "--fix",
        results_table(),
    ),
    Case(
        "fit_law_row_shorter_than_header",
        lambda tmp, _: ["fit-law", str(tmp / "results.csv"), "--out", str(tmp / "fit.json")],
        "line 4",
        results_table(
            [
                (1000, 0.5, "fractaldb"),
                (2000, 0.4, "fractaldb"),
                (4000, 0.35),
                (8000, 0.3, "fractaldb"),
            ],
            header="pretrain_images,top1_error,pretrain_family",
        ),
    ),
    Case(
        "fit_law_not_utf8",
        lambda tmp, _: ["fit-law", str(tmp / "results.csv"), "--out", str(tmp / "fit.json")],
        "UTF-8",
        results_table([(1000, 0.5), (2000, "0.4 \u00e9")], encoding="latin-1"),
    ),
    Case(
        "fit_law_every_size_equal",
        lambda tmp, _: [
            "fit-law",
            str(tmp / "results.csv"),
            "--out",
            str(tmp / "fit.json"),
            "--target",
            "0.2",
        ],
        "'pretrain_images'",
        results_table([(1000, 0.5 + i / 100) for i in range(5)]),
    ),
    Case(
        "fit_law_negative_error",
        lambda tmp, _: ["fit-law", str(tmp / "results.csv"), "--out", str(tmp / "fit.json")],
        "line 3: column 'top1_error'",
        results_table([(1000, 0.5), (2000, -0.4), (4000, 0.3), (8000, 0.25)]),
    ),
    Case(
        "fit_law_errors_in_percent",
        lambda tmp, _: ["fit-law", str(tmp / "results.csv"), "--out", str(tmp / "fit.json")],
        "--y-scale percent",
        results_table([(1000 * 2**i, 50 * 2 ** (-0.3 * i) + 20) for i in range(6)]),
    ),
    *(
        Case(
            f"fit_law_target_{name}",
            lambda tmp, _, value=value: [
                "fit-law",
                str(tmp / "results.csv"),
                "--out",
                str(tmp / "fit.json"),
                "--target",
                value,
            ],
            "--target",
            results_table(),
        )
        for name, value in (("nan", "nan"), ("negative", "-0.1"), ("above_one", "20"))
    ),
    Case(
        "fit_law_fixed_and_bounded",
        lambda tmp, _: [
            "fit-law",
            str(tmp / "results.csv"),
            "--out",
            str(tmp / "fit.json"),
            "--fix",
            "alpha=3",
            "--bounds",
            "alpha=0.1:1.5",
        ],
        "--fix alpha=3 and --bounds alpha=0.1:1.5",
        results_table(),
    ),
    Case(
        "fit_law_duplicate_column",
        lambda tmp, _: ["fit-law", str(tmp / "results.csv"), "--out", str(tmp / "fit.json")],
        "column 'top1_error' appears 2 times",
        results_table(
            [(1000 * 2**i, 0.5 * 2 ** (-0.3 * i) + 0.2, 0.9) for i in range(6)],
            header="pretrain_images,top1_error,top1_error",
        ),
    ),
    Case(
        "fit_law_bootstrap_beyond_memory",
        lambda tmp, _: [
            "fit-law",
            str(tmp / "results.csv"),
            "--out",
            str(tmp / "fit.json"),
            "--bootstrap",
            "100000000",
        ],
        "bootstrap 100,000,000 refits",
        results_table(),
        subprocess=True,
    ),
    Case(
        "fit_law_out_is_the_table",
        lambda tmp, _: ["fit-law", str(tmp / "results.csv"), "--out", str(tmp / "results.csv")],
        "--out",
        results_table(),
    ),
    # workdirs, output paths, seeds, regexes, memory: refused before any work
    *(
        Case(
            f"pretrain_workdir_{name}",
            lambda tmp, _, sub=sub: ["pretrain", "--config", CPU_TINY, "--workdir", sub(tmp)],
            "--workdir",
            prepare,
        )
        for name, sub, prepare in (
            ("empty", lambda tmp: "", nothing),
            ("current_directory", lambda tmp: ".", nothing),
            ("name_too_long", lambda tmp: str(tmp / ("w" * 300)), nothing),
            ("symlink_loop", lambda tmp: str(tmp / "loop" / "w"), symlink_loop),
            ("under_a_file", lambda tmp: str(tmp / "f" / "w"), a_file("f")),
        )
    ),
    Case(
        "pretrain_batch_beyond_memory",
        lambda tmp, _: [
            "pretrain",
            "--config",
            CPU_TINY,
            "--workdir",
            str(tmp / "w"),
            "--config.batch_size=1099511627776",
        ],
        "batch_size=1099511627776",
    ),
    Case(
        "pretrain_points_beyond_memory",
        lambda tmp, _: [
            "pretrain",
            "--config",
            CPU_TINY,
            "--workdir",
            str(tmp / "w"),
            "--config.data.points=100000000000",
        ],
        "data.points",
    ),
    *(
        Case(
            f"finetune_{name}",
            lambda tmp, t, override=override: [
                "finetune",
                "--config",
                t["config"],
                "--workdir",
                str(tmp / "w"),
                override(tmp),
            ],
            needle,
            prepare,
        )
        for name, override, needle, prepare in (
            ("negative_seed", lambda tmp: "--config.seeds=[-3]", "seeds", nothing),
            ("repeated_seeds", lambda tmp: "--config.seeds=[1,1]", "seeds", nothing),
            ("bad_dont_load_regex", lambda tmp: "--config.dont_load=('[',)", "dont_load", nothing),
            (
                "results_csv_a_folder",
                lambda tmp: f"--config.results_csv={tmp / 'r.csv'}",
                "results_csv",
                a_folder("r.csv"),
            ),
            (
                "results_csv_under_a_file",
                lambda tmp: f"--config.results_csv={tmp / 'f' / 'r.csv'}",
                "results_csv",
                a_file("f"),
            ),
            (
                "results_csv_open_quote",
                lambda tmp: f"--config.results_csv={tmp / 'r.csv'}",
                "results_csv",
                open_quote_table,
            ),
            (
                "corrupt_init_from",
                lambda tmp: f"--config.init_from={tmp / 'pre'}",
                "cannot read this checkpoint",
                corrupt_checkpoint,
            ),
        )
    ),
    Case(
        "fit_law_negative_seed",
        lambda tmp, _: [
            "fit-law",
            str(tmp / "results.csv"),
            "--out",
            str(tmp / "fit.json"),
            "--seed",
            "-1",
        ],
        "--seed",
        results_table(),
    ),
    Case(
        "compile_out_is_a_folder",
        lambda tmp, _: ["compile", "--config", CPU_TINY, "--out", str(tmp / "r")],
        "--out",
        a_folder("r"),
    ),
    Case(
        "import_empty_class_folder",
        _import("folder"),
        "a class folder without images",
        lambda tmp: [
            (tmp / "folder" / s / c).mkdir(parents=True) for s in ("train", "test") for c in "ab"
        ],
    ),
    # bench
    Case(
        "bench_render_negative_batch",
        lambda tmp, _: ["bench", "render", *TINY_BENCH, "--batch", "-1"],
        "--batch",
        subprocess=True,
    ),
    Case(
        "bench_render_no_chains",
        lambda tmp, _: ["bench", "render", *TINY_BENCH, "--chains", "0"],
        "--chains",
    ),
]


def _snapshot(root) -> dict:
    """Every file and folder under `root`: its size and content hash (folders: None)."""
    out = {}
    for path, dirs, names in os.walk(root):
        for d in dirs:
            out[os.path.join(path, d)] = None
        for n in names:
            p = os.path.join(path, n)
            if os.path.islink(p):
                out[p] = os.readlink(p)
                continue
            with open(p, "rb") as f:
                out[p] = hashlib.sha1(f.read()).hexdigest()
    return out


def _check_one_line(code: int, err: str, needle: str, verb: str):
    assert "Traceback" not in err, err
    assert "\r" not in err and "\x1b" not in err, f"progress or escape codes: {err!r}"
    lines = err.strip("\n").splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"synth-jax {verb}: error:"), lines[0]
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys, tiny_tfds):
    case.prepare(tmp_path)
    before = _snapshot(tmp_path)
    argv = case.argv(tmp_path, tiny_tfds)
    code = cli.main(argv)
    _check_one_line(code, capsys.readouterr().err, case.needle, argv[0])
    assert _snapshot(tmp_path) == before


SUBPROCESS = [c for c in CASES if c.subprocess]


@pytest.mark.parametrize("case", SUBPROCESS, ids=[c.name for c in SUBPROCESS])
def test_bad_input_through_the_script(case, tmp_path, tiny_tfds):
    case.prepare(tmp_path)
    before = _snapshot(tmp_path)
    argv = case.argv(tmp_path, tiny_tfds)
    done = subprocess.run(
        [sys.executable, "-m", "synth_jax", *argv], capture_output=True, text=True, timeout=600
    )
    _check_one_line(done.returncode, done.stderr, case.needle, argv[0])
    assert done.stdout == ""
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------ bridged: names, not counts


def test_bridged_refuses_synthetic_classes_in_another_order(tmp_path, capsys, tiny_tfds):
    """Image folders sort by name (ant, cat, zebra) while the real labels are zebra, ant, cat:
    the same count, every label wrong. Refused before anything is imported or trained."""
    folder = tmp_path / "generated"
    for name in NAMES:
        (folder / "train" / name).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (16, 16), (i * 90, 0, 0)).save(folder / "train" / name / f"{i}.png")
    before = _snapshot(tmp_path)
    argv = [
        "finetune",
        "--config",
        tiny_tfds["config"],
        "--workdir",
        str(tmp_path / "w"),
        "--config.mode=bridged",
        f"--config.bridged.folder={folder}",
        "--config.bridged.total_steps=1",
    ]
    code = cli.main(argv)
    err = capsys.readouterr().err
    _check_one_line(code, err, "'ant'", "finetune")
    assert "'zebra'" in err
    assert _snapshot(tmp_path) == before


# ------------------------------------------------------------------ config arguments


def _config_files():
    return sorted(glob.glob(os.path.join(CONFIGS, "**", "*.py"), recursive=True))


@pytest.mark.parametrize("arg", ["nonsense", "CPU"])
@pytest.mark.parametrize("path", _config_files(), ids=lambda p: os.path.relpath(p, CONFIGS))
def test_every_config_refuses_an_unknown_argument(path, arg):
    with pytest.raises(UsageError) as raised:
        load_config_file(f"{path}:{arg}")
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert path in message and repr(arg) in message and "known: " in message


@pytest.mark.parametrize(
    "spec, key",
    [
        ("data/fractaldb1k.py:small", "num_classes"),
        ("data/one_image.py:flower", "photo"),
        ("data/onepfrac.py:additive", "perturbation"),
        ("data/sigma_random.py:rejection", "sigma_sampler"),
        ("data/sigma_random.py:af", "background"),
        ("pretrain/cpu_tiny.py:mu,knn", "evals"),
        ("pretrain/real_supervised.py:cpu", "batch_size"),
        ("pretrain/fractaldb1k_vit_tiny.py:short", "total_epochs"),
        ("finetune/cifar100.py:cpu", "batch_size"),
        ("experiments/delta_sweep.py:mini", "name"),
        ("data/mixture.py:multi", "components"),
        ("data/ofdb_1k.py:public_row", "first_weights_row"),
        ("data/ofdb_21k.py:public_row", "first_weights_row"),
        ("pretrain/ofdb_vit_tiny.py:21k", "batch_size"),
        ("pretrain/ofdb_vit_tiny.py:short", "total_epochs"),
        ("pretrain/multi_instance_resnet50.py:tiny", "total_steps"),
        ("pretrain/mixture_vit_tiny.py:multi", "data"),
        ("pretrain/mixture_vit_tiny.py:tiny_multi", "image_size"),
    ],
)
def test_documented_config_arguments_still_select_their_variant(spec, key):
    path = os.path.join(CONFIGS, spec.split(":")[0])
    chosen, default = load_config_file(os.path.join(CONFIGS, spec)), load_config_file(path)
    assert chosen[key] != default[key]


def _documented_variants():
    """(config file, argument) for every `:argument` a config file's docstring names."""
    out = []
    for path in _config_files():
        with open(path) as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ""
        out += [(path, arg) for arg in sorted(set(re.findall(r"`:([\w,=.]+)`", doc)))]
    return out


VARIANTS = _documented_variants()


@pytest.mark.parametrize(
    "path, arg", VARIANTS, ids=[f"{os.path.relpath(p, CONFIGS)}:{a}" for p, a in VARIANTS]
)
def test_every_documented_variant_loads_and_changes_the_config(path, arg):
    """A variant the docstring promises is accepted (not refused as unknown) and does something."""
    chosen, default = load_config_file(f"{path}:{arg}"), load_config_file(path)
    assert config_to_dict(chosen) != config_to_dict(default)


def test_two_alternative_variants_are_refused_naming_both():
    spec = os.path.join(CONFIGS, "pretrain", "ofdb_vit_tiny.py") + ":21k,short"
    with pytest.raises(UsageError, match="'21k' and 'short' are alternatives"):
        load_config_file(spec)


# ------------------------------------------------------------------ --help


VERBS = (
    [[v] for v in cli.VERBS]
    + [["data", "import"]]
    + [["bench", b] for b in ("render", "train", "fit", "suite")]
)


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_every_verb_prints_help_and_exits_0(verb, capsys):
    try:
        code = cli.main([*verb, "--help"])
    except SystemExit as e:  # argparse's own exit, as the script would see it
        code = e.code
    assert code in (0, None)
    captured = capsys.readouterr()
    assert "usage" in captured.out.lower() and captured.err == ""


# ------------------------------------------------------------------ files readable by the group


def test_written_files_respect_the_umask(tmp_path, capsys):
    """An imported dataset (written through a temporary folder renamed into place) is readable by
    the group, as open() and mkdir() would have made it under the umask; not 0600/0700."""
    _npz(tmp_path / "tiny.npz")
    old = os.umask(0o027)
    try:
        argv = [
            "data",
            "import",
            "tiny",
            "--from",
            str(tmp_path / "tiny.npz"),
            "--data_dir",
            str(tmp_path / "tfds"),
        ]
        assert cli.main(argv) == 0
        out = tmp_path / "g.json"
        files.write_json(str(out), dict(a=1))
    finally:
        os.umask(old)
    capsys.readouterr()
    modes = {oct(os.stat(out).st_mode & 0o777)}
    for path, _dirs, names in os.walk(tmp_path / "tfds"):
        modes.add(oct(os.stat(path).st_mode & 0o777))
        modes.update(oct(os.stat(os.path.join(path, n)).st_mode & 0o777) for n in names)
    assert modes == {oct(0o640), oct(0o750)}


# ------------------------------------------------------------------ no hidden leftovers


def test_a_killed_import_leaves_nothing_after_the_next_import(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "big.npz",
        train_images=rng.integers(0, 256, (20000, 28, 28), dtype=np.uint8),
        train_labels=np.arange(20000) % 10,
    )
    data_dir = tmp_path / "tfds"
    argv = [
        "data",
        "import",
        "big",
        "--from",
        str(tmp_path / "big.npz"),
        "--data_dir",
        str(data_dir),
    ]
    writer = subprocess.Popen(
        [sys.executable, "-m", "synth_jax", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not glob.glob(str(data_dir / ".write-*" / "big")) and writer.poll() is None:
        assert time.monotonic() < deadline, "the import never started writing"
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert glob.glob(str(data_dir / ".*")), "the kill came too late to test anything"
    assert not (data_dir / "big").exists()

    assert cli.main(argv) == 0  # the next import into the same data_dir
    assert os.listdir(data_dir) == ["big"]


# ------------------------------------------------------------------ errors first, on a terminal


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _screen(text: str) -> list[str]:
    """What a terminal shows: per line, what follows the last carriage return or erase."""
    lines = []
    for line in text.split("\n"):
        line = line.split("\r")[-1].replace("\x1b[K", "")
        lines.append(line)
    return [line for line in lines if line]


def test_an_error_mid_import_erases_the_progress_line(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "photos"
    for split in ("train", "test"):
        for c in ("a", "b"):
            (folder / split / c).mkdir(parents=True)
            for i in range(40):
                Image.new("L", (8, 8), i).save(folder / split / c / f"{i:02d}.png")
    (folder / "train" / "b" / "39.png").write_bytes(b"\x89PNG\r\n not an image")  # read last
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["data", "import", "photos", "--from", str(folder), "--data_dir", str(tmp_path / "d")]
    assert cli.main(argv) == 2
    text = terminal.getvalue()
    assert "\x1b[A" not in text  # no cursor-up escapes of nested progress bars
    screen = _screen(text)
    assert len(screen) == 1 and screen[0].startswith("synth-jax data: error:"), text
    assert "39.png" in screen[0]
    assert not glob.glob(str(tmp_path / "d" / "*")) and not glob.glob(str(tmp_path / "d" / ".*"))


# ------------------------------------------------------------------ a full disk mid-run

FULL_DISK_CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead
resource.setrlimit(resource.RLIMIT_FSIZE, (40000, 40000))  # config.json fits, a checkpoint not
from synth_jax import cli
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_disk_that_fills_during_the_first_async_save_is_one_line(tmp_path):
    # The first checkpoint's (async) save fails in Orbax's background threads: the run stops at
    # the next save with one line naming the step, without their tracebacks.
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu", JAX_ENABLE_COMPILATION_CACHE="0")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
    argv = [
        "pretrain",
        "--config",
        CPU_TINY,
        "--workdir",
        str(tmp_path / "w"),
        *("--config.total_steps=4", "--config.batch_size=8", "--config.checkpoint.every_steps=2"),
        *("--config.data.num_classes=4", "--config.data.search_points=2000"),
        "--config.data.points=1024",
    ]
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, *argv],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("synth-jax pretrain: error:"), done.stderr[-3000:]
    assert "saving the checkpoint of step 2 failed" in last and "File too large" in last, last
    assert "Traceback" not in done.stderr and "Event loop is closed" not in done.stderr
    assert not os.path.exists(tmp_path / "w" / "checkpoints" / "2")  # no half step


def test_a_table_with_a_byte_order_mark_fits_and_a_config_path_may_hold_a_colon(tmp_path, capsys):
    results_table(encoding="utf-8-sig")(tmp_path)  # as spreadsheet programs save "UTF-8 CSV"
    assert (tmp_path / "results.csv").read_bytes().startswith(b"\xef\xbb\xbf")
    argv = ["fit-law", str(tmp_path / "results.csv"), "--out", str(tmp_path / "fit.json")]
    assert cli.main(argv) == 0, capsys.readouterr().err
    folder = tmp_path / "runs:2026"
    folder.mkdir()
    path = folder / "my:config.py"
    path.write_text(open(CPU_TINY.rsplit(":", 1)[0]).read())
    assert load_config_file(str(path)).model.name == "Nano/4"
    assert load_config_file(f"{path}:mu").model.name == "mu/4"

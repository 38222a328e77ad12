"""Every `synth-jax ...` command written in README.md and docs/*.md runs.

The commands are read from the documents' shell code blocks (a line continued with `\\` is one
command). Each one is either in RUN, with the overrides that make it tiny, and is run
in-process (`synth_jax.cli.main`) in one shared sandbox folder, where it must exit 0; or in
NOT_RUN, with the reason (a GPU, a TPU, a network or a long run), and then its config must still
load. A documented command in neither table fails, so a new one cannot go unchecked; so does a
table entry that no document holds any more.
"""

from __future__ import annotations

import csv
import glob
import os
import re
import shlex

import numpy as np
import pytest

from synth_jax import cli
from synth_jax.config import config_from_argv
from synth_jax.transfer import results

# Several commands compile the same step (a fine-tune and its from-scratch twin): once.

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ["README.md", *sorted(os.path.relpath(p, REPO) for p in glob.glob(f"{REPO}/docs/*.md"))]
SHELL_BLOCKS = ("", "bash", "sh", "shell", "console")

# Tiny settings appended to a documented command (later arguments win).
PRETRAIN = [
    "--config.total_epochs=0",
    "--config.total_steps=2",
    "--config.batch_size=8",
    "--config.log_every_steps=1",
    "--config.checkpoint.every_steps=2",
    "--config.optim.warmup_steps=1",
]
FINETUNE = [
    "--config.total_epochs=0",
    "--config.total_steps=2",
    "--config.batch_size=8",
    "--config.log_every_steps=1",
    "--config.optim.warmup_steps=1",
    "--config.eval_batch_size=32",
    "--config.data.train_split=train[:256]",
    "--config.data.eval_split=test[:64]",
    "--config.data.data_dir=runs/tfds",
    "--config.results_csv=runs/finetuned.csv",  # runs/results.csv is the sweep's, for fit-law
    "--config.model.name=mu/4",  # the model of runs/cpu_tiny here (PRETRAIN_CPU_TINY)
]
# cpu_tiny's Nano/4 step takes ~35 s of CPU to compile; the 2-block mu/4 runs the same ViT code
# in a fraction of that (the fine-tunes below, from runs/cpu_tiny, use it too).
PRETRAIN_CPU_TINY = [*PRETRAIN, "--config.model.name=mu/4"]
RENDER = ["--num", "4", "--config.num_classes=4"]
EXPORT = ["--num", "4", "--config.num_classes=4"]
BENCH_RENDER = ["--batch", "4", "--repeats", "1"]

# Commands run here: the documented text -> what is appended to it.
RUN = {
    # README.md: a tour, one command per verb
    "synth-jax render --config configs/data/onepfrac.py --num 64 --out onepfrac.png": RENDER,
    "synth-jax export --config configs/data/onepfrac.py --out onepfrac_tfds --format tfds "
    "--num 1000": EXPORT,
    "synth-jax data import fashion_mnist --from /usr/share/datasets/fashion-mnist "
    "--data_dir ~/tensorflow_datasets": [],
    "synth-jax pretrain --config configs/pretrain/cpu_tiny.py --workdir runs/cpu_tiny": (
        PRETRAIN_CPU_TINY
    ),
    "synth-jax finetune --config configs/finetune/fashion_mnist.py:cpu --workdir runs/ft "
    "--config.init_from=runs/cpu_tiny": FINETUNE,
    "synth-jax export-model --from runs/cpu_tiny --out exported/cpu_tiny --with-head": [],
    "synth-jax fit-law runs/results.csv --law mikami --x pretrain_images --y top1_error "
    "--group model,dataset --out fit.json --plot fit.png": [],
    "synth-jax sweep --config configs/experiments/delta_sweep.py:mini --workdir runs/delta "
    "--list": [],
    "XLA_FLAGS=--xla_force_host_platform_device_count=4 synth-jax compile "
    "--config configs/pretrain/cpu_tiny.py:mu --config.mesh.fsdp=4 --config.mesh.data=1": [],
    "synth-jax bench render --size 224 --points 100000 --batch 32": [
        *BENCH_RENDER,
        *("--points", "2000", "--reference_points", "1000"),
    ],
    # docs/families.md
    "synth-jax render --config configs/data/fractaldb1k.py:small --num 16 --out fdb.png": RENDER,
    "synth-jax render --config configs/data/one_image.py --num 64 --out one_image.png": RENDER,
    "synth-jax export --config configs/data/onepfrac.py --out onepfrac_png --format png "
    "--num 1000": EXPORT,
    "synth-jax render --config configs/data/ofdb_1k.py --config.num_classes=16 --num 16 "
    "--out ofdb.png": RENDER,
    "synth-jax render --config configs/data/visualatom1k.py --num 16 --out visualatom.png": RENDER,
    "synth-jax render --config configs/data/rcdb1k.py --num 16 --out rcdb.png": RENDER,
    "synth-jax render --config configs/data/rcdb1k.py:white --num 16 --out rcdb_white.png": RENDER,
    "synth-jax render --config configs/data/dead_leaves.py:squares --num 16 "
    "--out squares.png": RENDER,
    "synth-jax render --config configs/data/spectrum.py --num 16 --out spectrum.png": RENDER,
    "synth-jax export --config configs/data/rcdb1k.py --out rcdb1k --format tfds "
    "--num 10000": EXPORT,
    "synth-jax bench render --config configs/data/visualatom1k.py --config.image_size=224": [
        *BENCH_RENDER,
        *("--reference_images", "1"),
    ],
    # docs/transfer.md
    "synth-jax finetune --config configs/finetune/fashion_mnist.py:cpu "
    "--workdir runs/ft_scratch": FINETUNE,
    "synth-jax finetune --config configs/finetune/fashion_mnist.py:cpu --workdir runs/ft10 "
    "--config.init_from=runs/cpu_tiny --config.fraction=0.1": FINETUNE,
    "synth-jax finetune --config configs/finetune/linear_probe.py:cpu --workdir runs/probe "
    "--config.init_from=runs/cpu_tiny": FINETUNE,
    # docs/scaling.md (runs/results.csv: a sweep's table the sandbox holds)
    "synth-jax fit-law runs/results.csv --law mikami --x pretrain_images --y top1_error "
    "--group model,dataset --bootstrap 1000 --holdout 2 --loo --target 0.2 --out fit.json "
    "--plot fit.png": [],
    "synth-jax fit-law runs/results.csv --law mikami --fix D=0.48 --bounds alpha=0.1:1.5,C=0:1 "
    "--init alpha=0.2,C=0.8 --out fit.json": [],
    "synth-jax fit-law runs/results.csv --law mikami2 --x pretrain_images fraction "
    "--out fit2.json": [],
}

LONG = "long run"
# Commands not run here, and why. Their configs still load (a typo in one is caught).
NOT_RUN = {
    "pip install -e . && synth-jax demo --workdir runs/demo": (
        f"{LONG}: about 4 min on 2 cores; tests/test_experiments_demo.py runs --quick"
    ),
    "synth-jax demo --workdir runs/demo": (
        f"{LONG}: about 4 min on 2 cores; tests/test_experiments_demo.py runs --quick"
    ),
    "synth-jax protocol-search --config configs/experiments/protocol_search.py "
    "--workdir runs/protocol_search": (
        f"{LONG}: about 15 min on 2 shared cores (docs/protocol_search.md); "
        "tests/test_experiments_lab.py runs a tiny grid end to end"
    ),
    "synth-jax protocol-search --config configs/experiments/protocol_search.py:quick "
    "--workdir runs/protocol_quick": (
        f"{LONG}: 33 s of CPU; tests/test_experiments_lab.py runs a tinier grid end to end"
    ),
    "synth-jax protocol-search --config configs/experiments/protocol_search.py:wide "
    "--workdir runs/protocol_wide": (
        f"{LONG}: about 20 min on 2 cores (docs/protocol_search.md); the same code as the "
        "grid above, which tests/test_experiments_lab.py runs tiny"
    ),
    "synth-jax demo --workdir runs/demo_quick --quick": (
        f"{LONG}: 1 min of CPU time; tests/test_experiments_demo.py runs it"
    ),
    "synth-jax render --config configs/data/multi_instance_1k.py --num 16 --out multi.png": (
        f"{LONG}: 14 s of CPU at 4 images; tests/test_render_cli.py renders the family"
    ),
    "synth-jax render --config configs/data/mixture.py "
    "--config.components.fractaldb.num_classes=8 --config.components.ofdb.num_classes=4 "
    "--config.components.sigma.num_classes=4 --config.num_classes=16 --num 16 "
    "--out mixture.png": (
        f"{LONG}: 29 s of CPU at 4 images (three category tables); tests/test_render_cli.py "
        "renders the family"
    ),
    "synth-jax render --config configs/data/sigma_random.py --num 64 --out sigma.png": (
        f"{LONG}: 9 s of CPU at 4 images (1,000 systems sampled); tests/test_render_cli.py "
        "renders the sigma family"
    ),
    "synth-jax render --config configs/data/sigma_random.py:af --num 16 --out sigma_af.png": (
        f"{LONG}: 9 s of CPU at 4 images; tests/test_render_cli.py renders the sigma family"
    ),
    "synth-jax export --config configs/data/multi_instance_1k.py --out multi_tfds --format tfds "
    "--num 1000": f"{LONG}: 14 s of CPU at 4 images; tests/test_fractals_multi.py exports it",
    "synth-jax render --config configs/data/dead_leaves.py --num 16 --out dead_leaves.png": (
        f"{LONG}: 8 s of CPU at 4 images; the :squares line here renders this config"
    ),
    "synth-jax bench render --config configs/data/multi_instance_1k.py --batch 32": (
        f"{LONG}: 14 s of CPU at batch 4; tests/test_families_cli.py benches a family"
    ),
    "synth-jax pretrain --config configs/pretrain/multi_instance_resnet50.py "
    "--workdir runs/multi": f"{LONG}: ResNet-50 at 224 px; a GPU",
    "synth-jax pretrain --config configs/pretrain/ofdb_vit_tiny.py --workdir runs/ofdb1k": (
        f"{LONG}: ViT-Ti/16 at 224 px; a GPU"
    ),
    "synth-jax pretrain --config configs/pretrain/mixture_vit_tiny.py --workdir runs/mix": (
        f"{LONG}: ViT-Ti/16 at 224 px, about a day on one H100"
    ),
    "synth-jax pretrain --config configs/pretrain/mixture_vit_tiny.py:tiny "
    "--workdir runs/mix_tiny": (
        f"{LONG}: 37 s of CPU at 2 steps; tests/test_train_multilabel.py trains this config"
    ),
    "synth-jax pretrain --config configs/pretrain/cpu_tiny_family.py:visualatom "
    "--workdir runs/va_tiny": (
        f"{LONG}: 48 s of CPU at 2 steps; tests/test_families_train.py trains this config"
    ),
    "synth-jax pretrain --config configs/pretrain/contours_vit.py:visualatom "
    "--workdir runs/va1k": f"{LONG}: ViT at 224 px on VisualAtom-1k; a GPU",
    "synth-jax pretrain --config configs/pretrain/onepfrac_vit_tiny.py --workdir runs/1p": (
        f"{LONG}: ViT-Ti/16 at 224 px; a GPU"
    ),
    "synth-jax pretrain --config configs/pretrain/fractaldb1k_vit_tiny.py "
    "--workdir runs/fdb_vit": f"{LONG}: ViT-Ti/16 at 224 px; a GPU",
    "synth-jax pretrain --config configs/pretrain/fractaldb1k_resnet50.py "
    "--workdir runs/fdb_r50": f"{LONG}: ResNet-50 at 224 px; a GPU",
    "synth-jax pretrain --config configs/pretrain/real_supervised.py:cpu --workdir runs/real": (
        f"{LONG}: 45 s of CPU at 2 steps; tests/test_train_real_data.py trains on real data"
    ),
    "synth-jax pretrain --config configs/pretrain/cpu_tiny.py:knn --workdir runs/cpu_tiny_knn": (
        f"{LONG}: 61 s of CPU at 2 steps (6,000 images embedded); tests/test_evaluators.py "
        "runs cpu_tiny with the k-NN evaluator"
    ),
    "synth-jax pretrain --config configs/pretrain/cpu_tiny.py:simclr,knn "
    "--workdir runs/cpu_tiny_simclr --config.evals.knn.data.data_dir=DIR": (
        f"{LONG}: a SimCLR step compiles in about a minute on 2 busy cores, the k-NN embeds 6,000 "
        "images; tests/test_train_objectives.py trains SimCLR at mu/4"
    ),
    "synth-jax pretrain --config configs/pretrain/cpu_tiny.py:mae,knn "
    "--workdir runs/cpu_tiny_mae --config.evals.knn.data.data_dir=DIR": (
        f"{LONG}: an MAE step compiles in about two minutes on 2 busy cores; "
        "tests/test_transfer_finetune.py pre-trains MAE at mu/4 and fine-tunes from it"
    ),
    "synth-jax finetune --config configs/finetune/fashion_mnist.py:cpu --workdir runs/ft_simclr "
    "--config.init_from=runs/cpu_tiny_simclr": (
        f"{LONG}: needs the SimCLR pre-training above; tests/test_transfer_finetune.py "
        "fine-tunes from a SimCLR and an MAE checkpoint"
    ),
    "synth-jax bench train --model Ti/16 --image-size 224 --batch 256": (
        f"{LONG}: ViT-Ti/16 at 224 px, batch 256; a GPU"
    ),
    "synth-jax pretrain --config configs/pretrain/cpu_tiny.py --workdir runs/cpu_tiny "
    "--config.total_steps=600 --extend": (
        f"{LONG}: 44 s of CPU at 4 steps (a new schedule compiles a new step); "
        "tests/test_train_robust.py extends a run"
    ),
    "launch/local.sh --processes 2 --cpu-devices 2 -- synth-jax pretrain "
    "--config configs/pretrain/cpu_tiny.py --workdir runs/local2": (
        f"{LONG}: two processes of cpu_tiny; tests/test_launch.py runs a tiny two-process "
        "pre-training through launch/local.sh"
    ),
    "sbatch --nodes=2 launch/slurm.sbatch synth-jax pretrain "
    "--config configs/pretrain/onepfrac_vit_tiny.py --workdir /shared/runs/1p": (
        "a Slurm cluster with GPUs; tests/test_launch.py checks the script's --dry-run"
    ),
    "launch/tpu_pod.sh --name frac-v4-32 --zone us-central2-b --accelerator v4-32 "
    "--bucket my-bucket --delete -- synth-jax pretrain "
    "--config configs/pretrain/onepfrac_vit_tiny.py --workdir /mnt/gcs/my-bucket/runs/1p": (
        "a TPU pod and a network (gcloud); tests/test_launch.py checks the script's --dry-run"
    ),
    "synth-jax compile --config configs/pretrain/fractaldb21k_vit_base.py --topology v5p-128 "
    "--out report.json --hlo step.hlo": (
        f"{LONG}: 1:42 on 2 CPU cores, needs libtpu; tests/test_aot_compile.py compiles a "
        "small TPU slice"
    ),
    "synth-jax data import cifar10 --from cifar-10-batches-py --data_dir ~/tensorflow_datasets": (
        "a network: the CIFAR-10 pickles are downloaded by hand"
    ),
    "synth-jax finetune --config configs/finetune/fewshot.py:cpu --workdir runs/fs10 "
    "--config.init_from=runs/cpu_tiny --config.shots=10": (
        f"{LONG}: 2 min of CPU at 2 steps (one compile per seed); "
        "tests/test_transfer_finetune.py runs the few-shot mode"
    ),
    "synth-jax finetune --config configs/finetune/bridged.py:cpu --workdir runs/br "
    "--config.init_from=runs/cpu_tiny": (
        f"{LONG}: 81 s of CPU at 2 + 2 steps; tests/test_transfer_finetune.py runs both stages"
    ),
    "synth-jax pretrain --config configs/pretrain/onepfrac_vit_tiny.py "
    "--workdir runs/onepfrac_ti_short --config.total_epochs=0 --config.total_steps=30 "
    "--config.batch_size=16 --config.data.num_classes=10 --config.data.points=20000 "
    "--config.data.chains=256 --config.model.dtype=float32 --config.optim.warmup_epochs=0 "
    "--config.optim.warmup_steps=3 --config.checkpoint.every_steps=30": (
        f"{LONG}: ViT-Ti/16 at 224 px, 8.8 min on 2 CPU cores"
    ),
    "synth-jax export-model --from runs/onepfrac_ti_short --out exported/onepfrac_ti_short "
    "--with-head --verify": (
        f"{LONG}: exports the 8.8-min pre-training above, and --verify needs the timm extra "
        "(PyTorch); the README tour exports a tiny run"
    ),
    "synth-jax finetune --config configs/finetune/fashion_mnist.py:cpu "
    "--workdir runs/ft_from_safetensors "
    "--config.init_from=exported/onepfrac_ti_short/model.safetensors "
    "--config.model.name=Ti/16 --config.image_size=64 --config.total_steps=30": (
        f"{LONG}: fine-tunes the 8.8-min pre-training's export; tests/test_weights_layout.py "
        "initialises from timm files"
    ),
    "synth-jax bench fit": (
        f"{LONG}: 1,000 refits beside a 30-s SciPy loop; tests/test_scaling_cli.py runs it small"
    ),
    "synth-jax bench fit --law chinchilla --pieces": (
        f"{LONG}: about 5 min of CPU, mostly the SciPy loop (40 s a fit); "
        "tests/test_scaling_huber.py runs it small"
    ),
    "synth-jax sweep --config configs/experiments/delta_sweep.py:mini --workdir runs/delta "
    "--config.finetune.data.data_dir=runs/tfds": (
        f"{LONG}: six pre-trainings and fine-tunes on one GPU; tests/test_experiments_grid.py "
        "runs sweeps"
    ),
}


def code_blocks(text: str) -> list[tuple[str, list[str]]]:
    """The fenced code blocks of a Markdown text: (language, lines)."""
    blocks, language, lines = [], "", None
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\S*)\s*$", line)
        if fence and lines is None:
            language, lines = fence.group(1), []
        elif fence:
            blocks.append((language, lines))
            lines = None
        elif lines is not None:
            lines.append(line)
    return blocks


def shell_commands(lines: list[str]) -> list[str]:
    """The commands of a shell block that name synth-jax: continued lines joined, comments
    dropped, words separated by one space."""
    commands, current = [], []
    for line in lines:
        text = line.strip()
        current.append(text.removesuffix("\\").strip())
        if not text.endswith("\\"):
            commands.append(" ".join(current))
            current = []
    return [" ".join(shlex.split(c, comments=True)) for c in commands if "synth-jax" in c]


def documented_commands() -> dict[str, str]:
    """Every command naming `synth-jax` in the documents' shell blocks -> where it is first."""
    found = {}
    for name in DOCUMENTS:
        with open(os.path.join(REPO, name), encoding="utf-8") as f:
            text = f.read()
        for language, lines in code_blocks(text):
            if language not in SHELL_BLOCKS:
                continue
            for command in shell_commands([x for x in lines if x.strip()]):
                if "synth-jax" in command.split():
                    found.setdefault(command, name)
    return found


COMMANDS = documented_commands()


def name(command: str) -> str:
    """A test id: the document and the verb, e.g. `docs/transfer.md:finetune`."""
    words = command.split()
    verb = words[words.index("synth-jax") + 1 : words.index("synth-jax") + 2]
    return f"{COMMANDS.get(command, 'undocumented')}:{' '.join(verb)}"


def order(command: str) -> int:
    """Where a command comes in the documents (one no document holds: last)."""
    return list(COMMANDS).index(command) if command in COMMANDS else len(COMMANDS)


def test_every_documented_command_is_run_or_listed_with_a_reason():
    unlisted = [c for c in COMMANDS if c not in RUN and c not in NOT_RUN]
    assert not unlisted, "add to RUN (with tiny overrides) or NOT_RUN (with why):\n" + "\n".join(
        unlisted
    )
    both = set(RUN) & set(NOT_RUN)
    assert not both, f"in RUN and NOT_RUN: {both}"
    stale = [c for c in [*RUN, *NOT_RUN] if c not in COMMANDS]
    assert not stale, "no document holds these any more:\n" + "\n".join(stale)


# Paths a documented command reads that another documented command makes: made first, once.
PROVIDERS = {
    "runs/tfds": "synth-jax data import fashion_mnist --from /usr/share/datasets/fashion-mnist "
    "--data_dir ~/tensorflow_datasets",
    "runs/cpu_tiny": "synth-jax pretrain --config configs/pretrain/cpu_tiny.py "
    "--workdir runs/cpu_tiny",
}
FASHION = "/usr/share/datasets/fashion-mnist"  # the Debian package dataset-fashion-mnist
# Paths of the documents swapped for ones inside the sandbox.
SWAPS = {"~/tensorflow_datasets": "runs/tfds"}


def results_table(path: str) -> None:
    """A results table as a sweep over pre-training sizes and fractions writes it:
    err = (0.05 + 0.8 n^-0.35) f^-0.15, 3% noise, three seeds."""
    rng = np.random.default_rng(0)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, results.COLUMNS)
        writer.writeheader()
        for n in (10, 30, 100, 300, 1000, 3000):
            for fraction in (0.1, 1.0):
                for seed in range(3):
                    err = (0.05 + 0.8 * n**-0.35) * fraction**-0.15 * (1 + 0.03 * rng.normal())
                    run_id = f"n{n}_f{fraction}_s{seed}"
                    writer.writerow(
                        dict(
                            run_id=run_id,
                            pretrain_family="onepfrac",
                            pretrain_classes=n,
                            pretrain_images=n,
                            pretrain_images_seen=1000 * n,
                            model="mu/4",
                            dataset="fashion_mnist",
                            mode="full",
                            fraction=fraction,
                            shots=0,
                            seed=seed,
                            top1=1 - err,
                            top1_error=err,
                            top5_error=err / 4,
                            workdir=f"runs/{run_id}",
                            timestamp="2026-12-01T00:00:00Z",
                        )
                    )


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """One folder for every command run here, with the repository's configs in it; its
    runs/results.csv is a sweep's table, for fit-law (fine-tunes here append elsewhere)."""
    root = str(tmp_path_factory.mktemp("docs"))
    os.symlink(os.path.join(REPO, "configs"), os.path.join(root, "configs"))
    results_table(os.path.join(root, "runs", "results.csv"))
    return root


def argv_of(command: str) -> list[str]:
    """The arguments after `synth-jax`, with the sandbox's paths and the tiny settings."""
    words = shlex.split(command)
    while re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):  # an environment the tests already have
        name, value = words.pop(0).split("=", 1)
        have = os.environ.get(name, "")
        if name == "XLA_FLAGS":  # the tests' own flags (conftest.py) may come beside them
            assert set(value.split()) <= set(have.split()), f"{name}={value}: this has {have}"
        else:
            assert have == value, f"{name}={value}: this process has another"
    assert words[0] == "synth-jax", f"not a synth-jax command: {command}"
    return [SWAPS.get(w, w) for w in words[1:]] + RUN[command]


def reads(argv: list[str], path: str) -> bool:
    return any(w == path or w.endswith("=" + path) or w.startswith(path + "/") for w in argv)


def run(command: str, capsys) -> None:
    argv = argv_of(command)
    if FASHION in argv and not os.path.isdir(FASHION):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    for path, provider in PROVIDERS.items():
        if provider != command and reads(argv, path) and not os.path.exists(path):
            run(provider, capsys)
    capsys.readouterr()
    code = cli.main(argv)
    _, err = capsys.readouterr()
    assert code == 0, f"exit {code}: synth-jax {' '.join(argv)}\n{err[-3000:]}"


@pytest.mark.parametrize("command", sorted(RUN, key=order), ids=name)
def test_documented_command_runs(command, sandbox, monkeypatch, capsys):
    monkeypatch.chdir(sandbox)
    run(command, capsys)


@pytest.mark.parametrize("command", sorted(NOT_RUN, key=order), ids=name)
def test_a_command_not_run_still_loads_its_config(command, monkeypatch):
    """A typo in a config path, a `:arg` or an override is caught without running it."""
    monkeypatch.chdir(REPO)
    words = shlex.split(command)
    argv = words[words.index("synth-jax") + 1 :]
    if any(w.startswith("--config") for w in argv):
        config, _ = config_from_argv(argv)
        assert config is not None


def test_the_reader_finds_continued_commented_and_prefixed_commands():
    text = "\n".join(
        [
            "```bash",
            "synth-jax render --config c.py \\",
            "    --num 4   # a comment",
            "XLA_FLAGS=--x=4 \\",
            "    synth-jax compile --config c.py",
            "```",
            "```python",
            "synth-jax not a shell block",
            "```",
        ]
    )
    blocks = code_blocks(text)
    assert [language for language, _ in blocks] == ["bash", "python"]
    assert shell_commands(blocks[0][1]) == [
        "synth-jax render --config c.py --num 4",
        "XLA_FLAGS=--x=4 synth-jax compile --config c.py",
    ]

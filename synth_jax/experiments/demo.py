"""`synth-jax demo [--workdir DIR] [--quick]`: does formula-driven pre-training help, on a laptop
CPU, offline? The protocol search's protocol with its positive control and its baselines.

1. the recipe check: the protocol's ConvNet trained from scratch on all ten classes of
   scikit-learn's handwritten digits (1,797 8x8 images; a seeded 1,300 train / 497 test split),
   over seeds, against logistic regression and 1-nearest-neighbour on the same pixels; a recipe
   that loses to them is a recipe problem, and the report says so;
2. the transfer protocol of `configs/experiments/demo.py` (chosen by the protocol search,
   docs/protocol_search.md): digits 5-9 with k labelled images a class, from scratch and after
   pre-training on real digits 5-9 that are never labelled (the positive control: a source that
   must transfer), on real digits 0-4 (transfer between real classes) and on formula-driven
   images, each source paired with scratch seed by seed;
3. `DIR/report.md`, `DIR/report.json` ("baselines", "positive_control", "other_classes",
   "sources": each pre-trained minus scratch error with its paired 95% interval) and
   `DIR/figures/`;
4. prints the verdict. A protocol whose positive control shows no gain cannot detect transfer,
   and the verdict says so instead of reading the formula-driven rows.

Re-running the same command resumes (finished runs are skipped). `--quick` (the `:quick` config)
checks the plumbing in a few minutes; its numbers are not a result.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time

import numpy as np

from synth_jax import files
from synth_jax.config import apply_overrides, load_config_file, split_config_args
from synth_jax.errors import ArgumentParser, UsageError
from synth_jax.experiments import lab, protocol
from synth_jax.files import workdir_arg
from synth_jax.scaling.compare import NO_DIFFERENCE, mean_interval

SEARCH_DOC = "docs/protocol_search.md"
ONE_PROTOCOL = ("modes", "shots", "pretrain_steps")


def default_config_path() -> str:
    """configs/experiments/demo.py of this checkout (the package is installed from it, `pip -e`)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "configs", "experiments", "demo.py"))


# -- 1. the recipe check ------------------------------------------------------------------------
def recipe_check(config, workdir: str, out=None) -> dict:
    """The protocol's model from scratch on all ten digits, seed by seed (DIR/recipe.csv keeps
    finished seeds), with the pixel baselines of the same split.

    Returns {"recipe", "scratch": mean_interval of test error, "errors": {seed: err},
    "baselines": {"logistic_regression", "nearest_neighbour"}, "recipe_problem": bool}."""
    out = out or sys.stdout
    check = config.recipe_check
    recipe = dataclasses.replace(protocol.recipe_of(config.recipe), steps=int(check.steps))
    d = protocol.digits_arrays()
    path = os.path.join(workdir, "recipe.csv")
    done = {int(r["seed"]): float(r["test_error"]) for r in protocol.read_rows(path)}
    todo = [int(s) for s in check.seeds if int(s) not in done]
    if todo:
        x = lab.prepare(d["train_images"], recipe.image_size)
        tx = lab.prepare(d["test_images"], recipe.image_size)
    for seed in todo:
        c0 = time.process_time()
        net = lab.train(recipe, x, d["train_labels"], 10, seed)
        done[seed] = lab.error(net, tx, d["test_labels"])
        _append(path, ["seed", "test_error", "cpu_s"], [seed, done[seed], time.process_time() - c0])
        print(
            f"demo: recipe check, {recipe.model} from scratch on all ten digits, seed {seed}: "
            f"test error {done[seed]:.4f}",
            file=out,
            flush=True,
        )
    errors = {s: done[s] for s in (int(s) for s in check.seeds)}
    base = lab.pixel_baselines(
        d["train_images"], d["train_labels"], d["test_images"], d["test_labels"]
    )
    scratch = mean_interval(list(errors.values()))
    return {
        "recipe": dataclasses.asdict(recipe),
        "scratch": scratch,
        "errors": errors,
        "baselines": base,
        "recipe_problem": bool(scratch["mean"] > base["logistic_regression"]),
    }


def _append(path: str, fields: list[str], values: list) -> None:
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(fields)
        writer.writerow(values)


# -- 2. the protocol's own baselines ------------------------------------------------------------
def downstream_baselines(config) -> dict:
    """Logistic regression and 1-NN on the pixels of each seed's k labelled images of digits
    5-9 (the protocol's training set), on its test images: mean error over the seeds."""
    task = protocol.digits_task(int(config.recipe.image_size))
    images, labels = task["pool"]
    tx, ty = task["test"]
    per_seed = []
    for seed in config.seeds:
        pick = protocol.few_labels(labels, int(config.shots[0]), int(seed))
        per_seed.append(lab.pixel_baselines(images[pick], labels[pick], tx, ty))
    return {k: float(np.mean([b[k] for b in per_seed])) for k in per_seed[0]}


# -- 3. the numbers -------------------------------------------------------------------------------
def summarise(config, cells: list[dict], check: dict, down: dict) -> dict:
    """report.json: the recipe check, the baselines, the positive control, each formula-driven
    source against scratch, and the verdict in words."""
    scratch = next((c for c in cells if c["source"] == "scratch"), None)

    def versus(cell: dict) -> dict:
        d = cell.get("vs_scratch_test") or {}
        return {
            "source": cell["source"],
            "error": cell["test"],
            "difference": d.get("difference"),
            "interval": d.get("ci"),
            "verdict": d.get("verdict", "no interval"),
            "validation_difference": (cell.get("vs_scratch_val") or {}).get("difference"),
            "cpu_s": cell["cpu_s"] + (cell.get("pretrain_cpu_s") or 0.0),
        }

    control = [versus(c) for c in cells if c["source"] == protocol.CONTROL_SOURCE]
    other = [versus(c) for c in cells if c["source"] == protocol.REAL_SOURCE]
    named = ("scratch", *protocol.REAL_SOURCES)
    sources = [versus(c) for c in cells if c["source"] not in named]
    numbers = {
        "recipe_check": check,
        "baselines": check["baselines"],
        "recipe_problem": check["recipe_problem"],
        "protocol": {
            "task": "digits 5-9 (scikit-learn's digits, the demo's split)",
            "mode": config.modes[0],
            "shots": int(config.shots[0]),
            "pretrain_steps": int(config.pretrain_steps[0]),
            "seeds": [int(s) for s in config.seeds],
            "recipe": dict(config.recipe),
        },
        "downstream_baselines": down,
        "scratch": scratch["test"] if scratch else None,
        "positive_control": control[0] if control else None,
        "other_classes": other[0] if other else None,
        "sources": sources,
        "search": SEARCH_DOC,
    }
    numbers["detects_transfer"] = bool(control and control[0]["verdict"] == "lower")
    numbers["verdict"] = verdict_lines(numbers)
    return numbers


def verdict_lines(numbers: dict) -> list[str]:
    """The verdict in words, each number with its interval."""
    p = numbers["protocol"]
    what = f"{p['mode']} on digits 5-9 with {_labels(p['shots'])} a class"
    lines = []
    control = numbers["positive_control"]
    if control is None:
        lines.append(f"{what}: no positive control in the config; the verdict cannot be read.")
        return lines
    c = _span(control)
    if numbers["detects_transfer"]:
        lines.append(
            "The protocol detects transfer: pre-training on never-labelled real digits 5-9 (the "
            f"positive control) changes the error by {c} ({what})."
        )
    else:
        lines.append(
            f"The positive control shows no gain ({c}): this protocol cannot detect transfer at "
            "this budget, and the rows below say nothing either way."
        )
    other = numbers.get("other_classes")
    for s in ([other] if other else []) + numbers["sources"]:
        words = {
            "lower": "pre-training LOWERS the error",
            "higher": "pre-training RAISES the error",
            NO_DIFFERENCE: f"{NO_DIFFERENCE} at this budget",
        }.get(s["verdict"], "no interval")
        name = "digits_0_4 (real digits of the other classes)" if s is other else s["source"]
        lines.append(f"{name}: pre-trained minus scratch {_span(s)}: {words}.")
    return lines


def _labels(shots: int) -> str:
    return "all labels" if shots <= 0 else f"{shots} label" + ("s" if shots > 1 else "")


def _span(entry: dict) -> str:
    if entry["difference"] is None:
        return "(no runs)"
    ci = entry["interval"]
    return f"{entry['difference']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


# -- 4. the report --------------------------------------------------------------------------------
def write_report(workdir: str, numbers: dict, sources: list[str]) -> str:
    """DIR/report.json, DIR/report.md and DIR/figures/ (samples of the formula-driven sources,
    the differences from scratch with their intervals). Returns the report's path."""
    figures = os.path.join(workdir, "figures")
    os.makedirs(figures, exist_ok=True)
    from synth_jax.experiments.report.plot import plot_samples

    families = [s for s in sources if s not in protocol.REAL_SOURCES]
    if families and not os.path.exists(os.path.join(figures, "samples.png")):
        plot_samples(families, os.path.join(figures, "samples.png"))
    plot_differences(numbers, os.path.join(figures, "differences.png"))
    files.write_json(os.path.join(workdir, "report.json"), numbers)
    path = os.path.join(workdir, "report.md")
    files.write_text(path, markdown(numbers, bool(families)))
    return path


def plot_differences(numbers: dict, path: str) -> None:
    """Each source's pre-trained minus scratch test error with its paired 95% interval."""
    from synth_jax.experiments.report.plot import _pyplot, _save

    rows = [numbers["positive_control"], numbers["other_classes"], *numbers["sources"]]
    rows = [r for r in rows if r and r["difference"] is not None]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(rows) + 1.2))
    for i, r in enumerate(rows):
        lo, hi = r["interval"] or (r["difference"], r["difference"])
        ax.errorbar(
            r["difference"], i, xerr=[[r["difference"] - lo], [hi - r["difference"]]], fmt="o"
        )
    ax.axvline(0.0, color="gray", lw=1)
    notes = {
        protocol.CONTROL_SOURCE: "\n(positive control)",
        protocol.REAL_SOURCE: "\n(other classes)",
    }
    ax.set_yticks(range(len(rows)), [r["source"] + notes.get(r["source"], "") for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("test error, pre-trained minus scratch (paired 95% interval)")
    fig.tight_layout()
    _save(fig, path)


def markdown(numbers: dict, samples: bool) -> str:
    check, base, p = numbers["recipe_check"], numbers["baselines"], numbers["protocol"]
    down, s = numbers["downstream_baselines"], check["scratch"]
    lines = [
        "# Does formula-driven pre-training help? (synth-jax demo)",
        "",
        "## Verdict",
        "",
        *[f"- {line}" for line in numbers["verdict"]],
        "",
        f"The whole protocol search this demo comes from: `{SEARCH_DOC}`.",
        "",
        "## 1. The recipe check (all ten digits, 1,300 train / 497 test)",
        "",
        f"- {check['recipe']['model']} from scratch, {check['recipe']['steps']} steps: test error "
        f"{s['mean']:.4f}{_ci(s)} over {s['runs']} seeds",
        f"- logistic regression on pixels (standardised): {base['logistic_regression']:.4f}",
        f"- 1-nearest-neighbour on pixels: {base['nearest_neighbour']:.4f}",
    ]
    if numbers["recipe_problem"]:
        lines += [
            "",
            "**Recipe problem:** the from-scratch model loses to logistic regression on raw "
            "pixels; its comparisons say nothing about pre-training.",
        ]
    lines += [
        "",
        f"## 2. Transfer: digits 5-9, {_labels(p['shots'])} a class, {p['mode']}",
        "",
        f"Pre-training: {p['pretrain_steps']} steps on each source; seeds {p['seeds']}, each "
        "paired with the scratch run of the same seed (same labelled images, order and head). "
        "Paired 95% t-intervals, not adjusted for the several sources.",
        "",
        "| source | test error (95% CI) | minus scratch (paired 95% CI) | verdict | CPU s |",
        "| --- | --- | --- | --- | --- |",
    ]
    if numbers["scratch"]:
        scratch = numbers["scratch"]
        lines.append(f"| scratch | {scratch['mean']:.3f}{_ci(scratch)} | - | - | - |")
    rows = [numbers["positive_control"], numbers["other_classes"], *numbers["sources"]]
    notes = {protocol.CONTROL_SOURCE: " (positive control)"}
    notes[protocol.REAL_SOURCE] = " (other classes)"
    for r in (r for r in rows if r):
        name = r["source"] + notes.get(r["source"], "")
        lines.append(
            f"| {name} | {r['error']['mean']:.3f}{_ci(r['error'])} | {_span(r)} | {r['verdict']} "
            f"| {r['cpu_s']:.0f} |"
        )
    lines += [
        "",
        "Baselines on the same k labelled pixels (mean over the seeds): logistic regression "
        f"{down['logistic_regression']:.3f}, 1-NN {down['nearest_neighbour']:.3f}.",
        "",
        "![differences](figures/differences.png)",
    ]
    if samples:
        lines += ["", "![samples of the formula-driven sources](figures/samples.png)"]
    if numbers.get("wall_s"):
        lines += [
            "",
            f"Ran in {numbers['wall_s'] / 60:.1f} min wall, {numbers['cpu_s'] / 60:.1f} min of "
            "CPU time (this run's own work; a resumed run counts only what it did).",
        ]
    return "\n".join(lines) + "\n"


def _ci(summary: dict) -> str:
    ci = summary.get("ci")
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


# -- the command ----------------------------------------------------------------------------------
def load(argv: list[str]):
    """(config, workdir) from the command line: `--config` (default configs/experiments/demo.py,
    `:quick` with --quick) and `--config.KEY=VALUE` overrides."""
    spec, overrides, rest = split_config_args(argv)
    parser = ArgumentParser(prog="synth-jax demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", default="runs/demo", type=workdir_arg, help="where everything goes"
    )
    parser.add_argument(
        "--quick", action="store_true", help="the plumbing check (a few minutes on 2 cores)"
    )
    args = parser.parse_args(rest)
    if spec is None:
        spec = default_config_path()
        if not os.path.exists(spec):
            raise UsageError(
                f"the demo config {spec} is missing (install from a checkout: pip install -e .); "
                "or pass --config path/to/configs/experiments/demo.py"
            )
        if args.quick:
            spec += ":quick"
    elif args.quick:
        raise UsageError(
            "--quick selects configs/experiments/demo.py:quick; with --config, pick the "
            "variant yourself (--config path.py:quick)"
        )
    config = load_config_file(spec)
    apply_overrides(config, overrides)
    for key in ("recipe_check", *ONE_PROTOCOL, "sources", "seeds", "recipe", "pretrain"):
        if key not in config:
            raise UsageError(f"config key {key!r} is missing (see configs/experiments/demo.py)")
    for key in ONE_PROTOCOL:
        if len(config[key]) != 1:
            raise UsageError(
                f"config key {key!r}: the demo runs one protocol (one value, not "
                f"{len(config[key])}); grids are for synth-jax protocol-search"
            )
    if len(config.seeds) < 2 or len(config.recipe_check.seeds) < 2:
        raise UsageError("config keys 'seeds' and 'recipe_check.seeds': at least 2 for intervals")
    return config, os.path.abspath(args.workdir)


def main(argv: list[str]) -> int:
    config, workdir = load(argv)
    t0, cpu0 = time.perf_counter(), time.process_time()
    sources = list(config.sources)
    print(
        f"demo: {config.recipe.model} on digits: the recipe check (all ten classes, "
        f"{len(config.recipe_check.seeds)} seeds), then digits 5-9 with "
        f"{_labels(int(config.shots[0]))} a class, {config.modes[0]}, from scratch and after "
        f"{config.pretrain_steps[0]} pre-training steps on {', '.join(sources)}, "
        f"{len(config.seeds)} seeds.\n"
        f"demo: workdir {workdir} (re-run the same command to resume)",
        flush=True,
    )
    os.makedirs(workdir, exist_ok=True)
    check = recipe_check(config, workdir)
    search = protocol.run(config, workdir)
    numbers = summarise(config, search["cells"], check, downstream_baselines(config))
    numbers["wall_s"] = time.perf_counter() - t0
    numbers["cpu_s"] = time.process_time() - cpu0
    report = write_report(workdir, numbers, sources)
    print(
        f"\ndemo: finished in {numbers['wall_s'] / 60:.1f} min ({numbers['cpu_s'] / 60:.1f} min of "
        f"CPU time). Report: {report}"
    )
    s, base = check["scratch"], check["baselines"]
    print(
        f"  recipe check: from scratch {s['mean']:.4f}{_ci(s)}; logistic regression "
        f"{base['logistic_regression']:.4f}, 1-NN {base['nearest_neighbour']:.4f}"
        + ("; the recipe LOSES to them: a recipe problem" if check["recipe_problem"] else "")
    )
    print("\n".join(f"  {line}" for line in numbers["verdict"]))
    print(f"demo: the protocol search behind it: {SEARCH_DOC}")
    return 0

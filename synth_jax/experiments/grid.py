"""A sweep's grid: expand a sweep config into cells, give each a stable id, split them into shards.

A sweep config holds a base pre-training config (`config.pretrain`), a base fine-tuning config
(`config.finetune`) and a list of axes. Each axis maps dotted keys to equally long lists of values
that vary together (e.g. a model name for both stages); axes are crossed:

    config.axes = [
        {"pretrain.data.num_classes": [16, 64, 256]},
        {"finetune.seed": [0, 1, 2]},
    ]

gives 9 cells. A cell is one fine-tuning run plus the pre-training it starts from. Cells that
differ only in fine-tuning keys share one pre-training, so it runs once. With `config.scratch`,
each distinct fine-tuning setting also gets one from-scratch cell (no pre-training), the baseline
every comparison needs.

Ids are content hashes of the configs a cell runs (the pre-training's id of its whole resolved
config, the cell's of its fine-tuning config and its pre-training id), prefixed by a readable
slug of the axis values: re-expanding the same config gives the same ids on any machine, and a
changed base config gives new ids instead of silently reusing stale runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from collections.abc import Mapping, Sequence

import ml_collections

from synth_jax.config import config_to_dict
from synth_jax.errors import UsageError

STAGES = ("pretrain", "finetune")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One fine-tuning run and the pre-training it starts from (None: from scratch)."""

    cell_id: str
    pretrain_id: str | None
    values: dict  # axis key -> value, e.g. {"pretrain.data.num_classes": 64}
    pretrain: ml_collections.ConfigDict | None  # resolved pre-training config
    finetune: ml_collections.ConfigDict  # resolved fine-tuning config (without run paths)

    @property
    def scratch(self) -> bool:
        return self.pretrain_id is None

    def to_json(self) -> dict:
        return {
            "cell_id": self.cell_id,
            "pretrain_id": self.pretrain_id,
            "values": config_to_dict(self.values),
        }


def stable_hash(obj) -> str:
    """8 hex digits of SHA-1 over canonical JSON: the same on every machine and Python run."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def slug(values: Mapping) -> str:
    """A short, filesystem-safe name for axis values: {"pretrain.data.delta": 0.1} -> delta0.1."""
    parts = []
    for key, value in values.items():
        leaf = key.rsplit(".", 1)[-1]
        if isinstance(value, (Mapping, ml_collections.ConfigDict)):
            # A whole sub-config (e.g. a data config per family): its family, or its hash.
            text = str(value["family"]) if "family" in value else stable_hash(dict(value))
        else:
            text = json.dumps(value) if not isinstance(value, str) else value
        parts.append(f"{leaf}{text}")
    name = re.sub(r"[^A-Za-z0-9.=_+-]+", "-", "_".join(parts)).strip("-")
    return name[:60] or "base"


def _axes(config) -> list[dict[str, list]]:
    axes = config.get("axes", None) or []
    if not isinstance(axes, (list, tuple)):
        raise UsageError("config key 'axes' must be a list of {dotted.key: [values]} dicts")
    out = []
    for i, axis in enumerate(axes):
        if not isinstance(axis, (Mapping, ml_collections.ConfigDict)) or not axis:
            raise UsageError(f"config key 'axes[{i}]' must be a non-empty {{key: [values]}} dict")
        axis = dict(axis.items())
        lengths = set()
        for key, values in axis.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise UsageError(f"config key 'axes[{i}].{key}' must be a non-empty list of values")
            lengths.add(len(values))
        if len(lengths) != 1:
            raise UsageError(
                f"config key 'axes[{i}]': its keys vary together, so their lists need one length; "
                f"got {', '.join(f'{k}: {len(v)}' for k, v in axis.items())}"
            )
        out.append({key: list(values) for key, values in axis.items()})
    return out


def _set_dotted(config: ml_collections.ConfigDict, key: str, value, where: str):
    stage, _, rest = key.partition(".")
    if stage not in STAGES or not rest:
        raise UsageError(
            f"config key '{where}': axis key {key!r} must start with 'pretrain.' or 'finetune.'"
        )
    node = config[stage]
    parts = rest.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
            known = ", ".join(sorted(node.keys())) if hasattr(node, "keys") else "none"
            raise UsageError(
                f"config key '{where}': {stage}.{'.'.join(parts[: i + 1])} is not a key of the "
                f"base {stage} config (keys there: {known})"
            )
        if i < len(parts) - 1:
            node = node[part]
    leaf = parts[-1]
    if isinstance(node, ml_collections.ConfigDict):
        with node.ignore_type():
            node[leaf] = value
    else:
        node[leaf] = value


def expand(config: ml_collections.ConfigDict) -> list[Cell]:
    """All cells of a sweep config, in a deterministic order (axes crossed, first axis slowest).

    The pre-training id hashes the whole resolved pre-training config; the cell id hashes the
    resolved fine-tuning config and the pre-training id (None for scratch cells).
    """
    for stage in STAGES:
        if not isinstance(config.get(stage, None), ml_collections.ConfigDict):
            raise UsageError(f"config key {stage!r} must be the base {stage} config (a ConfigDict)")
    axes = _axes(config)
    cells: list[Cell] = []
    seen: set[str] = set()
    # Each axis contributes one "row" (a dict of its keys' i-th values); rows are crossed.
    rows_per_axis = [
        [
            {key: values[j] for key, values in axis.items()}
            for j in range(len(next(iter(axis.values()))))
        ]
        for axis in axes
    ]
    for combo in itertools.product(*rows_per_axis):
        values: dict = {}
        resolved = ml_collections.ConfigDict(
            {stage: config_to_dict(config[stage]) for stage in STAGES}
        )
        for i, row in enumerate(combo):
            for key, value in row.items():
                _set_dotted(resolved, key, value, where=f"axes[{i}].{key}")
                values[key] = value
        pretrain_values = {k: v for k, v in values.items() if k.startswith("pretrain.")}
        finetune_values = {k: v for k, v in values.items() if k.startswith("finetune.")}
        pretrain_dict = config_to_dict(resolved.pretrain)
        pretrain_id = f"{slug(pretrain_values)}-{stable_hash(pretrain_dict)}"
        candidates = [_cell(values, pretrain_id, resolved.pretrain, resolved.finetune)]
        if config.get("scratch", False):
            candidates.append(_cell(finetune_values, None, None, resolved.finetune))
        for cell in candidates:
            # The scratch cell of a fine-tuning setting is listed once, however many
            # pre-training sizes share that setting.
            if cell.cell_id not in seen:
                seen.add(cell.cell_id)
                cells.append(cell)
    return cells


def _cell(values, pretrain_id, pretrain, finetune) -> Cell:
    finetune_dict = config_to_dict(finetune)
    prefix = "scratch" if pretrain_id is None else slug(values)
    if pretrain_id is None and values:
        prefix += "_" + slug(values)
    cell_id = f"{prefix}-{stable_hash({'finetune': finetune_dict, 'pretrain': pretrain_id})}"
    return Cell(cell_id, pretrain_id, dict(values), pretrain, finetune)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' (0 <= i < n) -> (i, n); None -> (0, 1)."""
    if text is None:
        return 0, 1
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise UsageError(f"--shard {text}: expected i/n, e.g. --shard 0/4 (shards 0..n-1)")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= i < n:
        raise UsageError(f"--shard {text}: need 0 <= i < n, e.g. --shard 0/{max(n, 2)}")
    return i, n


def shard_cells(cells: Sequence[Cell], shard: tuple[int, int]) -> list[Cell]:
    """The cells that shard (i, n) runs: every cell lands in exactly one shard.

    Cells that share a pre-training land in the same shard, so it runs once, on one host; the
    groups (a pre-training with its cells, or one scratch cell) are dealt round-robin in the order
    of their ids, which does not depend on the order of the axes' values.
    """
    i, n = shard
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.pretrain_id or cell.cell_id, []).append(cell)
    mine = {key for k, key in enumerate(sorted(groups)) if k % n == i}
    return [cell for cell in cells if (cell.pretrain_id or cell.cell_id) in mine]


def cell_dirs(workdir: str, cell: Cell) -> tuple[str | None, str]:
    """(pre-training workdir or None, fine-tuning workdir) of a cell inside a sweep workdir."""
    pretrain_dir = None
    if cell.pretrain_id is not None:
        pretrain_dir = os.path.join(workdir, "pretrain", cell.pretrain_id)
    return pretrain_dir, os.path.join(workdir, "finetune", cell.cell_id)


def cell_id_of_run(run_workdir: str) -> str | None:
    """The cell id of a fine-tuning run folder: the name after the last `finetune/` in its path
    (`.../finetune/<cell_id>` or `.../finetune/<cell_id>/seed_<s>`), or None."""
    parts = os.path.normpath(run_workdir or ".").split(os.sep)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "finetune":
            return parts[i + 1]
    return None


def runs_per_cell(cell: Cell) -> int:
    """Results rows a finished cell has: one per fine-tuning seed (`finetune.seeds`), else one."""
    seeds = cell.finetune.get("seeds", ()) or ()
    return max(1, len(seeds))

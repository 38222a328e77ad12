"""What a compiled program sends between devices: its collectives, read from the HLO text.

    ops = collectives(compiled.as_text())   # [Collective(kind, shapes, bytes, runs, name)]
    summary = by_kind(ops)                  # {"all-reduce": {"count": 3, "bytes": 92_160}, ...}

The text is the partitioned program of one device, so shapes and bytes are per device. A
collective inside a loop body runs once per iteration: `runs` is the product of the trip counts
of the loops around it, read from each loop's condition (`i < N`); a loop whose bound is not a
constant (a `while_loop` on data) counts once and is named in `Collective.unknown_trips`.
"""

from __future__ import annotations

import dataclasses
import math
import re

KINDS = ("all-reduce", "all-gather", "reduce-scatter", "collective-permute", "all-to-all")

DTYPE_BYTES = {
    "pred": 1,
    "s4": 0.5,
    "u4": 0.5,
    "s8": 1,
    "u8": 1,
    "f8e4m3fn": 1,
    "f8e5m2": 1,
    "s16": 2,
    "u16": 2,
    "f16": 2,
    "bf16": 2,
    "s32": 4,
    "u32": 4,
    "f32": 4,
    "s64": 8,
    "u64": 8,
    "f64": 8,
    "c64": 8,
    "c128": 16,
}

_ARRAY = re.compile(r"\b([a-z]+[0-9]*[a-z0-9]*)\[([0-9,]*)\]")
_HEADER = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s+\(.*\)\s*->\s*.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([a-z][\w\-]*)\((.*)$")
_CALLS = re.compile(
    r"\b(?:body|condition|calls|to_apply|branch_computations|async_computation)="
    r"(\{[^}]*\}|%?[\w.\-]+)"
)


@dataclasses.dataclass(frozen=True)
class Collective:
    kind: str  # one of KINDS
    name: str  # the instruction's name in the HLO text
    shapes: tuple[tuple[str, tuple[int, ...]], ...]  # (dtype, dims) of each operand
    bytes: int  # operand bytes of one run, per device
    runs: int  # how often one step runs it (trip counts of the loops around it)
    unknown_trips: bool  # inside a loop whose trip count is not a constant

    @property
    def largest(self) -> tuple[str, tuple[int, ...]]:
        """The operand with the most elements."""
        return max(self.shapes, key=lambda s: math.prod(s[1]), default=("", ()))


def array_shapes(text: str) -> list[tuple[str, tuple[int, ...]]]:
    """All array shapes in an HLO type string: 'f32[16,224]{1,0}' -> [('f32', (16, 224))]."""
    shapes = []
    for dtype, dims in _ARRAY.findall(text):
        if dtype in DTYPE_BYTES:
            shapes.append((dtype, tuple(int(d) for d in dims.split(",") if d)))
    return shapes


def shape_bytes(shapes) -> int:
    return int(sum(math.prod(dims) * DTYPE_BYTES[dtype] for dtype, dims in shapes))


def _split_top_level(text: str) -> list[str]:
    """Splits 'a, f(b, c), {d, e}' at the commas outside brackets."""
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    if current:
        parts.append("".join(current).strip())
    return parts


def _operands(rest: str) -> str:
    """The text inside the instruction's operand parentheses (rest starts after '(')."""
    depth = 1
    for i, ch in enumerate(rest):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return rest[:i]
    return rest


def _parse(text: str):
    """-> (computations {name: [(name, type, opcode, operands, attributes)]}, entry name)."""
    computations: dict[str, list] = {}
    entry, current = None, None
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            current = header.group(2)
            computations[current] = []
            if header.group(1):
                entry = current
            continue
        if current is None:
            continue
        if line.strip() == "}":
            current = None
            continue
        match = _INSTRUCTION.match(line)
        if match:
            _, name, type_, opcode, rest = match.groups()
            operands = _operands(rest)
            attributes = rest[len(operands) + 1 :]
            computations[current].append((name, type_, opcode, operands, attributes))
    return computations, entry


def _trip_count(while_attributes: str, condition: list, computations: dict) -> int | None:
    """N for a loop that XLA knows runs N times, or whose condition is `i < N` with a constant
    N (the comparison may sit in a fusion); None otherwise."""
    known = re.search(r'"known_trip_count":\{"n":"(\d+)"', while_attributes)
    if known:
        return int(known.group(1))
    constants = {}
    for name, _, opcode, operands, _ in condition:
        if opcode == "constant" and re.fullmatch(r"-?\d+", operands.strip()):
            constants[name] = int(operands)

    def less_than(opcode, attributes):
        if opcode == "compare":
            return "direction=LT" in attributes
        called = re.search(r"calls=%?([\w.\-]+)", attributes)
        body = computations.get(called.group(1), []) if opcode == "fusion" and called else []
        return any(op == "compare" and "direction=LT" in a for _, _, op, _, a in body)

    for _, _, opcode, operands, attributes in condition:
        if less_than(opcode, attributes):
            names = [o.split()[-1].lstrip("%") for o in _split_top_level(operands)]
            if len(names) == 2 and names[1] in constants:
                return constants[names[1]]
    return None


def collectives(hlo_text: str) -> list[Collective]:
    """Every collective the program runs, each with its operand bytes per device and runs per
    step (see the module docstring). Asynchronous pairs count once, at their `-start`."""
    computations, entry = _parse(hlo_text)
    if entry is None:
        raise ValueError("no ENTRY computation in the HLO text")
    found: list[Collective] = []

    def visit(name: str, runs: int, unknown: bool, stack: tuple):
        if name not in computations or name in stack:
            return
        types = {n: t for n, t, *_ in computations[name]}
        for inst, _, opcode, operands, attributes in computations[name]:
            kind = opcode.removesuffix("-start")
            if kind in KINDS and not opcode.endswith("-done"):
                shapes = []
                for operand in _split_top_level(operands):
                    own = array_shapes(operand.rsplit("%", 1)[0]) if "[" in operand else []
                    ref = operand.split()[-1].lstrip("%") if operand else ""
                    shapes += own or array_shapes(types.get(ref, ""))
                found.append(
                    Collective(kind, inst, tuple(shapes), shape_bytes(shapes), runs, unknown)
                )
            called = [c for group in _CALLS.findall(attributes) for c in _names(group)]
            if opcode == "while":
                cond = re.search(r"condition=%?([\w.\-]+)", attributes)
                body = re.search(r"body=%?([\w.\-]+)", attributes)
                condition = computations.get(cond.group(1), []) if cond else []
                trips = _trip_count(attributes, condition, computations)
                if body:
                    visit(
                        body.group(1),
                        runs * (trips or 1),
                        unknown or trips is None,
                        stack + (name,),
                    )
                called = [c for c in called if body is None or c != body.group(1)]
            for callee in called:
                visit(callee, runs, unknown, stack + (name,))

    visit(entry, 1, False, ())
    return found


def _names(group: str) -> list[str]:
    return [n.strip().lstrip("%") for n in group.strip("{}").split(",") if n.strip()]


def by_kind(ops: list[Collective]) -> dict[str, dict]:
    """{kind: {"count": instructions, "runs": runs per step, "bytes": operand bytes per step per
    device, "largest": the largest operand, e.g. "f32[12845312]"}} for the kinds present."""
    summary: dict[str, dict] = {}
    for kind in sorted({op.kind for op in ops}):
        mine = [op for op in ops if op.kind == kind]
        dtype, dims = max(
            (op.largest for op in mine), key=lambda s: math.prod(s[1]) * DTYPE_BYTES.get(s[0], 1)
        )
        summary[kind] = {
            "count": len(mine),
            "runs": sum(op.runs for op in mine),
            "bytes": sum(op.bytes * op.runs for op in mine),
            "largest": f"{dtype}[{','.join(map(str, dims))}]",
        }
    return summary

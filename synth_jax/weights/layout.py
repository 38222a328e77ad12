"""Names and shapes of a state dict: the one check every importer ends with."""

from __future__ import annotations

import numpy as np

from synth_jax.errors import UsageError


def check_same_layout(
    path: str, got: dict, expected: dict, what: str, optional: tuple[str, ...] = ()
) -> None:
    """Raises UsageError (one line) unless `got` has exactly the names and shapes of `expected`.

    `got`, `expected`: {name: array}; `what` names the architecture that was inferred;
    names ending with one of `optional` may be absent from `got`.
    """
    unexpected = sorted(set(got) - set(expected))
    missing = sorted(n for n in set(expected) - set(got) if not n.endswith(optional))
    reshaped = sorted(
        n for n in set(got) & set(expected) if np.shape(got[n]) != np.shape(expected[n])
    )
    problems = []
    if unexpected:
        problems.append(f"unexpected {_some(unexpected)}")
    if missing:
        problems.append(f"missing {_some(missing)}")
    if reshaped:
        n = reshaped[0]
        problems.append(
            f"{len(reshaped)} of another shape ({n}: {np.shape(got[n])}, "
            f"{what} needs {np.shape(expected[n])})"
        )
    if problems:
        raise UsageError(f"{path}: not a {what} state dict: {'; '.join(problems)}")


def _some(names: list[str], k: int = 3) -> str:
    more = f" and {len(names) - k} more" if len(names) > k else ""
    return ", ".join(names[:k]) + more

"""Extension points by name: a table from a name in a config to the module that implements it.

synth_jax has four: data families (`synth_jax.fractals.FAMILIES`), models
(`synth_jax.models.MODELS`), transfer modes (`synth_jax.transfer.finetune.MODES`) and evaluators
(`synth_jax.evaluators.EVALUATORS`). Each is a `Registry` whose built-in entries are the package's
own modules; adding one is writing a module with the attributes the table names and calling

    FAMILIES.register("disc", my_disc_module)

from that module or from the config file that uses it (config files run before their verb, so a
config can register what it needs; see docs/extending.md). A module is the usual entry; any
object with the required attributes works.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from synth_jax.errors import UsageError

NAME = re.compile(r"[a-z][a-z0-9_]*")


class Registry(Mapping):
    """name -> module. `what` names the kind in errors ("data family"); `config_key` is the config
    key that selects an entry ("family"), so an unknown name is a one-line UsageError naming it;
    `required` lists the attributes every entry must have."""

    def __init__(self, what: str, config_key: str, entries: dict, required: tuple[str, ...]):
        self.what = what
        self.config_key = config_key
        self.required = tuple(required)
        self._entries: dict = {}
        for name, module in entries.items():
            self.register(name, module)
        self._builtin = frozenset(self._entries)

    def register(self, name: str, module):
        """Adds `module` under `name` and returns it. Registering the same module again is a
        no-op; a built-in name cannot be taken by another module."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ValueError(f"{self.what} name {name!r}: use lower_case letters, digits and _")
        missing = [a for a in self.required if not hasattr(module, a)]
        if missing:
            raise TypeError(f"{self.what} {name!r}: {module!r} lacks {', '.join(missing)}")
        if name in getattr(self, "_builtin", ()) and self._entries[name] is not module:
            raise ValueError(f"{self.what} {name!r} is built in; register yours under a new name")
        self._entries[name] = module
        return module

    def lookup(self, name):
        """The module registered as `name`; a UsageError naming the config key otherwise."""
        if name not in self._entries:
            raise UsageError(
                f"config key {self.config_key!r}={name!r}: expected one of {', '.join(self)}"
            )
        return self._entries[name]

    def __getitem__(self, name):
        return self._entries[name]

    def __contains__(self, name) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what}: {', '.join(self)})"

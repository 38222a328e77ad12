"""Experiment configs: ml_collections files with big_vision-style arguments and overrides.

A config file defines `get_config(arg=None) -> ConfigDict`. On the command line:

    synth-jax VERB --config configs/pretrain/cpu_tiny.py:mu,knn --config.optim.lr=0.03

`path.py:ARG` passes ARG (a string) to get_config, which reads it with `config_args` (big_vision
style `a,b,key=value`: names the file declares, anything else refused); each `--config.a.b=value`
overrides an existing key, parsed to the type the key already has. An unknown key is an error
that names it.
"""

from __future__ import annotations

import ast
import copy
import difflib
import importlib.util
import math
import os
from collections.abc import Sequence

import ml_collections

from synth_jax.errors import UsageError


def load_module(path: str):
    """Imports the Python file `path` (a config file) as a fresh module; UsageError when it cannot
    be imported."""
    if not os.path.isfile(path):
        raise UsageError(f"--config {path}: no such file")
    name = "synth_jax_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except UsageError:
        raise
    except Exception as e:  # a broken config file is user input
        raise UsageError(f"--config {path}: cannot import it: {type(e).__name__}: {e}") from e
    return module


def sibling(config_file: str, relative: str):
    """The config module at `relative` to the folder of `config_file` (a config's `__file__`):
    how a config builds on another one (one recipe, one place)."""
    return load_module(os.path.join(os.path.dirname(os.path.abspath(config_file)), relative))


def load_config_file(spec: str) -> ml_collections.ConfigDict:
    """Imports `path.py[:arg]` and returns `get_config(arg)` (or `get_config()` without arg)."""
    path, arg = _config_path_and_arg(spec)
    if not path.endswith(".py"):
        raise UsageError(f"--config {spec}: expected a Python config file (path/to/name.py[:arg])")
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise UsageError(f"--config {path}: defines no get_config(arg=None)")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except UsageError as e:
        raise UsageError(f"--config {spec}: {e}") from None
    except Exception as e:
        raise UsageError(f"--config {spec}: get_config failed: {type(e).__name__}: {e}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise UsageError(f"--config {path}: get_config must return an ml_collections.ConfigDict")
    return config


def _config_path_and_arg(spec: str) -> tuple[str, str]:
    """`path.py[:arg]` split in two; a path may hold ':' itself (the whole spec names a file, or
    the part before the last ':' is a .py file)."""
    if spec.endswith(".py") and os.path.isfile(spec):
        return spec, ""
    path, _, arg = spec.rpartition(":")
    if path.endswith(".py"):
        return path, arg
    path, _, arg = spec.partition(":")
    return path, arg


def _parse_value(name: str, text: str, current):
    """Parses `text` to the type of `current` (the value the key has in the config); errors show
    it as `name=text` (e.g. `--config.optim.lr=x`). Numbers must be finite."""
    if isinstance(current, bool):
        low = text.lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise UsageError(f"{name}={text}: expected true or false")
    if isinstance(current, int) and not isinstance(current, bool):
        try:
            return int(text)
        except ValueError:
            try:
                as_float = float(text)  # allow 1e6
            except ValueError:
                raise UsageError(f"{name}={text}: expected an integer") from None
            if not math.isfinite(as_float) or as_float != int(as_float):
                raise UsageError(f"{name}={text}: expected an integer") from None
            return int(as_float)
    if isinstance(current, float):
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"{name}={text}: expected a number") from None
        if not math.isfinite(value):
            raise UsageError(f"{name}={text}: expected a finite number")
        return value
    if isinstance(current, str):
        return text
    # None, tuples, lists, dicts: a Python literal, or a plain string.
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    if isinstance(current, (list, tuple)) and not isinstance(value, (list, tuple)):
        raise UsageError(f"{name}={text}: expected a list such as [1,2,3]")
    return value


def config_args(arg: str | None, **known) -> ml_collections.ConfigDict:
    """A config file's argument (`path.py:ARG`), big_vision style: `a,b,key=value`.

    `known` declares every name the file accepts, with its default: a bare name sets a flag
    (default False) to True, `key=value` parses value to the default's type. Anything else is a
    one-line UsageError listing the known names, so that `:CPU` or a typo never silently gives
    the default recipe. Returns a ConfigDict of all known names.

        args = config_args(arg, cpu=False)      # get_config("cpu") -> args.cpu is True
    """
    out = ml_collections.ConfigDict(dict(known))
    listing = ", ".join(
        name if isinstance(default, bool) else f"{name}=<{type(default).__name__}>"
        for name, default in known.items()
    )
    for item in filter(None, (part.strip() for part in (arg or "").split(","))):
        name, has_value, text = item.partition("=")
        name = name.strip()
        if name not in known:
            close = difflib.get_close_matches(name.lower(), list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(
                f"config argument {name!r} is unknown{hint}; known: {listing or 'none'}"
            )
        if not has_value:
            if not isinstance(known[name], bool):
                raise UsageError(f"config argument {name!r} needs a value: {name}=VALUE")
            out[name] = True
        else:
            out[name] = _parse_value(f"config argument {name}", text.strip(), known[name])
    return out


def config_variant(arg: str | None, *variants: str) -> str | None:
    """A config file's argument when it names one of exclusive variants (`:short`, `:tiny`):
    returns that name, or None without an argument. Unknown names are refused as by
    `config_args`, and so are two variants at once (one line naming both).

        variant = config_variant(arg, "short", "tiny")  # get_config("tiny") -> "tiny"
    """
    chosen = [name for name, on in config_args(arg, **dict.fromkeys(variants, False)).items() if on]
    if len(chosen) > 1:
        raise UsageError(
            f"config arguments {' and '.join(map(repr, chosen))} are alternatives; choose one of: "
            f"{', '.join(variants)}"
        )
    return chosen[0] if chosen else None


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, str]):
    """Sets each dotted key to its parsed value; unknown keys are errors naming the key."""
    for key, text in overrides.items():
        node = config
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, (ml_collections.ConfigDict, dict)) or part not in node:
                raise UsageError(
                    f"--config.{key}: unknown key {'.'.join(parts[: i + 1])!r}; "
                    f"see the config file for the keys it defines"
                )
            node = node[part]
        leaf = parts[-1]
        if not isinstance(node, (ml_collections.ConfigDict, dict)) or leaf not in node:
            raise UsageError(
                f"--config.{key}: unknown key {key!r}; see the config file for the keys it defines"
            )
        current = node[leaf]
        if isinstance(current, ml_collections.ConfigDict):
            raise UsageError(f"--config.{key}: is a group of keys; set one of its fields instead")
        value = _parse_value(f"--config.{key}", text, current)
        try:
            node[leaf] = value
        except (TypeError, ValueError) as e:  # ConfigDict type-locking
            raise UsageError(f"--config.{key}={text}: {e}") from None
    return config


def split_config_args(argv: Sequence[str]) -> tuple[str | None, dict[str, str], list[str]]:
    """Separates `--config SPEC` and `--config.key=value` from the other arguments."""
    spec = None
    overrides: dict[str, str] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" or arg.startswith("--config="):
            if arg == "--config":
                if i + 1 >= len(argv):
                    raise UsageError("--config needs a value: path/to/config.py[:arg]")
                spec = argv[i + 1]
                i += 2
                continue
            spec = arg.split("=", 1)[1]
        elif arg.startswith("--config."):
            body = arg[len("--config.") :]
            if "=" in body:
                key, value = body.split("=", 1)
            else:
                if i + 1 >= len(argv):
                    raise UsageError(f"{arg} needs a value")
                key, value = body, argv[i + 1]
                i += 1
            overrides[key] = value
        else:
            rest.append(arg)
        i += 1
    return spec, overrides, rest


def load_config(spec: str, overrides: dict[str, str] | None = None) -> ml_collections.ConfigDict:
    """Loads a config file and applies command-line overrides."""
    config = load_config_file(spec)
    apply_overrides(config, overrides or {})
    return config


def config_from_argv(argv: Sequence[str], required: bool = True):
    """Returns (config or None, remaining argv) for a verb's command line.

    With -h/--help the config is not loaded (None): the verb's parser prints its help."""
    spec, overrides, rest = split_config_args(argv)
    if {"-h", "--help"} & set(rest):
        return None, rest
    if spec is None:
        if required:
            raise UsageError("--config path/to/config.py is required")
        if overrides:
            raise UsageError("--config.KEY=VALUE overrides need --config path/to/config.py")
        return None, rest
    return load_config(spec, overrides), rest


def require_keys(config: ml_collections.ConfigDict, allowed: dict, prefix: str = ""):
    """Checks that `config` holds no key outside `allowed` (a nested dict of key -> None or dict).

    Catches typos in config files before anything compiles: the error names the key.
    """
    for key in config.keys():
        name = f"{prefix}{key}"
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise UsageError(f"config key {name!r} is unknown; known keys here: {known}")
        sub = allowed[key]
        if isinstance(sub, dict) and isinstance(config[key], ml_collections.ConfigDict):
            require_keys(config[key], sub, prefix=name + ".")


def check(config, key: str, ok, what: str, prefix: str = "") -> None:
    """The one config check: when `key` is in `config` and `ok(value)` is false (or raises), a
    one-line UsageError "config key 'PREFIX.key'=VALUE: expected WHAT"."""
    if key not in config:
        return
    value = config[key]
    try:
        good = bool(ok(value))
    except (TypeError, ValueError):
        good = False
    if not good:
        raise UsageError(f"config key {prefix + key!r}={value!r}: expected {what}")


def check_finite(config, prefix: str = "") -> None:
    """Refuses a NaN or infinite number anywhere in `config` (also inside lists): one would
    train nothing and poison every file it reaches (JSON has no NaN)."""
    items = config.items() if hasattr(config, "items") else enumerate(config)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"config key {name!r}={value!r}: expected a finite number")
        if isinstance(value, (ml_collections.ConfigDict, dict, list, tuple)):
            check_finite(value, name + ".")


def check_choice(config, key: str, choices, prefix: str = "") -> None:
    """`check` for a key whose value must be one of `choices`."""
    check(config, key, lambda v: v in choices, f"one of {', '.join(map(str, choices))}", prefix)


def allowed_keys(defaults, open_sections=()) -> dict:
    """The key tree of a defaults ConfigDict for `require_keys`: {key: None or {sub-key: ...}}.

    The defaults are the schema: a key is allowed where it has a default. Sections named in
    `open_sections` map to None: their owner checks them (the model module its `model.*` keys)."""
    out = {}
    for key, value in defaults.items():
        if isinstance(value, ml_collections.ConfigDict) and key not in open_sections:
            out[key] = allowed_keys(value)
        else:
            out[key] = None
    return out


def with_defaults(config, defaults, open_sections=()) -> ml_collections.ConfigDict:
    """A copy of `config` in which every key it lacks has its value from `defaults` (also inside
    the sections both have, except `open_sections`): a config written before a key existed
    runs with that key's default."""
    out = copy.deepcopy(config)
    for key, value in defaults.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif (
            isinstance(value, ml_collections.ConfigDict)
            and isinstance(out[key], ml_collections.ConfigDict)
            and key not in open_sections
        ):
            out[key] = with_defaults(out[key], value)
    return out


def replace_keys(config: ml_collections.ConfigDict, overrides: dict, what: str):
    """Sets each key of `overrides` in `config`, whole (a section replaces the section, unlike
    ConfigDict.update, which merges); a key that `config` lacks is a UsageError. Returns config."""
    for key, value in overrides.items():
        if key not in config:
            raise UsageError(f"{what} config key {key!r} is unknown; known: {', '.join(config)}")
        config[key] = value
    return config


def config_to_dict(config) -> dict:
    """A JSON-friendly dict of a ConfigDict (for summaries and results)."""
    if isinstance(config, (ml_collections.ConfigDict, dict)):
        return {k: config_to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(v) for v in config]
    return config

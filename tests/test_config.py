import subprocess
import sys

import ml_collections
import pytest

from synth_jax import cli
from synth_jax.config import (
    apply_overrides,
    load_config,
    require_keys,
    sibling,
    split_config_args,
    with_defaults,
)
from synth_jax.errors import UsageError
from synth_jax.models import model_config
from synth_jax.train import trainer

CONFIG = """
import ml_collections
def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.lr = 0.1
    c.steps = 10
    c.name = "x" if arg is None else arg
    c.flag = False
    c.sizes = (1, 2)
    c.model = ml_collections.ConfigDict({"depth": 2})
    return c
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.py"
    path.write_text(CONFIG)
    return str(path)


def test_overrides_are_typed(config_file):
    spec, overrides, rest = split_config_args(
        [
            "--config",
            config_file + ":variant",
            "--config.lr=0.5",
            "--config.steps",
            "1e3",
            "--config.flag=true",
            "--config.sizes=[3,4]",
            "--config.model.depth=4",
            "--workdir",
            "w",
        ]
    )
    assert rest == ["--workdir", "w"]
    config = load_config(spec, overrides)
    assert config.name == "variant"
    assert config.lr == 0.5 and config.steps == 1000 and config.flag is True
    assert config.sizes == (3, 4) and config.model.depth == 4


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("lrr", "1", "'lrr'"),
        ("model.width", "3", "'model.width'"),
        ("steps", "ten", "integer"),
        ("flag", "maybe", "true or false"),
    ],
)
def test_bad_override_names_the_key(config_file, key, value, needle):
    config = load_config(config_file)
    with pytest.raises(UsageError, match=needle):
        apply_overrides(config, {key: value})


def test_require_keys_names_unknown_key():
    config = ml_collections.ConfigDict({"a": 1, "b": {"c": 2, "typo": 3}})
    with pytest.raises(UsageError, match="'b.typo'"):
        require_keys(config, {"a": None, "b": {"c": None}})


def test_missing_config_file_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "synth_jax", "render", "--config", str(tmp_path / "nope.py")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.py" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_verb(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown verb" in capsys.readouterr().err


def test_a_config_builds_on_its_sibling(tmp_path):
    base = CONFIG.replace("get_config(arg=None)", "get_config(arg=None, lr=0.1)")
    (tmp_path / "base.py").write_text(base.replace("c.lr = 0.1", "c.lr = lr"))
    (tmp_path / "child.py").write_text(
        "from synth_jax.config import sibling\n"
        "def get_config(arg=None):\n"
        "    return sibling(__file__, 'base.py').get_config(arg, lr=0.5)\n"
    )
    config = load_config(str(tmp_path / "child.py") + ":v")
    assert config.lr == 0.5 and config.name == "v"
    with pytest.raises(UsageError, match="nope.py"):
        sibling(str(tmp_path / "child.py"), "nope.py")


def test_defaults_are_the_schema():
    config = trainer.train_config(model=model_config("ResNet-10"))
    assert dict(config.model) == dict(model_config("ResNet-10"))  # replaced whole, not merged
    with pytest.raises(UsageError, match="'lr'"):
        trainer.train_config(lr=0.1)
    old = ml_collections.ConfigDict({"seed": 3, "optim": {"lr": 0.5}})
    filled = with_defaults(old, trainer.train_config())
    assert filled.seed == 3 and filled.optim.lr == 0.5 and filled.optim.name == "adamw"
    assert "inference_mode" in filled and "inference_mode" not in old

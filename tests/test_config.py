"""mmlab.config: nested dataclass round-trips, dotted overrides, and clear errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from mmlab.config import apply_overrides, from_dict, load_config, save_config, to_dict
from mmlab.errors import ConfigError


@dataclass
class Diffusion:
    steps: int = 1000
    start_step: int = 100
    beta_end: float = 0.02
    schedule: Literal["linear", "cosine"] = "linear"


@dataclass
class Optim:
    lr: float = 1e-4
    weight_decay: float = 0.0
    amsgrad: bool = False
    clip: Optional[float] = None
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Cfg:
    name: str = "admc"
    seed: int = 1111
    modalities: tuple[str, ...] = ("A", "V", "T")
    hidden: list[int] = field(default_factory=lambda: [256, 128])
    note: str | None = None
    diffusion: Diffusion = field(default_factory=Diffusion)
    optim: Optim = field(default_factory=Optim)


def _changed() -> Cfg:
    return Cfg(
        name="x",
        seed=7,
        modalities=("A", "T"),
        hidden=[64],
        note="hi",
        diffusion=Diffusion(steps=50, schedule="cosine"),
        optim=Optim(lr=3e-3, amsgrad=True, clip=1.0, betas=(0.5, 0.9)),
    )


# ----------------------------------------------------------------- round trips
@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_round_trip_through_file(tmp_path, suffix):
    cfg = _changed()
    path = save_config(cfg, tmp_path / f"cfg{suffix}")
    back = load_config(Cfg, path)
    assert back == cfg
    assert isinstance(back.diffusion, Diffusion) and isinstance(back.optim.betas, tuple)
    assert isinstance(back.modalities, tuple) and isinstance(back.hidden, list)


def test_to_dict_is_plain_and_from_dict_inverts_it():
    d = to_dict(_changed())
    assert d["diffusion"] == {"steps": 50, "start_step": 100, "beta_end": 0.02, "schedule": "cosine"}
    assert d["optim"]["betas"] == [0.5, 0.9]
    assert from_dict(Cfg, d) == _changed()


def test_partial_file_keeps_defaults_and_empty_file_is_default(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("diffusion:\n  start_step: 50\n")
    cfg = load_config(Cfg, p)
    assert cfg.diffusion.start_step == 50 and cfg.diffusion.steps == 1000 and cfg.seed == 1111
    p.write_text("")
    assert load_config(Cfg, p) == Cfg()


def test_to_dict_rejects_non_dataclass():
    with pytest.raises(ConfigError, match="dataclass"):
        to_dict({"a": 1})


# ----------------------------------------------------------------- overrides
def test_dotted_overrides_parse_values():
    cfg = apply_overrides(
        Cfg(),
        [
            "--optim.lr=1e-3",
            "--optim.amsgrad=true",
            "--optim.clip=0.5",
            "--diffusion.start_step=50",
            "--diffusion.schedule=cosine",
            "--name=cm-arr",
            "--modalities=[A, V]",
            "--hidden=[32, 16]",
            "--optim.betas=[0.8, 0.99]",
        ],
    )
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.amsgrad is True
    assert cfg.optim.clip == 0.5
    assert cfg.diffusion.start_step == 50 and cfg.diffusion.schedule == "cosine"
    assert cfg.name == "cm-arr"
    assert cfg.modalities == ("A", "V") and cfg.hidden == [32, 16]
    assert cfg.optim.betas == (0.8, 0.99)


def test_overrides_do_not_mutate_the_original():
    base = Cfg()
    apply_overrides(base, ["--seed=1", "--diffusion.steps=3"])
    assert base == Cfg()


def test_override_none_for_optional_and_back():
    cfg = apply_overrides(Cfg(optim=Optim(clip=1.0), note="x"), ["--optim.clip=None", "--note=null"])
    assert cfg.optim.clip is None and cfg.note is None
    assert apply_overrides(cfg, ["--optim.clip=2"]).optim.clip == 2.0


def test_override_int_widens_to_float_but_not_bool():
    assert apply_overrides(Cfg(), ["--optim.weight_decay=0"]).optim.weight_decay == 0.0
    with pytest.raises(ConfigError, match="optim.weight_decay"):
        apply_overrides(Cfg(), ["--optim.weight_decay=true"])


def test_dict_overrides():
    cfg = apply_overrides(Cfg(), {"diffusion.start_step": 20, "optim.lr": 1e-2, "note": None})
    assert cfg.diffusion.start_step == 20 and cfg.optim.lr == 0.01 and cfg.note is None


def test_override_whole_section_with_mapping():
    cfg = apply_overrides(Cfg(), {"diffusion": {"steps": 10}})
    assert cfg.diffusion == Diffusion(steps=10)


def test_string_fields_keep_text_that_parses_as_another_type():
    # "123", "no", "1e-3" parse as int / bool / float, but a str field keeps the text as written
    cfg = apply_overrides(Cfg(), ["--name=123", "--note=no"])
    assert cfg.name == "123" and cfg.note == "no"
    assert apply_overrides(Cfg(), {"name": "1e-3"}).name == "1e-3"
    assert apply_overrides(Cfg(), {"note": "true"}).note == "true"


# ----------------------------------------------------------------- errors
def test_unknown_override_key_lists_known_keys():
    with pytest.raises(ConfigError) as err:
        apply_overrides(Cfg(), ["--diffusion.start_stp=5"])
    msg = str(err.value)
    assert "start_stp" in msg and "start_step" in msg and "beta_end" in msg
    with pytest.raises(ConfigError, match="known keys"):
        apply_overrides(Cfg(), ["--nope=1"])


def test_unknown_key_in_file_lists_known_keys(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"optim": {"lr": 0.1, "momentum": 0.9}}')
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, p)
    msg = str(err.value)
    assert str(p) in msg and "momentum" in msg and "weight_decay" in msg


@pytest.mark.parametrize(
    "override, key",
    [
        ("--seed=abc", "seed"),
        ("--seed=1.5", "seed"),
        ("--optim.lr=fast", "optim.lr"),
        ("--optim.amsgrad=1", "optim.amsgrad"),
        ("--diffusion.schedule=quadratic", "diffusion.schedule"),
        ("--optim.betas=[0.9]", "optim.betas"),
        ("--hidden=[a, b]", "hidden"),
        ("--modalities=A", "modalities"),
        ("--seed=None", "seed"),
    ],
)
def test_wrong_type_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(Cfg(), [override])


def test_literal_error_lists_choices():
    with pytest.raises(ConfigError, match="linear"):
        apply_overrides(Cfg(), ["--diffusion.schedule=quadratic"])


def test_override_into_a_value_is_rejected():
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides(Cfg(), ["--seed.x=1"])


@pytest.mark.parametrize("bad", ["seed=1", "--seed", "--=1"])
def test_malformed_override(bad):
    if bad == "seed=1":  # the leading dashes are optional
        assert apply_overrides(Cfg(), [bad]).seed == 1
        return
    with pytest.raises(ConfigError, match="override"):
        apply_overrides(Cfg(), [bad])


def test_wrong_type_in_file_names_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("diffusion:\n  steps: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, p)
    assert str(p) in str(err.value) and "diffusion.steps" in str(err.value)
    p.write_text("diffusion: 5\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Cfg, p)


@pytest.mark.parametrize(
    "name, text, kind",
    [("bad.json", '{"seed": 1,', "JSON"), ("bad.yaml", "seed: [1, 2\n", "YAML"), ("top.yaml", "- 1\n- 2\n", "mapping")],
)
def test_malformed_file_names_the_file(tmp_path, name, text, kind):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(Cfg, p)
    assert str(p) in str(err.value) and kind in str(err.value)


def test_missing_required_key_is_a_config_error():
    @dataclass
    class Needs:
        dim: int
        lr: float = 0.1

    with pytest.raises(ConfigError, match=r"Needs: missing required key\(s\) \['dim'\]"):
        from_dict(Needs, {"lr": 0.2})
    assert from_dict(Needs, {"dim": 3}).dim == 3


def test_missing_file_names_the_file(tmp_path):
    p = tmp_path / "absent.json"
    with pytest.raises(ConfigError, match="absent.json"):
        load_config(Cfg, p)


def test_list_items_in_exponent_notation_are_numbers():
    """YAML 1.1 reads 1e-3 (no dot) as text; in an override's list it is the number a user means."""
    from mmlab.config import _parse_scalar

    assert _parse_scalar("[1e-3,1e-2, 1]") == [0.001, 0.01, 1]
    assert _parse_scalar("[[1e-3], a]") == [[0.001], "a"]
    assert _parse_scalar("1e-3") == 0.001
    from mmlab.methods import method_config

    assert method_config("pooled_linear", ["--c_grid=[1e-3,1e-2]"]).c_grid == [0.001, 0.01]

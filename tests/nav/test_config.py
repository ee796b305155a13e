"""Rover profile / planet loading: every rule gives file, dotted key, value, rule and line."""
from pathlib import Path

import pytest

import configs
import nav
from nav.config import RoverProfile, load_yaml_config

OSR = Path(configs.config_path("rovers", "osr")).read_text()


@pytest.mark.parametrize("name", configs.available("rovers"))
def test_packaged_rovers_load(name):
    p = nav.load_rover(name)
    assert isinstance(p, RoverProfile)
    assert p.source.endswith(f"{name}.yaml")
    assert p.hazards.max_step_m <= 2 * p.wheel_diameter_m  # ≈ wheel-size obstacle
    with pytest.raises(Exception):
        p.hazards.max_slope_deg = 1  # frozen


def test_required_profiles_exist():
    assert {"osr", "skidsteer", "sawppy"} <= set(configs.available("rovers"))
    assert {"moon", "mars", "earth"} <= set(configs.available("planets"))
    osr = nav.load_rover("osr")
    assert osr.geometry.num_wheels == 6 and osr.drive.controller == "roboclaw"
    assert osr.drive.min_turning_radius_m == pytest.approx(0.45)


@pytest.mark.parametrize("name", configs.available("planets"))
def test_packaged_planets_load(name):
    p = nav.load_planet(name)
    assert p.gravity_mps2 > 0


def _line_of(text, needle):
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def _write(tmp_path, text, name="rover.yaml"):
    f = tmp_path / name
    f.write_text(text)
    return f


@pytest.mark.parametrize("old,new,key,rule", [
    ("max_speed_mps: 0.35", "max_speed_mps: -1", "drive.max_speed_mps", "must be > 0"),
    ("max_speed_mps: 0.35", "max_speed_mps: '0.35'", "drive.max_speed_mps", "must be a number"),
    ("max_speed_mps: 0.35", "max_speed_mps: true", "drive.max_speed_mps", "must be a number"),
    ("num_wheels: 6", "num_wheels: 6.5", "geometry.num_wheels", "must be an integer"),
    ("controller: roboclaw", "controller: sabertooth", "drive.controller", "must be one of"),
    ("max_slope_deg: 20.0", "max_slope_deg: 95", "hazards.max_slope_deg", "must be < 90"),
    ("unknown: lethal", "unknown: maybe", "hazards.unknown", "must be one of lethal, penalty"),
    ("steerable_corners: true", "steerable_corners: 1", "drive.steerable_corners", "must be true or false"),
    ("max_step_m: 0.15 ", "max_stepp_m: 0.15 ", "hazards.max_stepp_m", "unknown key; did you mean 'max_step_m'"),
    ("wheelbase_m: 0.48", "wheelbase_m: 0.9", "geometry.wheelbase_m", "must be <= geometry.length_m"),
])
def test_rule_violations_name_file_key_value_rule_line(tmp_path, old, new, key, rule):
    assert old in OSR
    text = OSR.replace(old, new)
    f = _write(tmp_path, text)
    with pytest.raises(nav.ConfigError) as ei:
        nav.load_rover(f)
    e = ei.value
    msg = str(e)
    assert str(f) in msg and key in msg and rule in msg, msg
    assert e.key == key
    assert e.line == _line_of(text, new.split(":")[0].strip() + ":"), msg
    assert f"(line {e.line})" in msg


def test_missing_key_is_named(tmp_path):
    text = "\n".join(l for l in OSR.splitlines() if "max_roughness_m" not in l)
    f = _write(tmp_path, text)
    with pytest.raises(nav.ConfigError, match=r"hazards\.max_roughness_m.*required key is missing"):
        nav.load_rover(f)


def test_unknown_top_level_key(tmp_path):
    f = _write(tmp_path, OSR + "\ncolour: red\n")
    with pytest.raises(nav.ConfigError, match=r"colour = 'red': unknown key") as ei:
        nav.load_rover(f)
    assert ei.value.line == len(OSR.splitlines()) + 2


def test_duplicate_key(tmp_path):
    f = _write(tmp_path, OSR.replace("  num_wheels: 6", "  num_wheels: 6\n  num_wheels: 4"))
    with pytest.raises(nav.ConfigError, match=r"geometry\.num_wheels.*duplicate key"):
        nav.load_rover(f)


def test_yaml_syntax_error_names_line(tmp_path):
    text = OSR.replace("  mass_kg: 12.0", "  mass_kg: [12.0")
    f = _write(tmp_path, text)
    with pytest.raises(nav.ConfigError, match="YAML syntax error") as ei:
        nav.load_rover(f)
    assert str(f) in str(ei.value) and ei.value.line is not None


def test_section_must_be_mapping(tmp_path):
    text = OSR.split("drive:")[0] + "drive: fast\n" + "hazards:" + OSR.split("hazards:")[1]
    f = _write(tmp_path, text)
    with pytest.raises(nav.ConfigError, match=r"drive = 'fast': must be a mapping"):
        nav.load_rover(f)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(nav.ConfigError, match="file is empty"):
        nav.load_rover(_write(tmp_path, ""))
    with pytest.raises(nav.ConfigError, match="no rover config named 'nosuch'.*osr"):
        nav.load_rover("nosuch")


def test_not_utf8(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(nav.ConfigError, match="not UTF-8"):
        nav.load_rover(f)


def test_defaults_and_derived_values():
    p = load_yaml_config(RoverProfile, "inline.yaml", text=OSR)
    assert p.hazards.unknown_cost == 5.0
    assert p.step_window_m == pytest.approx(2 * p.geometry.wheel_radius_m)
    assert p.inflation_radius_m == pytest.approx(p.geometry.width_m / 2)

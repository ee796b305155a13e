"""The distribution carries every top-level package, the YAML configs and the console script."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                        "-w", str(out), str(ROOT)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{r.stdout}\n{r.stderr}")
    wheels = list(out.glob("rovernav-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in ("nav", "perception", "drivers", "sim", "hil", "configs"):
        assert f"{pkg}/__init__.py" in names, pkg
    for yaml in ("configs/rovers/osr.yaml", "configs/rovers/skidsteer.yaml", "configs/rovers/sawppy.yaml",
                 "configs/planets/mars.yaml", "configs/planets/moon.yaml", "configs/planets/earth.yaml"):
        assert yaml in names, yaml
    ep = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(ep).decode()
    assert "rover = hil.cli:main" in text


def test_wheel_installs_and_finds_configs(wheel, tmp_path):
    """A plain (non-editable) install finds the packaged YAML from outside the source tree."""
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                        str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    code = ("import configs, nav; p = nav.load_rover('osr'); print(p.source); "
            "print(configs.config_dir())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert str(target) in r.stdout

"""Packaged YAML: rover profiles (``rovers/``), planets (``planets/``).

The files are package data so they are found after a plain ``pip install .``;
:func:`config_path` resolves a name to a file.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["config_dir", "config_path", "available"]


def config_dir() -> Path:
    """Directory holding the packaged YAML files."""
    return Path(str(resources.files(__name__)))


def available(kind: str) -> list[str]:
    """Names of the packaged configs of one kind (``"rovers"``, ``"planets"``)."""
    d = config_dir() / kind
    return sorted(p.stem for p in d.glob("*.yaml"))


def config_path(kind: str, name_or_path: str | Path) -> Path:
    """Resolve ``name_or_path`` to a YAML file.

    A path to an existing file is returned as is; otherwise ``name`` is looked up
    as ``configs/<kind>/<name>.yaml``.
    """
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    cand = config_dir() / kind / f"{name_or_path}.yaml"
    if cand.is_file():
        return cand
    names = ", ".join(available(kind)) or "none"
    raise FileNotFoundError(
        f"no {kind[:-1] if kind.endswith('s') else kind} config named {str(name_or_path)!r}: "
        f"not a YAML file, and not one of the packaged {kind}: {names}"
    )

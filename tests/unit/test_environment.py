"""The environment the tests run in is the locked one, and the set-up fails clearly on bad input."""

from __future__ import annotations

import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import torch
from packaging.version import Version

from interp.core.model import cache_kv, cache_length, check_cache_grew
from interp.errors import InterpError

ROOT = Path(__file__).resolve().parents[2]
# Installed by the set-up's build or by pip itself, not part of the project's dependency set.
NOT_LOCKED = {"interp", "setuptools", "wheel"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[_norm(name)] = version
    return pins


def test_installed_versions_are_the_locked_ones():
    """CI and a newcomer's set-up run exactly the lock: no package at another version, none
    missing, none installed that the lock does not name (a dependency added to pyproject.toml
    without `bash scripts/lock.sh`)."""
    lock = _lock()
    installed = {_norm(d.metadata["Name"]): d.version.split("+")[0]
                 for d in metadata.distributions()}
    installed = {k: v for k, v in installed.items() if k not in NOT_LOCKED}
    wrong = {k: (v, installed.get(k)) for k, v in lock.items() if installed.get(k) != v}
    extra = sorted(set(installed) - set(lock))
    assert not wrong, f"installed versions differ from requirements.lock (locked, installed): {wrong}"
    assert not extra, f"installed but not in requirements.lock: {extra}"
    # pyproject.toml bounds it: 5.24 renamed the cache argument that TransformerLens 4.3 reads.
    assert Version(lock["transformers"]) < Version("5.24")


def _fake_python(tmp_path: Path, version_ok: bool, has_venv: bool) -> Path:
    fake = tmp_path / "python3"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1" = "-V" ]; then echo "Python 3.10.12"; exit 0; fi\n'
        f'case "$2" in *ensurepip*) exit {0 if has_venv else 1};; '
        f'*version_info*) exit {0 if version_ok else 1};; esac\nexit 3\n')
    fake.chmod(0o755)
    return fake


@pytest.mark.parametrize(("version_ok", "has_venv", "says"), [
    (False, True, "interp needs Python >= 3.11 but"),
    (True, False, "apt-get install -y python3-venv"),
])
def test_setup_refuses_an_unusable_python_in_one_line(tmp_path, version_ok, has_venv, says):
    env = dict(os.environ, PYTHON=str(_fake_python(tmp_path, version_ok, has_venv)),
               INTERP_VENV=str(tmp_path / "venv"))
    run = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[setup] error:") and says in lines[0]
    assert "Traceback" not in run.stdout + run.stderr
    assert not (tmp_path / "venv").exists()


def test_cache_readers_on_the_locked_transformers():
    from transformers import DynamicCache

    cache = DynamicCache()
    assert cache_length(cache) == 0
    k, v = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4)
    cache.update(k, v, 0)
    cache.update(k + 1, v + 1, 1)
    assert cache_length(cache) == 5
    torch.testing.assert_close(cache_kv(cache, 1)[0], k + 1, rtol=0, atol=0)
    torch.testing.assert_close(cache_kv(cache, 0)[1], v, rtol=0, atol=0)
    check_cache_grew(cache, 5)
    with pytest.raises(InterpError, match="KV cache holds 5 positions after 6 were fed"):
        check_cache_grew(cache, 6)

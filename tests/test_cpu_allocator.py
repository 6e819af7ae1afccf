"""The heap allocator a training process runs with: how it is detected and logged, the install script's contract,
and the Makefile's training targets preloading tcmalloc."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training import cpu_allocator
from training.cpu_allocator import active_allocator, log_allocator

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "training" / "install_tcmalloc.sh"
LIBC = "7f0000000000-7f0000020000 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
ANONYMOUS = "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n"


def tcmalloc_path() -> str:
    return subprocess.run(["sh", str(SCRIPT), "--path"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.parametrize("library, expected", [
    ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4.5.10", "tcmalloc"),
    ("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "jemalloc"),
    ("/opt/lib/libmimalloc.so.2", "mimalloc"),
])
def test_a_mapped_allocator_library_names_the_allocator(tmp_path, library, expected):
    maps = tmp_path / "maps"
    maps.write_text(LIBC + f"7f1000000000-7f1000040000 r-xp 00000000 08:01 456 {library}\n" + ANONYMOUS)
    assert active_allocator(str(maps)) == expected


def test_without_one_it_is_glibc_and_unreadable_maps_say_unknown(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text(LIBC + ANONYMOUS)
    assert active_allocator(str(maps)) == "glibc"
    assert active_allocator(str(tmp_path / "missing")) == "unknown"


def test_a_process_started_with_tcmalloc_preloaded_reports_it():
    path = tcmalloc_path()
    if not path:
        pytest.skip("libtcmalloc-minimal4 is not installed here (training/install_tcmalloc.sh installs it)")
    code = "from training.cpu_allocator import active_allocator; print(active_allocator())"
    env = {**os.environ, "LD_PRELOAD": path}
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip() == "tcmalloc"
    env.pop("LD_PRELOAD")
    assert subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip() == "glibc"


def test_the_log_says_which_allocator_and_how_to_get_tcmalloc(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="training.cpu_allocator")
    monkeypatch.setattr(cpu_allocator, "active_allocator", lambda: "glibc")
    assert log_allocator() == "glibc"
    assert "glibc malloc" in caplog.text and "LD_PRELOAD=" in caplog.text and "libtcmalloc-minimal4" in caplog.text
    caplog.clear()
    monkeypatch.setattr(cpu_allocator, "active_allocator", lambda: "tcmalloc")
    assert log_allocator() == "tcmalloc"
    assert "Heap allocator: tcmalloc." in caplog.text and "LD_PRELOAD" not in caplog.text


def test_the_install_script_prints_an_existing_library_or_nothing():
    result = subprocess.run(["sh", str(SCRIPT), "--path"], capture_output=True, text=True)
    assert result.returncode == 0
    path = result.stdout.strip()
    assert path == "" or (os.path.isfile(path) and os.path.basename(path) == "libtcmalloc_minimal.so.4")


def test_the_training_targets_preload_what_the_script_finds():
    recipes = subprocess.run(["make", "-n", "-o", ".venv/.installed", "quickstart", "ablation"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    preload = 'LD_PRELOAD="$(sh training/install_tcmalloc.sh --path)"'
    assert f"{preload} .venv/bin/python -m training.quickstart" in recipes
    assert f"{preload} .venv/bin/python -m training.ablation --jobs 2" in recipes

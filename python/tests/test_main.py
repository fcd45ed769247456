"""python -m clxent: the C command with its arguments, output and exit status; the wheel's bundle."""
import os
import subprocess
import sys

import pytest

import clxent
from clxent.__main__ import command

needs_command = pytest.mark.skipif(command() is None, reason="no clxent command (neither bundled nor build/clxent)")


def run_module(*args):
    return subprocess.run([sys.executable, "-m", "clxent", *args], capture_output=True, text=True, timeout=300)


def test_an_installed_wheel_loads_its_own_library():
    # the package's folders: one for a wheel, two for an editable install (source, site-packages)
    folders = [d for d in clxent.__path__ if os.path.exists(os.path.join(d, "libclxent.so.1"))]
    if not folders:
        pytest.skip("not installed by pip (no bundled libclxent.so.1)")
    if os.environ.get("CLXENT_LIBRARY"):
        pytest.skip("CLXENT_LIBRARY overrides the bundled library")
    assert os.path.samefile(clxent._lib._name, os.path.join(folders[0], "libclxent.so.1"))
    assert os.path.samefile(command(), os.path.join(folders[0], "clxent"))


@needs_command
@pytest.mark.parametrize("args,status", [
    (["--help"], 0), (["help"], 0), ([], 2), (["no-such-command"], 2), (["demo", "--bogus"], 2),
    (["devices", "extra"], 2), (["check", "--bogus"], 2), (["bench", "--repeat", "0"], 2), (["bench", "--help"], 0)])
def test_the_same_output_and_exit_status_as_the_command(args, status):
    got = run_module(*args)
    direct = subprocess.run([command(), *args], capture_output=True, text=True, timeout=300)
    assert got.returncode == status == direct.returncode, (got.returncode, got.stderr)
    assert (got.stdout, got.stderr) == (direct.stdout, direct.stderr)


@needs_command
def test_demo_devices_and_check_run():
    demo = run_module("demo")
    assert demo.returncode == 0 and "demo: all values match the spec" in demo.stdout, demo.stdout + demo.stderr
    devices = run_module("devices")
    assert devices.returncode == 0 and "platform 0:" in devices.stdout, devices.stdout + devices.stderr
    check = run_module("check", "--quiet")
    assert check.returncode == 0, check.stdout + check.stderr

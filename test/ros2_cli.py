"""The real ROS 2 command line (``ros2 launch/topic/param/lifecycle``) for the launch tests.

Where it comes from, in order: a ``ros2`` on PATH that already finds fcn_road_seg (a system ROS 2 with this
package built and sourced: ``colcon build && source install/setup.bash``), else the env that
``../shared/ros2-cli/build.sh`` builds (``$FCN_ROS2_CLI_ENV``, default ``~/.cache/ros2-cli-jazzy``), into
which this checkout is installed with its ``ament_pip_install.sh`` whenever the checkout changed (a stamp of
the installed files' sizes and times; a lock keeps concurrent runs from installing over each other).

``python test/ros2_cli.py install`` does that install (scripts/test.sh runs it after building the env).
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "fcn_road_seg"
# What the install copies: a change to any of these makes the installed package stale.
SOURCES = ("setup.py", "setup.cfg", "package.xml", "fcn_road_seg", "launch", "config", "models", "samples", "resource")
LOCK_TIMEOUT_S = 600.0


def env_dir() -> Path:
    return Path(os.environ.get("FCN_ROS2_CLI_ENV", Path.home() / ".cache" / "ros2-cli-jazzy")).expanduser()


def source_stamp() -> str:
    digest = hashlib.sha256()
    for top in SOURCES:
        for path in sorted([ROOT / top] if (ROOT / top).is_file() else (ROOT / top).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                st = path.stat()
                digest.update(f"{path.relative_to(ROOT)} {st.st_size} {st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class Ros2Cli:
    """Runs ``ros2`` commands with an environment in which ``ros2`` finds this package."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """``ros2 ARGS`` to completion (stdout and stderr together in ``.stdout``)."""
        return subprocess.run(["ros2", *args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=timeout)

    def python(self, code: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Python code run by the interpreter ``ros2`` runs on (where ``launch`` and ``launch_ros`` import)."""
        return subprocess.run(["python3", "-c", code], env=self.env, capture_output=True, text=True, timeout=timeout)

    def launch(self, *args: str, log: Path) -> Launch:
        """``ros2 launch ARGS`` in the background, its output in ``log``."""
        return Launch(subprocess.Popen(["ros2", "launch", *args], env=self.env, stdout=log.open("w"),
                                       stderr=subprocess.STDOUT, start_new_session=True), log)

    def share(self) -> Path:
        out = self.python(f"from ament_index_python.packages import get_package_share_directory as g; "
                          f"print(g('{PACKAGE}'))")
        return Path(out.stdout.strip())


class Launch:
    """A running ``ros2 launch``; ``stop`` sends SIGINT (as Ctrl-C) and waits for it to finish."""

    def __init__(self, proc: subprocess.Popen, log: Path) -> None:
        self.proc, self.log = proc, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"ros2 launch still running after {timeout:g} s:\n{self.output()[-3000:]}") from None

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _activated_env(activate: Path) -> dict[str, str]:
    out = subprocess.run(["bash", "-c", f'source "{activate}" >/dev/null && env -0'], capture_output=True,
                         env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}, check=True, timeout=60)
    env = dict(item.split("=", 1) for item in out.stdout.decode().split("\0") if "=" in item)
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):  # the test run's own DDS domain
        if key in os.environ:
            env[key] = os.environ[key]
    return env


def _system_finds_package() -> bool:
    if not shutil.which("ros2"):
        return False
    prefixes = os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)
    return any((Path(p) / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).is_file()
               for p in prefixes if p)


def install(env_root: Path) -> None:
    """Install this checkout into the ros2-cli env unless the installed copy is this checkout already."""
    stamp_file = env_root / "venv" / "share" / PACKAGE / ".fcn_road_seg_source_stamp"
    with (env_root / ".fcn_road_seg_install.lock").open("w") as lock:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another run held {lock.name} for {LOCK_TIMEOUT_S:g} s") from None
                time.sleep(1.0)
        stamp = f"{ROOT}\n{source_stamp()}"
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return
        python = env_root / "venv" / "bin" / "python"
        has_deps = subprocess.run([str(python), "-c", "import onnxruntime, cv2, rosbags, rosbags.image, tqdm"],
                                  capture_output=True).returncode == 0
        cmd = ["bash", str(env_root / "ament_pip_install.sh"), str(ROOT), "--extras", "ros"]
        # cwd outside the checkout: its editable-install egg-info would stand in for the installed metadata
        res = subprocess.run(cmd + ([] if not has_deps else ["--no-deps"]), capture_output=True, text=True,
                             timeout=1200, cwd=env_root)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
        stamp_file.write_text(stamp)


def find() -> tuple[Ros2Cli | None, str]:
    """Return the ros2 command line for the tests, or None and why there is none."""
    if _system_finds_package():
        return Ros2Cli(dict(os.environ)), ""
    root = env_dir()
    if not (root / "activate.sh").is_file() or not (root / "ament_pip_install.sh").is_file():
        return None, (f"no ROS 2 command line: no system `ros2` that finds {PACKAGE} and no env at {root} "
                      "(scripts/test.sh builds it with ../shared/ros2-cli/build.sh)")
    install(root)
    return Ros2Cli(_activated_env(root / "activate.sh")), ""


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python test/ros2_cli.py install")
    install(env_dir())
    print(f"ros2_cli: {PACKAGE} from {ROOT} is installed in {env_dir()}")

"""Every output is written whole or not at all (issue 22, items 1, 2 and 14).

A write that fails is one line naming the path, the OS reason and the fix, with exit 1. Failures are real, also as root
(who ignores permission bits): a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored, as `ulimit -f` does in a shell), a path
whose parent is a regular file, a folder standing where the file should go.
"""
from __future__ import annotations

import json
import resource
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fcn_road_seg.errors import FcnRoadSegError, OutputError
from fcn_road_seg.outputs import check_writable, write_bytes, write_image, write_json

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "kitti_um_000000.jpg"


def _limit_file_size(n_bytes: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # as a shell's `ulimit -f`: the write fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, n_bytes))
    return preexec


def run(argv: list, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, timeout=600,
                         preexec_fn=_limit_file_size(file_size_limit) if file_size_limit else None)
    assert "Traceback" not in res.stderr, res.stderr
    return res


def cli(*args, file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    return run(["-m", "fcn_road_seg.cli", *args], file_size_limit)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name)


def test_a_write_under_a_file_or_onto_a_folder_names_path_reason_and_fix(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(OutputError, match=rf"cannot write {blocker}/m.png: Not a directory; a parent of this path is "
                                          "a file"):
        write_image(blocker / "m.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "m.png").mkdir()
    with pytest.raises(OutputError, match=rf"cannot write {tmp_path}/m.png: Is a directory; a folder stands where"):
        write_image(tmp_path / "m.png", np.zeros((4, 4), np.uint8))
    assert leftovers(tmp_path) == []


def test_a_failed_write_keeps_the_old_file_whole(tmp_path):
    target = tmp_path / "report.json"
    write_json(target, {"old": True})
    code = ("import sys; from fcn_road_seg.outputs import write_bytes; from fcn_road_seg.errors import OutputError\n"
            "try:\n    write_bytes(sys.argv[1], b'x' * 100_000)\n"
            "except OutputError as err:\n    print(err)\n")
    res = run(["-c", code, target], file_size_limit=50_000)
    assert f"cannot write {target}: File too large; the file-size limit (`ulimit -f`) is too small" in res.stdout
    assert json.loads(target.read_text()) == {"old": True} and leftovers(tmp_path) == []
    write_bytes(target, b"{}")  # and without the limit it is replaced
    assert target.read_text() == "{}"


def test_written_files_get_the_usual_permissions(tmp_path):
    path = write_image(tmp_path / "a" / "m.png", np.full((4, 4), 255, np.uint8))
    assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).min() == 255
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_the_output_folder_is_checked_without_creating_it(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(FcnRoadSegError, match=f"--out {blocker}/sub lies under {blocker}, which is a file") as err:
        check_writable(blocker / "sub")
    assert not isinstance(err.value, OutputError)  # a bad argument (exit 2), not a failed write
    check_writable(tmp_path / "new" / "deeper")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"]


def test_infer_lists_what_it_could_not_write_and_exits_1(tmp_path, tiny_onnx, kitti_images):
    res = cli("infer", "--model", tiny_onnx, *kitti_images, "--out", tmp_path / "o", file_size_limit=20_000)
    assert res.returncode == 1  # masks (~2 kB) fit under the limit, overlays (~400 kB) do not
    unwritten = [tmp_path / "o" / f"{p.stem}_overlay.png" for p in kitti_images]
    assert f"could not write 2 files: {unwritten[0]}, {unwritten[1]}" in res.stderr
    assert f"cannot write {unwritten[0]}: File too large" in res.stderr
    assert not any(p.exists() for p in unwritten) and leftovers(tmp_path) == []
    assert all((tmp_path / "o" / f"{p.stem}_mask.png").is_file() for p in kitti_images)

    (tmp_path / "d" / f"{kitti_images[0].stem}_mask.png").mkdir(parents=True)  # a folder in the way
    res = cli("infer", "--model", tiny_onnx, kitti_images[0], "--out", tmp_path / "d")
    assert res.returncode == 1 and "Is a directory; a folder stands where the file should be" in res.stderr


def test_infer_whose_inputs_all_fail_creates_no_out_and_names_the_small_frame(tmp_path, tiny_onnx):
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((16, 16, 3), np.uint8))
    res = cli("infer", "--model", tiny_onnx, tiny, "--out", tmp_path / "o")
    assert res.returncode == 1 and "0 frames segmented, 1 failed" in res.stdout
    assert f"{tiny}: frame 16x16 is too small" in res.stderr
    assert not (tmp_path / "o").exists()


def test_out_under_a_file_is_refused_before_the_model_loads(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for command in (["infer", SAMPLE], ["evaluate", SAMPLE.parent]):
        res = cli(*command, "--model", tmp_path / "nope.onnx", "--out", blocker / "out")
        assert res.returncode == 2 and f"--out {blocker}/out lies under {blocker}, which is a file" in res.stderr
    res = cli("evaluate", SAMPLE.parent, "--model", tmp_path / "nope.onnx", "--out", tmp_path / "r", "--write-bag",
              blocker / "bag")
    assert res.returncode == 2 and f"--write-bag's folder {blocker} is a file; give a folder" in res.stderr
    res = cli("bag", "from-kitti", SAMPLE.parent, "-o", blocker / "sub" / "bag")
    assert res.returncode == 2 and f"-o's folder {blocker}/sub lies under {blocker}, which is a file" in res.stderr


def test_evaluate_exits_1_naming_the_report_file_it_could_not_write(tmp_path, tiny_onnx, shared_data):
    out = tmp_path / "r"
    res = cli("evaluate", shared_data / "kitti_road" / "training", "--model", tiny_onnx, "--out", out,
              file_size_limit=100_000)  # pr_curve.png (~20 kB) fits, montage.png (~150+ kB) does not
    assert res.returncode == 1, res.stderr
    assert f"error: cannot write {out}/montage.png: File too large" in res.stderr
    assert "report written" not in res.stderr and "-> " not in res.stdout
    assert not (out / "report.json").exists() and not (out / "montage.png").exists() and leftovers(out) == []


def test_a_bag_that_cannot_fit_is_refused_before_writing(tmp_path, shared_data):
    bag = tmp_path / "bag"
    res = cli("bag", "from-kitti", shared_data / "kitti_road" / "training", "-o", bag, file_size_limit=1_000_000)
    assert res.returncode == 1
    assert f"cannot write {bag}: about 3.7 MB for 2 frames of a bag, but the file-size limit (`ulimit -f`) is " \
           "1.0 MB; raise the limit or write fewer frames" in res.stderr
    assert not bag.exists() and leftovers(tmp_path) == []


def test_sqlite_running_out_of_room_mid_bag_is_one_error_and_leaves_no_bag(tmp_path):
    code = """
import sys
import numpy as np
from fcn_road_seg.errors import OutputError
from fcn_road_seg.evaluation.bag import BagOut
try:
    with BagOut(sys.argv[1]) as bag:
        for i in range(20):
            bag.write_image("/camera/image_raw", np.full((375, 1242, 3), i, np.uint8), "bgr8", i + 1, "camera")
except OutputError as err:
    print(err)
"""
    bag = tmp_path / "bag"
    res = run(["-c", code, bag], file_size_limit=5_000_000)  # 3 frames fit, sqlite fails in the 4th
    assert res.stdout.startswith(f"cannot write {bag}: ")
    assert "database or disk is full" in res.stdout or "disk I/O error" in res.stdout, res.stdout
    assert not bag.exists() and leftovers(tmp_path) == []


def test_bag_summary_counts_in_words(tmp_path, shared_data):
    res = cli("bag", "from-kitti", shared_data / "kitti_road" / "training", "-o", tmp_path / "bag", "--limit", "1")
    assert res.returncode == 0 and f"wrote 1 frame to {tmp_path / 'bag'} (sqlite3)" in res.stdout
    assert (tmp_path / "bag" / "metadata.yaml").is_file() and (tmp_path / "bag" / "bag.db3").is_file()
    assert leftovers(tmp_path) == []

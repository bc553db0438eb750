"""Bird's-eye view transform: the KITTI devkit's grid on real calibrations and GT, and a synthetic plane."""
import math

import cv2
import numpy as np
import pytest

from fcn_road_seg.evaluation.bev import (KITTI_BEV, CameraPose, GroundGrid, kitti_bev_lut, kitti_camera_pose,
                                         kitti_road_projection, ground_lut, matrix_from_quaternion, occupancy,
                                         quaternion_from_matrix, read_kitti_calib, warp_image, warp_labels)
from fcn_road_seg.evaluation.groundtruth import decode_kitti_gt


@pytest.fixture(scope="module")
def um0(shared_data):
    root = shared_data / "kitti_road" / "training"
    calib = read_kitti_calib(root / "calib" / "um_000000.txt")
    gt = cv2.imread(str(root / "gt_image_2" / "um_road_000000.png"))
    return calib, gt


def test_devkit_grid_geometry():
    """BevParams(0.05, (-10, 10), (6, 46)): 800 rows (Z, far first) x 400 columns (X, left first)."""
    x, z = KITTI_BEV.centres()
    assert KITTI_BEV.shape == (800, 400) == x.shape
    assert x[0, 0] == pytest.approx(-9.975) and x[0, -1] == pytest.approx(9.975)
    assert z[0, 0] == pytest.approx(45.975) and z[-1, 0] == pytest.approx(6.025)
    assert KITTI_BEV.cell_of(-9.99, 45.99) == (0, 0) and KITTI_BEV.cell_of(9.99, 6.01) == (799, 399)


def test_known_ground_point_lands_in_its_cell(um0):
    """A road point projected by the full calibration chain is the pixel its cell looks up."""
    calib, gt = um0
    lut = kitti_bev_lut(kitti_road_projection(calib), gt.shape[:2])
    r0 = np.eye(4)
    r0[:3, :3] = calib["R0_rect"]
    tr = np.vstack([calib["Tr_cam_to_road"], [0, 0, 0, 1]])
    for x, z in ((-4.975, 25.975), (2.525, 12.025), (0.025, 40.025)):  # cell centres
        u, v, w = calib["P2"] @ r0 @ np.linalg.solve(tr, [x, 0.0, z, 1.0])
        u, v = u / w, v / w
        row, col = KITTI_BEV.cell_of(x, z)
        assert lut.valid[row, col]
        assert (lut.near_x[row, col], lut.near_y[row, col]) == (math.floor(u) - 1, math.floor(v) - 1)  # devkit
        assert lut.map_x[row, col] == pytest.approx(u - 1.5, abs=1e-3)
        # the same point in a REP-103 grid (x forward = Z, y left = -X) through CameraInfo's P = P2
        grid = GroundGrid(0.05, 20.0, 46.0)
        g = ground_lut(calib["P2"], kitti_camera_pose(calib), gt.shape[:2], grid)
        gr, gc = int((-x - grid.origin[1]) / grid.resolution), int(z / grid.resolution)
        assert (g.map_x[gr, gc], g.map_y[gr, gc]) == pytest.approx((u, v), abs=0.02)


def test_real_gt_has_road_where_the_devkit_puts_it(um0):
    """Cells checked by hand for um_000000.

    Tr33 = (P2 R0_rect Tr_cam_to_road^-1)[:, [0, 2, 3]] is
    [[721.407, 609.674, -120.952], [-11.085, 177.700, 1101.144], [-7.44e-5, 0.99998, -0.28685]].
    Cell (400, 100): X = -10 + 0.025 + 5 = -4.975, Z = 45.975 - 20 = 25.975 -> (u, v) = (472.06, 224.70)
    -> devkit pixel (row 223, col 471), magenta in the GT (road). Cell (0, 60): X = -6.975, Z = 45.975 ->
    (500.73, 204.61) -> (203, 499), road. Cell (0, 200): X = 0.025, Z = 45.975 -> (611.26, 202.92) ->
    (201, 610), red (not road: the road bends left). Cell (600, 300): X = 5.025, Z = 15.975 -> (844.22,
    247.60) -> (246, 843), red. Cell (799, 200): X = 0.025, Z = 6.025 -> v = 378.4 > 375, below the image:
    not evaluated; cell (799, 0): u = -634.9, not evaluated.
    """
    calib, gt = um0
    lut = kitti_bev_lut(kitti_road_projection(calib), gt.shape[:2])
    road, valid = warp_labels(lut, *decode_kitti_gt(gt))
    expected = {(400, 100): ((223, 471), True), (0, 60): ((203, 499), True), (0, 200): ((201, 610), False),
                (600, 300): ((246, 843), False)}
    for (row, col), ((pr, pc), is_road) in expected.items():
        assert (lut.near_y[row, col], lut.near_x[row, col]) == (pr, pc)
        assert valid[row, col] and road[row, col] == is_road, (row, col)
    for cell in ((799, 200), (799, 0)):
        assert not lut.valid[cell] and not valid[cell]
    # the colour GT warps like the devkit's transform2BEV: black (not evaluated) where unseen
    bev = warp_image(lut, gt)
    assert (bev[~lut.valid] == 0).all() and bev.shape == (800, 400, 3)


def _render_plane(k, pose: CameraPose, size, pattern):
    """Perspective image of the ground plane: per pixel, intersect its ray with z = 0 (0 above the horizon)."""
    h, w = size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    rays = np.linalg.inv(k) @ np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    m = pose.matrix()
    d = m[:3, :3] @ rays
    centre = m[:3, 3:4]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d[2] < -1e-9, -centre[2] / d[2], np.nan)
    ground = centre + t * d
    hit = np.isfinite(t)
    out = np.zeros(u.size, np.uint8)
    out[hit] = pattern(ground[0, hit], ground[1, hit])
    return out.reshape(h, w)


def test_synthetic_plane_round_trips():
    """A checkerboard painted on the ground, rendered by a tilted camera, warps back to the checkerboard."""
    def checker(x, y):
        return np.where((np.floor(x) + np.floor(y)) % 2 == 0, 200, 50).astype(np.uint8)

    k = np.array([[700.0, 0, 620], [0, 700, 187], [0, 0, 1]])
    pose = CameraPose(x=0.3, y=-0.2, height=1.6, roll=0.01, pitch=0.05, yaw=0.03)
    size = (375, 1242)
    image = _render_plane(k, pose, size, checker)
    grid = GroundGrid(0.1, 20.0, 40.0)
    lut = ground_lut(k, pose.matrix(), size, grid)
    bev = warp_image(lut, image)
    x, y = grid.centres()
    near_edge = (np.minimum(x % 1, 1 - x % 1) < 0.3) | (np.minimum(y % 1, 1 - y % 1) < 0.3)
    check = lut.valid & ~near_edge & (x < 20)
    assert check.sum() > 3000
    assert (bev[check] == checker(x[check], y[check])).mean() > 0.995
    # the camera cannot see the ground right below it, nor outside its field of view
    assert not lut.valid[:, :int(2.0 / grid.resolution)].any()
    # occupancy: probability 1 on the painted squares -> free, elsewhere occupied, unseen unknown
    prob = (image == 200).astype(np.float32)
    occ = occupancy(lut, prob, 0.5)
    assert set(np.unique(occ)) == {-1, 0, 100}
    assert (occ[check] == np.where(checker(x[check], y[check]) == 200, 0, 100)).mean() > 0.99


def test_pose_and_quaternion_round_trip(um0):
    calib, _ = um0
    t = kitti_camera_pose(calib)
    pose = CameraPose.from_matrix(t)
    assert pose.height == pytest.approx(1.597, abs=1e-3)  # Tr_cam_to_road: the camera 1.6 m above the road
    assert np.allclose(pose.matrix(), t, atol=1e-5)
    assert np.allclose(matrix_from_quaternion(*quaternion_from_matrix(t[:3, :3])), t[:3, :3], atol=1e-5)

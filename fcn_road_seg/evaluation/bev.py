"""Bird's-eye view (BEV): ground grids, a cell -> image-pixel lookup table built once, and the warp.

Two grids, one lookup table (``BevLut``) and ``cv2.remap`` (nearest for labels, bilinear for probability);
cells whose ground point does not project into the image are "not evaluated" / unknown.

``KittiBevGrid`` is the KITTI road benchmark's BEV exactly as the devkit defines it: ``BirdsEyeView`` and
``BevParams`` in ``devkit_road/python/BirdsEyeView.py`` of the KITTI road devkit (T. Kuehnl, J. Fritsch,
2013; used by its ``transform2BEV.py``; read in the copy at github.com/JackSparrow3/My_kittiseg):

* the road frame of ``Tr_cam_to_road`` (X right, Y down, Z forward; the road is the plane Y = 0);
* cells of ``bev_res`` = 0.05 m over X in [-10, 10) and Z in [6, 46): 800 rows x 400 columns; column j is
  X = -10 + 0.025 + 0.05 j (left to right), row i is Z = 45.975 - 0.05 i, so row 0 is the farthest and the
  camera sits below the last row (``computeBEVLookUpTable``: ``x_vec``/``z_vec`` from ``np.arange``, in float32);
* a cell sees the image where ``Tr33 = (P2 @ R0_rect @ inv(Tr_cam_to_road))[:, [0, 2, 3]]`` maps
  ``(X, Z, 1)``: ``(u, v) = (Tr33 @ (X, Z, 1))[:2] / [2]``; the devkit reads (u, v) as 1-based (its MATLAB
  origin), keeps cells with 1 <= u <= W and 1 <= v <= H and takes pixel (row, col) = (floor(v) - 1,
  floor(u) - 1); the other cells stay 0, which in a colour GT means "not evaluated".

We reproduce that pixel choice exactly for nearest sampling (labels, GT, the camera image); bilinear
sampling (probability) is centred on the same pixel, at (u - 1.5, v - 1.5) in 0-based pixel-centre
coordinates, so it rounds to the devkit's pixel.

``GroundGrid`` is a REP-103 grid for ``nav_msgs/OccupancyGrid``: x forward, y left, the ground is z = 0 of
the grid's frame; rows along y (from -width/2), columns along x (from 0), as OccupancyGrid stores them. It
is seen by a pinhole camera (``CameraInfo`` P, or K) at a ``CameraPose`` in that frame, with the ROS/OpenCV
pixel convention (pixel centres at whole 0-based coordinates).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputImageError

__all__ = ["KittiBevGrid", "KITTI_BEV", "GroundGrid", "CameraPose", "BevLut", "lut_from_homography",
           "read_kitti_calib", "kitti_road_projection", "kitti_bev_lut", "kitti_camera_pose",
           "road_projection_from_pose",
           "ground_lut",
           "warp_labels", "warp_probability", "warp_image", "occupancy", "ROAD_FROM_REP103",
           "quaternion_from_matrix", "matrix_from_quaternion", "transform_matrix", "sibling_topic", "OCCUPANCY_FREE",
           "OCCUPANCY_OCCUPIED",
           "OCCUPANCY_UNKNOWN"]

OCCUPANCY_FREE, OCCUPANCY_OCCUPIED, OCCUPANCY_UNKNOWN = 0, 100, -1
# KITTI road frame (X right, Y down, Z forward) <- a REP-103 ground frame (x forward, y left, z up).
ROAD_FROM_REP103 = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], np.float64)
# camera link (x forward, y left, z up) <- optical frame (x right, y down, z forward)
_LINK_FROM_OPTICAL = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], np.float64)


@dataclass(frozen=True)
class KittiBevGrid:
    """The devkit's ``BevParams``: resolution and X/Z limits (m) of the KITTI road BEV."""

    res: float = 0.05
    x_range: tuple[float, float] = (-10.0, 10.0)
    z_range: tuple[float, float] = (6.0, 46.0)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) = (Z cells, X cells): (800, 400) for the benchmark."""
        return (round((self.z_range[1] - self.z_range[0]) / self.res),
                round((self.x_range[1] - self.x_range[0]) / self.res))

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(X, Z) of every cell centre, each (rows, cols), as the devkit computes them (float32)."""
        x = np.arange(self.x_range[0] + self.res / 2, self.x_range[1], self.res)
        z = np.arange(self.z_range[1] - self.res / 2, self.z_range[0], -self.res)
        xx, zz = np.meshgrid(x, z)
        assert xx.shape == self.shape, (xx.shape, self.shape)
        return xx.astype(np.float32), zz.astype(np.float32)

    def cell_of(self, x: float, z: float) -> tuple[int, int]:
        """(row, col) of the cell holding road point (X, Z)."""
        return int(math.floor((self.z_range[1] - z) / self.res)), int(math.floor((x - self.x_range[0]) / self.res))


KITTI_BEV = KittiBevGrid()


@dataclass(frozen=True)
class GroundGrid:
    """OccupancyGrid geometry in a REP-103 frame: ``width`` m across (y), ``ahead`` m forward (x from 0)."""

    resolution: float = 0.1
    width: float = 20.0
    ahead: float = 40.0

    def __post_init__(self) -> None:
        if not (self.resolution > 0 and self.width >= self.resolution and self.ahead >= self.resolution):
            raise ValueError(f"grid needs resolution > 0 and width/ahead >= resolution, got {self}")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) = (cells along y, cells along x)."""
        return round(self.width / self.resolution), round(self.ahead / self.resolution)

    @property
    def origin(self) -> tuple[float, float]:
        """(x, y) of the outer corner of cell (0, 0), OccupancyGrid's ``info.origin``."""
        return 0.0, -self.shape[0] * self.resolution / 2

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of every cell centre, each (rows, cols)."""
        rows, cols = self.shape
        x0, y0 = self.origin
        x = x0 + (np.arange(cols) + 0.5) * self.resolution
        y = y0 + (np.arange(rows) + 0.5) * self.resolution
        xx, yy = np.meshgrid(x, y)
        return xx, yy


@dataclass(frozen=True)
class CameraPose:
    """Pose of a camera in a REP-103 ground frame: position and roll/pitch/yaw of its body.

    Position in m (``height`` above the ground), roll/pitch/yaw in rad; the body is x forward, y left, z up (pitch > 0
    looks down); its optical frame follows REP-103 optical.
    """

    x: float = 0.0
    y: float = 0.0
    height: float = 1.5
    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0

    def matrix(self) -> np.ndarray:
        """4x4 transform ground frame <- camera optical frame."""
        cr, sr, cp, sp, cy, sy = (f(a) for a in (self.roll, self.pitch, self.yaw) for f in (math.cos, math.sin))
        rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
        ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
        rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
        out = np.eye(4)
        out[:3, :3] = rz @ ry @ rx @ _LINK_FROM_OPTICAL
        out[:3, 3] = (self.x, self.y, self.height)
        return out

    @classmethod
    def from_matrix(cls, ground_from_optical: np.ndarray) -> CameraPose:
        """Return the pose whose ``matrix()`` is this rigid transform (ground frame <- optical frame)."""
        r = ground_from_optical[:3, :3] @ _LINK_FROM_OPTICAL.T
        t = ground_from_optical[:3, 3]
        return cls(float(t[0]), float(t[1]), float(t[2]), roll=math.atan2(r[2, 1], r[2, 2]),
                   pitch=math.asin(max(-1.0, min(1.0, -r[2, 0]))), yaw=math.atan2(r[1, 0], r[0, 0]))


@dataclass(frozen=True)
class BevLut:
    """Cell -> image pixel, computed once per camera geometry and image size."""

    near_x: np.ndarray  # float32 (rows, cols), whole numbers: pixel column for nearest sampling (-1: none)
    near_y: np.ndarray
    map_x: np.ndarray  # float32 (rows, cols): sub-pixel column for bilinear sampling
    map_y: np.ndarray
    valid: np.ndarray  # bool (rows, cols): the cell's ground point projects into the image
    image_size: tuple[int, int]  # (height, width) of the images it applies to

    def check(self, image: np.ndarray) -> None:
        if image.shape[:2] != self.image_size:
            raise InputImageError(f"BEV lookup table is for {self.image_size[1]}x{self.image_size[0]} images, "
                                  f"got {image.shape[1]}x{image.shape[0]}")


def lut_from_homography(h: np.ndarray, a: np.ndarray, b: np.ndarray, image_size: tuple[int, int], *,
                        devkit: bool = False) -> BevLut:
    """Lookup table of cells at ground coordinates (a, b) seen through ``h`` ((a, b, 1) -> image (u, v, w)).

    ``devkit``: KITTI devkit indexing (1-based coordinates, floor); else ROS/OpenCV (0-based, nearest).
    """
    height, width = image_size
    uvw = np.asarray(h, np.float64) @ np.stack([a.ravel(), b.ravel(), np.ones(a.size)]).astype(np.float64)
    front = uvw[2] > 1e-9
    w = np.where(front, uvw[2], 1.0)
    u, v = uvw[0] / w, uvw[1] / w
    with np.errstate(invalid="ignore"):
        if devkit:
            valid = front & (u >= 1) & (u <= width) & (v >= 1) & (v <= height)
            near_u, near_v, lin_u, lin_v = np.floor(u) - 1, np.floor(v) - 1, u - 1.5, v - 1.5
        else:
            valid = front & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
            near_u, near_v, lin_u, lin_v = np.floor(u + 0.5), np.floor(v + 0.5), u, v
    shape = a.shape

    def plane(values: np.ndarray, fill: float) -> np.ndarray:
        return np.where(valid, values, fill).astype(np.float32).reshape(shape)

    return BevLut(plane(near_u, -1), plane(near_v, -1), plane(lin_u, -1), plane(lin_v, -1), valid.reshape(shape),
                  (int(height), int(width)))


def read_kitti_calib(path: str | Path) -> dict[str, np.ndarray]:
    """KITTI calib txt (``KEY: v1 v2 ...`` per line) -> {key: float64 array}; 12 values 3x4, 9 values 3x3."""
    values: dict[str, np.ndarray] = {}
    for line in Path(path).read_text().splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            values[key.strip()] = np.array(rest.split(), dtype=np.float64)
        except ValueError as err:
            raise InputImageError(f"{path}: malformed calibration line {key!r} ({err})") from err
    if "P2" not in values or values["P2"].size != 12:
        raise InputImageError(f"{path} has no 12-value P2 line; it is not a KITTI calibration file")
    return {k: v.reshape(3, 4) if v.size == 12 else v.reshape(3, 3) if v.size == 9 else v for k, v in values.items()}


def _homogeneous(m: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def _require(calib: dict[str, np.ndarray], *keys: str) -> None:
    missing = [k for k in keys if k not in calib]
    if missing:
        raise InputImageError(f"KITTI calibration lacks {', '.join(missing)}; the BEV needs P2, R0_rect and "
                              "Tr_cam_to_road (the data_road calib/ files have them)")


def kitti_road_projection(calib: dict[str, np.ndarray]) -> np.ndarray:
    """3x4 road frame -> image projection of the devkit: ``P2 @ R0_rect @ inv(Tr_cam_to_road)``."""
    _require(calib, "P2", "R0_rect", "Tr_cam_to_road")
    return calib["P2"] @ _homogeneous(calib["R0_rect"]) @ np.linalg.inv(_homogeneous(calib["Tr_cam_to_road"]))


def kitti_bev_lut(road_projection: np.ndarray, image_size: tuple[int, int], grid: KittiBevGrid = KITTI_BEV) -> BevLut:
    """Return the devkit's lookup table for one frame (``road_projection`` from ``kitti_road_projection``)."""
    x, z = grid.centres()
    return lut_from_homography(road_projection[:, [0, 2, 3]], x, z, image_size, devkit=True)


def kitti_camera_pose(calib: dict[str, np.ndarray]) -> np.ndarray:
    """Return the 4x4 REP-103 road frame <- the rectified camera frame that P2 projects from.

    The road frame is x forward, y left, z up, on the road. The transform is
    ``inv(ROAD_FROM_REP103) @ Tr_cam_to_road @ R0_rect^T`` (rigid up to R0_rect's rounding).
    """
    _require(calib, "R0_rect", "Tr_cam_to_road")
    rect_to_cam = _homogeneous(calib["R0_rect"].T)
    return np.linalg.inv(ROAD_FROM_REP103) @ _homogeneous(calib["Tr_cam_to_road"]) @ rect_to_cam


def road_projection_from_pose(projection: np.ndarray, road_from_camera: np.ndarray) -> np.ndarray:
    """Return the 3x4 KITTI road frame -> image projection from CameraInfo's P and the camera's pose.

    The pose is the camera's in the REP-103 road frame (what ``kitti_camera_pose`` returns and ``bag from-kitti``
    writes on /tf); this is the inverse of that split.
    """
    return np.asarray(projection, np.float64).reshape(3, 4) @ np.linalg.inv(road_from_camera) @ np.linalg.inv(
        ROAD_FROM_REP103)


def ground_lut(projection: np.ndarray, ground_from_optical: np.ndarray, image_size: tuple[int, int],
               grid: GroundGrid) -> BevLut:
    """Lookup table of a ``GroundGrid`` seen by a pinhole camera.

    ``projection`` is CameraInfo's P (3x4) or K (3x3), ``ground_from_optical`` the camera's 4x4 pose in the grid's
    frame (``CameraPose.matrix()``).
    """
    p = np.asarray(projection, np.float64)
    if p.shape == (3, 3):
        p = np.hstack([p, np.zeros((3, 1))])
    m = p @ np.linalg.inv(ground_from_optical)  # ground (x, y, z, 1) -> image
    x, y = grid.centres()
    return lut_from_homography(m[:, [0, 1, 3]], x, y, image_size)


def warp_image(lut: BevLut, image: np.ndarray, fill: int = 0) -> np.ndarray:
    """Nearest-neighbour BEV of an image or label map (uint8/float, 1-4 channels); ``fill`` where unseen."""
    lut.check(image)
    return cv2.remap(image, lut.near_x, lut.near_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=fill)


def warp_labels(lut: BevLut, road: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BEV of boolean (road, valid) maps; cells outside the image are not evaluated."""
    packed = road.astype(np.uint8) | (valid.astype(np.uint8) << 1)
    bev = warp_image(lut, packed)
    return (bev & 1).astype(bool), (bev & 2).astype(bool) & lut.valid


def warp_probability(lut: BevLut, probability: np.ndarray) -> np.ndarray:
    """Bilinear BEV of a probability map (float32 or uint8).

    Values at unseen cells are meaningless (mask them with ``lut.valid``).
    """
    lut.check(probability)
    return cv2.remap(probability, lut.map_x, lut.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def occupancy(lut: BevLut, probability: np.ndarray, threshold: float) -> np.ndarray:
    """OccupancyGrid cells (int8, rows x cols): road 0 (free), not road 100 (occupied), unseen -1."""
    bev = warp_probability(lut, probability)
    grid = np.where(bev >= threshold, np.int8(OCCUPANCY_FREE), np.int8(OCCUPANCY_OCCUPIED))
    grid[~lut.valid] = OCCUPANCY_UNKNOWN
    return grid


def quaternion_from_matrix(r: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a 3x3 rotation matrix (the nearest rotation's, for nearly orthonormal input)."""
    u, _, vt = np.linalg.svd(r)
    r = u @ vt
    w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return x, y, z, w


def transform_matrix(transform) -> np.ndarray:
    """4x4 pose of a ``geometry_msgs/Transform`` (rclpy or rosbags message: same field names)."""
    q, v = transform.rotation, transform.translation
    pose = np.eye(4)
    pose[:3, :3] = matrix_from_quaternion(q.x, q.y, q.z, q.w)
    pose[:3, 3] = (v.x, v.y, v.z)
    return pose


def sibling_topic(image_topic: str) -> str:
    """``/ns/camera/image_raw`` -> ``/ns/camera/camera_info`` (the image_transport convention)."""
    return f"{image_topic.rstrip('/').rpartition('/')[0]}/camera_info"


def matrix_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation matrix of a quaternion (normalised first)."""
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])

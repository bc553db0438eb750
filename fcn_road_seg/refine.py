"""Dense-CRF refinement of the road probability (the FCN + fully connected CRF recipe), an optional extra.

A 2-label fully connected CRF (Krähenbühl and Koltun, NIPS 2011) with the unary -log p (road) and
-log(1 - p) (not road) and two Potts pairwise terms: a Gaussian kernel over pixel positions (smoothness) and
a bilateral kernel over positions and colours (labels follow colour edges). Inference is the library's
mean-field approximation; the refined road probability is its road marginal Q(road), which sums with
Q(not road) to 1 at every pixel, so it stays a probability the devkit metrics can read.

The CRF comes from ``pydensecrf2`` (a maintained build of Philipp Krähenbühl's C++ code behind
``pydensecrf``), installed with ``pip install 'fcn_road_seg[crf]'``; it is imported only when a refiner is made.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import MissingExtraError

__all__ = ["CrfConfig", "DenseCrfRefiner", "CRF_INSTALL_HINT", "UNARY_EPS"]

CRF_INSTALL_HINT = "pip install 'fcn_road_seg[crf]'"
# Probabilities are clipped to [UNARY_EPS, 1 - UNARY_EPS] before -log, so a saturated network output
# (exactly 0 or 1 in float32) gives a finite unary of at most -log(1e-5) = 11.5 that the pairwise terms can still
# overrule (as pydensecrf.utils.unary_from_softmax does).
UNARY_EPS = 1e-5


@dataclass(frozen=True)
class CrfConfig:
    """Dense-CRF parameters (pixels, 0-255 colour units, Potts weights, mean-field iterations).

    The defaults are the best of ``bench/crf.py``'s small search on the KITTI road validation split with the
    shipped model (bilateral srgb 5, compat 3; pydensecrf's example values are srgb 13, compat 10).
    """

    gaussian_sxy: float = 3.0  # std of the position-only kernel, pixels
    gaussian_compat: float = 3.0  # its weight
    bilateral_sxy: float = 80.0  # std of the bilateral kernel's position part, pixels
    bilateral_srgb: float = 5.0  # std of its colour part, 0-255 units
    bilateral_compat: float = 3.0  # its weight
    iterations: int = 5  # mean-field iterations

    def __post_init__(self) -> None:
        for name in ("gaussian_sxy", "bilateral_sxy", "bilateral_srgb"):
            if not float(getattr(self, name)) > 0.0:
                raise ValueError(f"CRF {name} must be > 0, got {getattr(self, name)}")
        for name in ("gaussian_compat", "bilateral_compat"):
            if not float(getattr(self, name)) >= 0.0:
                raise ValueError(f"CRF {name} must be >= 0, got {getattr(self, name)}")
        if int(self.iterations) != self.iterations or self.iterations < 1:
            raise ValueError(f"CRF iterations must be a whole number >= 1, got {self.iterations}")


class DenseCrfRefiner:
    """Refine a road probability map with a dense CRF over the frame it came from."""

    def __init__(self, config: CrfConfig | None = None) -> None:
        """Raise MissingExtraError naming the extra when pydensecrf2 is not installed."""
        try:
            from pydensecrf import densecrf
        except ImportError as err:
            raise MissingExtraError(
                f"dense-CRF refinement needs the package pydensecrf2, which is not installed ({err}); "
                f"install the extra: {CRF_INSTALL_HINT}"
            ) from err
        self._densecrf = densecrf
        self.config = config or CrfConfig()

    def __call__(self, frame: np.ndarray, probability: np.ndarray) -> np.ndarray:
        """Refine ``probability`` (HxW float in [0, 1]) over ``frame``; return the refined road probability.

        ``frame`` is HxWx3 uint8 (channel order does not matter: the colour kernel is isotropic); the result is
        HxW float32 in [0, 1].
        """
        h, w = probability.shape
        if frame.shape[:2] != (h, w):
            raise ValueError(f"frame {frame.shape[1::-1]} and probability {(w, h)} must have the same size")
        c = self.config
        p = np.clip(probability, UNARY_EPS, 1.0 - UNARY_EPS).astype(np.float32, copy=False).reshape(-1)
        unary = np.empty((2, h * w), dtype=np.float32)
        np.log1p(-p, out=unary[0])  # label 0: not road
        np.log(p, out=unary[1])  # label 1: road
        np.negative(unary, out=unary)
        crf = self._densecrf.DenseCRF2D(w, h, 2)
        crf.setUnaryEnergy(unary)
        crf.addPairwiseGaussian(sxy=c.gaussian_sxy, compat=c.gaussian_compat)
        crf.addPairwiseBilateral(sxy=c.bilateral_sxy, srgb=c.bilateral_srgb, rgbim=np.ascontiguousarray(frame),
                                 compat=c.bilateral_compat)
        marginals = np.asarray(crf.inference(int(c.iterations)), dtype=np.float32)
        return np.clip(marginals[1].reshape(h, w), 0.0, 1.0)

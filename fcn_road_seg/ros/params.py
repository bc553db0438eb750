"""Range-checked ROS parameters: the one place a numeric parameter's range is checked and advertised.

Shared by the road_segmentation node and its bird's-eye-view grid, which keep their own range tables.
"""
from __future__ import annotations

import math

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

__all__ = ["out_of_range", "ranged_descriptor"]


def out_of_range(name: str, value, ranges: dict[str, tuple[float, float]]) -> str | None:
    """Why ``value`` is outside ``name``'s range in ``ranges``; None when inside (or ``name`` has no range)."""
    if name not in ranges:
        return None
    low, high = ranges[name]
    if not (math.isfinite(value) and low <= value <= high):
        return f"{name} must lie in [{low:g}, {high:g}], got {value}"
    return None


def ranged_descriptor(name: str, description: str, read_only: bool, default,
                      ranges: dict[str, tuple[float, float]]) -> ParameterDescriptor:
    """Build a parameter descriptor that shows ``name``'s range.

    The range is integer or floating point, from ``default``'s type.
    """
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if name in ranges:
        low, high = ranges[name]
        if isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=1)]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)]
    return descriptor

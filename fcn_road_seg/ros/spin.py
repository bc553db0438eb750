"""The standard rclpy entry point shared by the package's long-running nodes."""
from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node

from ..errors import FcnRoadSegError

__all__ = ["spin_node"]


def spin_node(
    make_node: Callable[[], Node],
    name: str,
    args: list[str] | None = None,
    *,
    fatal: tuple[type[BaseException], ...] = (FcnRoadSegError,),
    status: int = 1,
    on_exit: Callable[[Node], None] | None = None,
) -> int:
    """Init rclpy, build the node, spin until Ctrl-C or shutdown, then clean up; returns the exit status.

    An exception of a ``fatal`` type (bad model, bad parameter) is logged as one line naming the fix, without
    a traceback, and gives ``status``. ``on_exit`` runs on the node before it is destroyed.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except fatal as err:
        get_logger(name).fatal(str(err))
        return status
    finally:
        if node is not None:
            if on_exit is not None:
                on_exit(node)
            node.destroy_node()
        rclpy.try_shutdown()
    return 0

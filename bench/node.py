"""The real ``road_segmentation`` node under load: output rate, drops, end-to-end latency, overhead, RSS.

Starts the node as its own process (``python -m fcn_road_seg.ros.node``), publishes a real camera frame
(bgr8) on ``/bench/image_raw`` with the send time in ``header.stamp``, and receives ``~/mask``:

* ``rate`` mode: a camera at ``--rate`` Hz for ``--duration`` s;
* ``burst`` mode: frames at ``--burst-hz`` (far above what the model can do) for ``--duration`` s, to
  show latest-frame-wins (bounded latency, counted drops, no queue growth);
* ``long`` mode: ``--frames`` frames, each sent when the previous mask arrives (no drops), sampling the
  node's RSS every ``--rss-every`` frames.

End-to-end latency is input stamp -> mask received here. The node's own overhead (everything except
``backend.infer``) is measured in this process, component by component, on the same frame and model
(decode the CDR bytes as the node's raw subscription gets them, message_to_bgr, the camera-fault check, pre,
post, build and encode the mask message), and cross-checked with the node's ``/diagnostics`` (latency from
receive to publish, pipeline time). The node's counters before and after the measured window say where the
frames without a mask went: lost before the node (transport) or dropped by it (newest frame wins).

    python -m bench.node --model models/fcn8s_lite0_kitti_road.onnx --mode rate --rate 30 --duration 30
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from bench.common import REPO_ROOT, emit, parse_bench_args, machine_info, summarize

__all__ = ["Settings", "measure_overhead", "run_node_bench", "main"]

log = logging.getLogger("bench.node")

NODE_NAME = "road_segmentation"
INPUT_TOPIC = "/bench/image_raw"
MASK_TOPIC = f"/{NODE_NAME}/mask"
DEFAULT_FRAME = REPO_ROOT / "samples" / "kitti_um_000000.jpg"


@dataclass(frozen=True)
class Settings:
    model: str
    frame: str
    mode: str  # rate | burst | long
    rate_hz: float
    burst_hz: float
    duration_s: float
    frames: int
    rss_every: int
    warmup_s: float
    overhead_iterations: int
    domain_id: int
    input_qos: str  # reliable | sensor_data, for both the publisher here and the node's subscription
    backend: str  # the node's backend parameter (auto: the fast CPU path here)


def rss_mib(pid: int) -> float:
    """Resident set size of a process in MiB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def measure_overhead(model: str, frame: np.ndarray, iterations: int, backend: str = "auto") -> dict:
    """Per-frame work of the node other than ``backend.infer``, timed component by component in-process."""
    from fcn_road_seg.image_messages import IMAGE, decode, encode, header, image_message, message_to_bgr
    from fcn_road_seg.pipeline import RoadSegmenter
    from fcn_road_seg.ros.camera_faults import CameraFaultCheck, FaultLimits

    # a camera's consecutive frames differ (sensor noise): two wires, the second one grey level off at (0, 0),
    # alternate, so the frozen test costs what it costs on a live camera
    noisy = frame.copy()
    noisy[0, 0, 0] ^= 1
    wires = [encode(image_message(f, "bgr8", header(0, "camera"))) for f in (frame, noisy)]
    names = ("decode", "to_bgr", "fault_check", "pre", "post", "to_image", "encode")
    parts: dict[str, list[float]] = {k: [] for k in names}
    faults, limits = CameraFaultCheck(), FaultLimits()  # the node's default limits (frozen check on)
    infer, total = [], []
    with RoadSegmenter(model, backend=backend) as seg:
        for i in range(iterations + 2):
            t0 = time.perf_counter()
            msg = decode(wires[i % 2], IMAGE)
            t1 = time.perf_counter()
            bgr = message_to_bgr(msg)
            t2 = time.perf_counter()
            faults.check(bgr, msg.data, limits)
            t2f = time.perf_counter()
            result = seg.segment(bgr, color_order="bgr")
            t3 = time.perf_counter()
            out = image_message(result.mask, "mono8", msg.header)
            t4 = time.perf_counter()
            encode(out)
            t5 = time.perf_counter()
            if i < 2:  # warm-up
                continue
            sample = {"decode": t1 - t0, "to_bgr": t2 - t1, "fault_check": t2f - t2, "to_image": t4 - t3,
                      "encode": t5 - t4}
            for k, v in sample.items():
                parts[k].append(v * 1e3)
            parts["pre"].append(result.timings_ms["pre"])
            parts["post"].append(result.timings_ms["post"])
            infer.append(result.timings_ms["infer"])
            total.append(sum(sample.values()) * 1e3 + result.timings_ms["pre"] + result.timings_ms["post"])
    return {"components_ms": {k: summarize(v) for k, v in parts.items()}, "non_infer_total_ms": summarize(total),
            "infer_ms": summarize(infer)}


class _Client:
    """Publisher of frames, receiver of masks and diagnostics, spun on a background thread.

    Frames go out and masks come in as CDR bytes (rosbags builds each frame's message with the send time, the
    mask's stamp is read from its bytes), as cheap for the shared CPU as a C++ camera driver and consumer:
    rclpy's Python message conversion would cost this process ~1-3 ms a frame on the node's two cores.
    """

    def __init__(self, frame: np.ndarray, input_qos: str) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image

        from fcn_road_seg.image_messages import IMAGE, decode, encode, header, image_message

        self._decode = lambda raw: decode(raw, IMAGE)
        self._encode = lambda stamp: encode(image_message(frame, "bgr8", header(stamp, "camera")))
        self.node = rclpy.create_node("fcn_road_seg_bench")
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        # reliable, depth 1: with depth 5, frames whose fragments were being repaired arrived late and bunched
        # with newer ones (14 of 600 dropped by the node in one 30 Hz run, end-to-end p95 69 ms vs 43 ms)
        in_qos = qos_profile_sensor_data if input_qos == "sensor_data" else QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, INPUT_TOPIC, in_qos)
        self.node.create_subscription(Image, MASK_TOPIC, self._on_mask, reliable, raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.lock = threading.Lock()
        self.got_mask = threading.Event()
        self.latencies_ms: list[float] = []
        self.mask_shape: tuple[int, int] | None = None
        self.diagnostics: dict[str, str] = {}
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_mask(self, raw: bytes) -> None:
        now = time.time_ns()
        msg = self._decode(raw)
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.latencies_ms.append((now - stamp) / 1e6)
            self.mask_shape = (msg.height, msg.width)
        self.got_mask.set()

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if NODE_NAME in status.name:
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    def send(self) -> None:
        self.pub.publish(self._encode(time.time_ns()))

    def connected(self) -> bool:
        return self.pub.get_subscription_count() > 0 and self.node.count_publishers(MASK_TOPIC) > 0

    def node_counts(self) -> dict[str, int]:
        """Return the node's frame counters from its latest /diagnostics message."""
        with self.lock:
            return {k: int(self.diagnostics.get(k, 0)) for k in ("received", "processed", "dropped", "bad_frames")}

    def reset(self) -> None:
        with self.lock:
            self.latencies_ms.clear()

    def received(self) -> int:
        with self.lock:
            return len(self.latencies_ms)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def _start_node(settings: Settings, env: dict[str, str], log_file) -> subprocess.Popen:
    """Start the node as its own process; its log goes to ``log_file`` (a pipe nobody reads could stall it)."""
    cmd = [sys.executable, "-m", "fcn_road_seg.ros.node", "--ros-args", "-p", f"model:={settings.model}",
           "-p", f"backend:={settings.backend}", "-r", f"image:={INPUT_TOPIC}",
           "-p", "publish_overlay:=false", "-p", "publish_probability:=false", "-p", f"input_qos:={settings.input_qos}",
           "-p", "frozen_frames:=0"]  # one frame sent over and over is what a frozen camera looks like
    log.info("starting the node: %s", " ".join(cmd))
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log_file, text=True)


def _paced(client: _Client, hz: float, duration_s: float) -> list[float]:
    """Publish at ``hz`` for ``duration_s`` (a late send is followed at once by the next: a camera's clock).

    Returns the send times (s).
    """
    period, sent = 1.0 / hz, []
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < duration_s:
        client.send()
        sent.append(now)
        time.sleep(max(0.0, start + len(sent) * period - time.perf_counter()))
    return sent


def run_node_bench(settings: Settings) -> dict:
    """Start the node, drive it in the chosen mode, and return the report."""
    import rclpy

    frame = cv2.imread(settings.frame, cv2.IMREAD_COLOR)
    if frame is None:
        raise FileNotFoundError(f"cannot read frame {settings.frame}")
    report = {"benchmark": "node", "machine": machine_info(), "settings": asdict(settings),
              "frame": f"{frame.shape[1]}x{frame.shape[0]} bgr8"}
    report["overhead_in_process"] = measure_overhead(settings.model, frame, settings.overhead_iterations,
                                                     settings.backend)
    env = {**os.environ, "ROS_DOMAIN_ID": str(settings.domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    node_log = tempfile.TemporaryFile(mode="w+")
    proc = _start_node(settings, env, node_log)
    rclpy.init()
    client = _Client(frame, settings.input_qos)
    try:
        deadline = time.monotonic() + 60
        while not client.connected():
            if proc.poll() is not None:
                node_log.seek(0)
                raise RuntimeError(f"the node exited ({proc.returncode}): {node_log.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the node did not connect within 60 s")
            time.sleep(0.1)
        _paced(client, settings.rate_hz, settings.warmup_s)  # warm-up: model, DDS, allocator
        time.sleep(1.5)  # the warm-up's last frames done and counted in a diagnostics message
        client.reset()
        at_start = client.node_counts()
        rss_start = rss_mib(proc.pid)
        t0 = time.perf_counter()
        rss_series: list[list[float]] = [[0, round(rss_start, 2)]]
        unanswered = 0  # long mode: frames lost on the best-effort input and sent again
        send_times: list[float] = []
        hz = settings.burst_hz if settings.mode == "burst" else settings.rate_hz
        if settings.mode == "long":
            sent = 0
            progress = tqdm(total=settings.frames, desc="long run", unit="frame", disable=None)
            while (n := client.received()) < settings.frames:
                progress.update(n - progress.n)
                client.got_mask.clear()
                client.send()
                sent += 1
                if not client.got_mask.wait(timeout=2.0):  # best-effort input: a lost frame is sent again
                    unanswered += 1
                    if unanswered > 100:
                        raise RuntimeError(f"{unanswered} frames without a mask (2 s each); is the node alive?")
                n = client.received()
                if n % settings.rss_every == 0 and n != rss_series[-1][0]:
                    rss_series.append([n, round(rss_mib(proc.pid), 2)])
            progress.close()
        else:
            send_times = _paced(client, hz, settings.duration_s)
            sent = len(send_times)
        elapsed = time.perf_counter() - t0
        time.sleep(1.5)  # masks in flight, and one more diagnostics message
        at_end = client.node_counts()
        rss_end = rss_mib(proc.pid)
        with client.lock:
            latencies, diag, shape = list(client.latencies_ms), dict(client.diagnostics), client.mask_shape
    finally:
        client.close()
        rclpy.try_shutdown()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        node_log.close()
    received = len(latencies)
    report["results"] = {
        "sent": sent,
        "masks_received": received,
        "dropped": sent - received,
        "drop_fraction": round((sent - received) / sent, 4) if sent else None,
        "elapsed_s": round(elapsed, 2),
        "input_rate_hz": round(sent / elapsed, 2),
        "output_rate_hz": round(received / elapsed, 2),
        "end_to_end_ms": summarize(latencies),
        # where the frames without a mask went: not received by the node (transport), replaced in its one-slot
        # mailbox by a newer frame (newest-frame-wins), refused (bad frame, camera fault) or failed
        "node_counts": {k: at_end[k] - at_start[k] for k in at_end},
        "lost_before_the_node": sent - (at_end["received"] - at_start["received"]),
        # sends this process made less than half a period after the previous one (it was late, so were they)
        "bunched_sends": int(np.sum(np.diff(send_times) < 0.5 / hz)) if len(send_times) > 1 else 0,
        "mask_size": f"{shape[1]}x{shape[0]}" if shape else None,
        "rss_mib_start": round(rss_start, 2),
        "rss_mib_end": round(rss_end, 2),
        "rss_growth_mib": round(rss_end - rss_start, 2),
        "rss_series_frames_mib": rss_series if settings.mode == "long" else None,
        "long_mode_frames_resent": unanswered if settings.mode == "long" else None,
        "node_diagnostics": diag,
    }
    report["machine"]["training_running_at_end"] = bool(machine_info()["training_running"])
    return report


def table(report: dict) -> list[list[str]]:
    r, o = report["results"], report["overhead_in_process"]
    e2e = r["end_to_end_ms"]
    rows = [["metric", "value"],
            ["mode", report["settings"]["mode"]],
            ["frame", report["frame"]],
            ["sent / masks / dropped", f"{r['sent']} / {r['masks_received']} / {r['dropped']}"],
            ["input -> output rate (Hz)", f"{r['input_rate_hz']} -> {r['output_rate_hz']}"],
            ["sends bunched (< half a period apart)", str(r["bunched_sends"])],
            ["lost before the node / node dropped (newest wins)",
             f"{r['lost_before_the_node']} / {r['node_counts']['dropped']}"],
            ["end-to-end p50/p95/p99 (ms)", f"{e2e.get('p50')} / {e2e.get('p95')} / {e2e.get('p99')}"],
            ["in-process infer p50 (ms)", str(o["infer_ms"]["p50"])],
            ["in-process non-infer p50 (ms)", str(o["non_infer_total_ms"]["p50"])]]
    rows += [[f"  {k} p50 (ms)", str(v["p50"])] for k, v in o["components_ms"].items()]
    d = r["node_diagnostics"]
    if d:
        rows.append(["node diag latency/pipeline p50 (ms)",
                     f"{d.get('latency_p50_ms')} / {d.get('pipeline_p50_ms')}"])
        rows.append(["node diag received/processed/dropped",
                     f"{d.get('received')} / {d.get('processed')} / {d.get('dropped')}"])
    rows.append(["RSS start -> end (MiB)", f"{r['rss_mib_start']} -> {r['rss_mib_end']} ({r['rss_growth_mib']:+})"])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="road model .onnx (default: the shipped model)")
    parser.add_argument("--frame", type=Path, default=DEFAULT_FRAME, help="camera frame to publish (bgr8)")
    parser.add_argument("--mode", choices=("rate", "burst", "long"), default="rate")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz (rate mode, warm-up)")
    parser.add_argument("--burst-hz", type=float, default=200.0, help="publish rate in burst mode")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing (rate, burst)")
    parser.add_argument("--frames", type=int, default=10000, help="frames in long mode")
    parser.add_argument("--rss-every", type=int, default=1000, help="RSS sample period in frames (long mode)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds at --rate before measuring")
    parser.add_argument("--overhead-iterations", type=int, default=100, help="in-process overhead samples")
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "70")))
    parser.add_argument("--input-qos", choices=("reliable", "sensor_data"), default="reliable",
                        help="camera QoS (both ends). sensor_data = best effort: on this machine's Fast DDS "
                             "defaults, 1.4 MB frames are lost in UDP fragments; see docs/performance.md")
    parser.add_argument("--backend", choices=("auto", "openvino", "onnxruntime"), default="auto",
                        help="the node's backend (auto: TensorRT, else OpenVINO on the INT8 copy, else ONNX Runtime)")
    args = parse_bench_args(parser, argv)
    if args.model is None:
        from fcn_road_seg.resources import default_model_path

        args.model = default_model_path()
    if min(args.rate, args.burst_hz, args.duration, args.frames, args.rss_every) <= 0:
        parser.error("--rate, --burst-hz, --duration, --frames and --rss-every must be positive")
    settings = Settings(str(Path(args.model).resolve()), str(args.frame), args.mode, args.rate, args.burst_hz,
                        args.duration, args.frames, args.rss_every, args.warmup, args.overhead_iterations,
                        args.domain_id, args.input_qos, args.backend)
    report = run_node_bench(settings)
    emit(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

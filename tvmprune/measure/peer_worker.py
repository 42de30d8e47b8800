"""A peer engine (ONNX Runtime, OpenVINO, DeepSparse) serving timing requests on stdin/stdout.

Run as a *file* by the interpreter of the engine's own virtual environment (their pins clash with
torch and with each other), so it imports nothing from tvmprune: only numpy and the engine.

    python peer_worker.py --engine onnxruntime --onnx model.onnx --threads 2 --shape 1,3,224,224
    python peer_worker.py --engine openvino --probe

Protocol: one JSON object per line each way.
  -> {"cmd": "sample", "k": 5}              <- {"times": [seconds, ...]}
  -> {"cmd": "run", "input": "x.npy", "output": "y.npy"}   <- {"ok": true}
  -> {"cmd": "quit"}
The first line written is {"ready": true, "version": "..."} or {"error": "..."}.
The timed input is standard normal with seed 0, float32, NCHW.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _engine_version(engine: str) -> str:
    mod = __import__(engine)
    return str(getattr(mod, "__version__", None) or getattr(mod, "get_version", lambda: "?")())


class _Session:
    """A compiled model in one engine: ``run(x) -> y`` (float32 NCHW in, first output out)."""

    def __init__(self, engine: str, onnx_path: str, threads: int) -> None:
        self.engine = engine
        if engine == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
            self.name = self.sess.get_inputs()[0].name
        elif engine == "openvino":
            import openvino as ov

            core = ov.Core()
            # f32 forced: on a bf16-capable CPU OpenVINO would otherwise pick bf16 (different numerics)
            self.sess = core.compile_model(onnx_path, "CPU", {
                "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32"})
            self.req = self.sess.create_infer_request()
        elif engine == "deepsparse":
            import deepsparse

            self.sess = deepsparse.compile_model(onnx_path, batch_size=1, num_cores=threads)
        else:
            raise ValueError(f"unknown engine {engine!r}")

    def run(self, x):  # noqa: ANN001, ANN201 - numpy only, no annotations import needed
        if self.engine == "onnxruntime":
            return self.sess.run(None, {self.name: x})[0]
        if self.engine == "openvino":
            self.req.infer([x])
            return self.req.get_output_tensor(0).data.copy()
        return self.sess.run([x])[0]


def _serve(sess: _Session, shape: tuple[int, ...], warmup: int) -> None:
    import numpy as np

    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    for _ in range(warmup):
        sess.run(x)
    print(json.dumps({"ready": True, "version": _engine_version(sess.engine)}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            return
        if req["cmd"] == "sample":
            times = []
            for _ in range(int(req["k"])):
                t0 = time.perf_counter()
                sess.run(x)
                times.append(time.perf_counter() - t0)
            print(json.dumps({"times": times}), flush=True)
        elif req["cmd"] == "run":
            y = sess.run(np.load(req["input"]).astype("float32"))
            np.save(req["output"], np.asarray(y))
            print(json.dumps({"ok": True}), flush=True)
        else:
            print(json.dumps({"error": f"unknown command {req['cmd']!r}"}), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", required=True)
    ap.add_argument("--onnx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shape", default="1,3,224,224")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--probe", action="store_true", help="print the engine's version and exit")
    a = ap.parse_args()
    try:
        if a.probe:
            print(json.dumps({"ready": True, "version": _engine_version(a.engine)}), flush=True)
            return 0
        sess = _Session(a.engine, a.onnx, a.threads)
    except Exception as e:  # reported to the parent as one line; the parent says which engine failed
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
        return 1
    _serve(sess, tuple(int(s) for s in a.shape.split(",")), a.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The design animegan-api competes with: a Flask app handing work to a thread pool.

    python bench/baseline_flask.py --weights ../shared/models/animeganv2_hayao.pt --port 5000

Written the way such services are usually written, on purpose: Flask's
threaded development server, the model loaded once behind a double-checked
lock, a global ``ThreadPoolExecutor(max_workers=8)``, ``POST /transform`` with
the field ``image``, a 10 MB upload cap, PIL decode and a resize to 512x512, a
``torch.no_grad()`` forward, a PNG sent back with ``send_file`` at Pillow's
default compression, and ``future.result(timeout=30)`` mapped to 504. Torch
threads stay at their defaults. It runs the same generator class and weights
as the service, so the comparison measures the serving design, not the model;
given an ``.onnx`` file it runs it in an ONNX Runtime session with default
options instead, NHWC or NCHW as the graph's input says. It is a benchmark
fixture only; do not deploy it.
"""

from __future__ import annotations

import argparse
import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from flask import Flask, jsonify, request, send_file
from PIL import Image

from animegan_api.runtime.model import Generator
from animegan_api.runtime.weights import read_spec

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = 10 * 1024 * 1024
executor = ThreadPoolExecutor(max_workers=8)
WEIGHTS: Path | None = None
_model: Callable[[torch.Tensor], torch.Tensor] | None = None
_model_lock = threading.Lock()


def get_model() -> Callable[[torch.Tensor], torch.Tensor]:
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                assert WEIGHTS is not None
                _model = _onnx_model(WEIGHTS) if WEIGHTS.suffix == ".onnx" else _torch_model(WEIGHTS)
    return _model


def _torch_model(path: Path) -> Generator:
    model = Generator(upsample=read_spec(path).upsample)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def _onnx_model(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph_input = session.get_inputs()[0]
    nhwc = graph_input.shape[-1] == 3

    def run(x: torch.Tensor) -> torch.Tensor:
        feed = x.permute(0, 2, 3, 1).contiguous() if nhwc else x
        y = torch.from_numpy(session.run(None, {graph_input.name: feed.numpy()})[0])
        return y.permute(0, 3, 1, 2) if nhwc else y

    return run


def run_inference(data: bytes) -> io.BytesIO:
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((512, 512))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    with torch.no_grad():
        y = get_model()(x)
    pixels = ((y[0].permute(1, 2, 0).clamp(-1, 1) + 1.0) * 127.5).round().byte().numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


@app.post("/transform")
def transform():  # type: ignore[no-untyped-def]
    upload = request.files.get("image")
    if upload is None:
        return jsonify(error="missing field 'image'"), 400
    future = executor.submit(run_inference, upload.read())
    try:
        buffer = future.result(timeout=30)
    except FutureTimeout:
        return jsonify(error="timeout"), 504
    except Exception as exc:
        return jsonify(error=str(exc)), 500
    return send_file(buffer, mimetype="image/png")


@app.get("/health")
def health():  # type: ignore[no-untyped-def]
    get_model()
    return jsonify(status="ok")


def main() -> None:
    global WEIGHTS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    WEIGHTS = args.weights
    app.run(host="127.0.0.1", port=args.port, threaded=True)


if __name__ == "__main__":
    main()

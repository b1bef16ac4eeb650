"""Write a servebench-dense-v1 model (plugins/servebench/models/weights.py) as a TensorFlow SavedModel for TF Serving.

    python export_savedmodel.py MODEL.weights.json metadata.json OUT_DIR

The SavedModel's `serving_default` signature takes `instances` (float32, [batch, n_features]) and returns
`label` (int64) and `probabilities` (float32, [batch, n_classes]), so TF Serving's REST API answers
{"predictions": [{"label": ..., "probabilities": [...]}, ...]} (contract.Wire reads that). It is written to
OUT_DIR/savedmodel/1 (TF Serving serves the highest numbered version folder), then loaded back and run on
the model's sample inputs: labels must equal the reference's and probabilities be within 1e-5, or the
export fails. OUT_DIR/parity.json records that check.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

TOLERANCE = 1e-5  # the contract's
ACTIVATIONS = {"identity": tf.identity, "relu": tf.nn.relu, "tanh": tf.math.tanh, "logistic": tf.math.sigmoid,
               "softmax": tf.nn.softmax}  # fmt: skip


def read_layers(header_path: Path) -> tuple[dict, list[tuple[np.ndarray, np.ndarray, str]]]:
    header = json.loads(header_path.read_text())
    if header.get("format") != "servebench-dense-v1":
        raise SystemExit(f"{header_path}: not a servebench-dense-v1 header")
    data = header_path.with_name(header["data_file"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != header["data_sha256"]:
        raise SystemExit(f"{header['data_file']}: checksum does not match its header")
    layers = []
    for layer in header["layers"]:
        n_in, n_out = layer["in"], layer["out"]
        weights = np.frombuffer(data, "<f4", n_in * n_out, layer["weights_offset"]).reshape(n_out, n_in)
        bias = np.frombuffer(data, "<f4", n_out, layer["bias_offset"])
        layers.append((weights.T.copy(), bias.copy(), layer["activation"]))
    return header, layers


class DenseModel(tf.Module):
    def __init__(self, header: dict, layers: list[tuple[np.ndarray, np.ndarray, str]]) -> None:
        super().__init__()
        self.kernels = [tf.Variable(w, trainable=False) for w, _, _ in layers]
        self.biases = [tf.Variable(b, trainable=False) for _, b, _ in layers]
        self.activations = [a for _, _, a in layers]
        self.classes = tf.constant(header["classes"], tf.int64)
        signature = tf.TensorSpec([None, header["n_features"]], tf.float32, name="instances")
        self.serve = tf.function(self._serve, input_signature=[signature])

    def _serve(self, instances: tf.Tensor) -> dict[str, tf.Tensor]:
        x = instances
        for kernel, bias, activation in zip(self.kernels, self.biases, self.activations, strict=True):
            x = ACTIVATIONS[activation](tf.matmul(x, kernel) + bias)
        if x.shape[-1] == 1:  # binary with one logistic output p: probabilities [1 - p, p]
            x = tf.concat([1.0 - x, x], axis=1)
        return {"label": tf.gather(self.classes, tf.argmax(x, axis=1)), "probabilities": x}


def check(path: Path, meta: dict) -> dict:
    served = tf.saved_model.load(str(path)).signatures["serving_default"]
    samples = meta["samples"]
    out = served(instances=tf.constant(samples["inputs"], tf.float32))
    labels = out["label"].numpy().tolist()
    diff = float(np.max(np.abs(out["probabilities"].numpy() - np.asarray(samples["probabilities"]))))
    return {"labels_equal": labels == samples["predictions"], "max_abs_diff": diff, "tolerance": TOLERANCE,
            "passed": labels == samples["predictions"] and diff <= TOLERANCE, "samples": len(labels)}  # fmt: skip


def main(header_path: str, meta_path: str, out_dir: str) -> None:
    header, layers = read_layers(Path(header_path))
    meta = json.loads(Path(meta_path).read_text())
    target = Path(out_dir) / "savedmodel" / "1"
    module = DenseModel(header, layers)
    tf.saved_model.save(module, str(target), signatures={"serving_default": module.serve})
    report = check(target, meta)
    (Path(out_dir) / "parity.json").write_text(json.dumps(report, indent=1))
    print(f"SavedModel {target}: {report}", flush=True)
    if not report["passed"]:
        raise SystemExit(f"the SavedModel disagrees with the reference model: {report}")


if __name__ == "__main__":
    main(*sys.argv[1:4])

"""Train a small Keras CTR model with ``tensorflow-cpu`` on the Criteo sample and convert it with ``tf2onnx``.

Run as ``python -m tests.e2e.keras_proof SRC OUT_DIR`` by ``tests/e2e/test_imported_keras.py``, in its own
process: TensorFlow starts its own thread pools and oneDNN runtime next to torch's, prints to stderr at import,
and emits deprecation warnings that the test session turns into errors; a separate process keeps all of that
out of the test run, and the test reads only files. Writes ``train.npz`` and ``eval.npz`` (inputs ``dense``
FP32 ``[N, 13]`` = log1p of the counts, ``ids`` INT64 ``[N, 26]`` = per-field hashed category ids, label
``clicked``), ``keras.onnx`` (tf2onnx, opset 17, dynamic batch) and ``keras_scores.npy`` (Keras's own
``model.predict`` on the eval rows).
"""

from __future__ import annotations

import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

DENSE = [f"I{i}" for i in range(1, 14)]
SPARSE = [f"C{i}" for i in range(1, 27)]
BUCKETS = 1000  # per field; id 0 = missing
TRAIN_ROWS = 7000


def featurize(src: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import pandas as pd

    raw = pd.read_csv(src, sep="\t", header=None, names=["clicked", *DENSE, *SPARSE])
    dense = np.log1p(raw[DENSE].clip(lower=0).fillna(0).to_numpy(np.float64)).astype(np.float32)
    ids = np.zeros((len(raw), len(SPARSE)), np.int64)
    for j, c in enumerate(SPARSE):  # a stable hash (crc32), per field offset: one shared table of 26 x BUCKETS rows
        col = raw[c].to_numpy(dtype=object)
        hashed = [0 if v is None or v != v else 1 + zlib.crc32(str(v).encode()) % (BUCKETS - 1) for v in col]
        ids[:, j] = j * BUCKETS + np.asarray(hashed, np.int64)
    return dense, ids, raw["clicked"].to_numpy(np.int64)


def main(src: Path, out: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    import keras
    import tensorflow as tf
    import tf2onnx

    dense, ids, y = featurize(src)
    tr, ev = slice(0, TRAIN_ROWS), slice(TRAIN_ROWS, None)
    np.savez(out / "train.npz", dense=dense[tr], ids=ids[tr], clicked=y[tr])
    np.savez(out / "eval.npz", dense=dense[ev], ids=ids[ev], clicked=y[ev])

    keras.utils.set_random_seed(0)
    d_in = keras.Input(shape=(len(DENSE),), name="dense", dtype="float32")
    i_in = keras.Input(shape=(len(SPARSE),), name="ids", dtype="int64")
    emb = keras.layers.Flatten()(keras.layers.Embedding(len(SPARSE) * BUCKETS, 8, name="embedding")(i_in))
    h = keras.layers.Concatenate()([keras.layers.Normalization(name="norm")(d_in), emb])
    h = keras.layers.Dense(256, activation="relu", name="hidden1")(h)
    h = keras.layers.Dense(128, activation="relu", name="hidden2")(h)
    p = keras.layers.Dense(1, activation="sigmoid", name="ctr")(h)
    model = keras.Model([d_in, i_in], p)
    model.get_layer("norm").adapt(dense[tr])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit([dense[tr], ids[tr]], y[tr], batch_size=256, epochs=2, verbose=0)
    scores = model.predict([dense[ev], ids[ev]], batch_size=1024, verbose=0).reshape(-1)
    np.save(out / "keras_scores.npy", scores)

    spec = (
        tf.TensorSpec((None, len(DENSE)), tf.float32, name="dense"),
        tf.TensorSpec((None, len(SPARSE)), tf.int64, name="ids"),
    )
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(out / "keras.onnx"))
    versions = f"tensorflow {tf.__version__}, keras {keras.__version__}, tf2onnx {tf2onnx.__version__}"
    print(f"keras proof: {versions}; {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

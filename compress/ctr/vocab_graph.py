"""An imported CTR model's vocabularies as ONNX nodes: the raw arrays the server sends -> the model's own inputs.

The same raw inputs as the project's own CTR graph (``dense_raw`` float64 [N, D], NaN = missing; ``cat_raw``
string [N, C], "" = missing; :func:`app.tasks.ctr.raw.raw_arrays` builds them), so ``/v1/ads/ctr`` serves an
imported model exactly as it serves ``ad-ctr``. Nodes, all named ``featurize/...``:

* dense: ``Where(IsNaN(x), fill, x)``, ``Max(x, clip_min)``, ``Where(log1p?, Log(1 + x), x)``,
  ``(x - mean) / std`` in float64 (per-column constants), as :class:`app.tasks.ctr.vocab.VocabFeaturizer` does;
* categorical: one ``ai.onnx.ml.LabelEncoder`` per column (``"" -> missing``, default ``unseen``);
* per model input: both blocks cast to the input's dtype, concatenated, and one ``Gather`` on axis 1 puts the
  columns in the input's order.

:func:`build_vocab_raw_model` merges it in front of the model with :func:`compress.ctr.feature_graph.merge_with_model`.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.tasks.ctr.raw import CAT_RAW, DENSE_RAW
from app.tasks.ctr.vocab import VocabFeaturizer
from compress.ctr.feature_graph import MIN_OPSET, ML_DOMAIN, merge_with_model

_PREFIX = "featurize/"
ONNX_TYPES = {
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "INT64": TensorProto.INT64,
    "INT32": TensorProto.INT32,
}


def _n(s: str) -> str:
    return _PREFIX + s


def _dense_nodes(f: VocabFeaturizer) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    ts = list(f.dense.values())
    consts = {
        "fill": [t.fill for t in ts],
        "clip": [-np.inf if t.clip_min is None else t.clip_min for t in ts],
        "mean": [t.mean for t in ts],
        "std": [t.std for t in ts],
    }
    inits = [numpy_helper.from_array(np.array(v, dtype=np.float64), _n(k)) for k, v in consts.items()]
    inits.append(numpy_helper.from_array(np.array([t.log1p for t in ts], dtype=np.bool_), _n("log_mask")))
    inits.append(numpy_helper.from_array(np.array(1.0), _n("one")))
    nodes = [
        helper.make_node("IsNaN", [DENSE_RAW], [_n("missing")]),
        helper.make_node("Where", [_n("missing"), _n("fill"), DENSE_RAW], [_n("filled")]),
        helper.make_node("Max", [_n("filled"), _n("clip")], [_n("clipped")]),
        helper.make_node("Add", [_n("clipped"), _n("one")], [_n("one_plus")]),
        helper.make_node("Log", [_n("one_plus")], [_n("log1p")]),
        helper.make_node("Where", [_n("log_mask"), _n("log1p"), _n("clipped")], [_n("logged")]),
        helper.make_node("Sub", [_n("logged"), _n("mean")], [_n("centred")]),
        helper.make_node("Div", [_n("centred"), _n("std")], [_n("dense64")]),
    ]
    return nodes, inits


def _cat_nodes(f: VocabFeaturizer, opset: int) -> list[onnx.NodeProto]:
    cols = f.categorical_columns
    raw = [_n(f"raw{j}") for j in range(len(cols))]
    ids = [_n(f"id{j}") for j in range(len(cols))]
    if len(cols) == 1:
        nodes = [helper.make_node("Identity", [CAT_RAW], raw)]
    else:
        split = helper.make_node("Split", [CAT_RAW], raw, axis=1, name=_n("split"))
        if opset >= 18:
            split.attribute.append(helper.make_attribute("num_outputs", len(cols)))
        nodes = [split]
    for x, y, c in zip(raw, ids, cols, strict=True):
        v = f.categorical[c]
        nodes.append(
            helper.make_node(
                "LabelEncoder", [x], [y], domain=ML_DOMAIN, name=_n(f"encode_{c}"),
                keys_strings=["", *v.index], values_int64s=[v.missing, *v.index.values()], default_int64=v.unseen,
            )
        )  # fmt: skip
    nodes.append(helper.make_node("Concat", ids, [_n("ids")], axis=1))
    return nodes


def build_vocab_graph(
    f: VocabFeaturizer, *, opset: int = 17, ml_opset: int = 3, ir_version: int = 8
) -> onnx.ModelProto:
    """``dense_raw`` + ``cat_raw`` -> one output per model input named in ``f.inputs`` (its dtype, its order)."""
    if opset < MIN_OPSET:
        raise ValueError(f"the vocabulary graph needs opset >= {MIN_OPSET}, got {opset} (re-export the model)")
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []
    blocks: list[tuple[str, list[str], int]] = []  # (tensor, its columns, its ONNX type)
    if f.categorical:
        nodes += _cat_nodes(f, opset)
        blocks.append((_n("ids"), f.categorical_columns, TensorProto.INT64))
    if f.dense:
        d_nodes, d_inits = _dense_nodes(f)
        nodes += d_nodes
        inits += d_inits
        blocks.append((_n("dense64"), f.dense_columns, TensorProto.DOUBLE))
    order = [c for _, cols, _ in blocks for c in cols]
    outputs = []
    for k, (name, cols) in enumerate(f.inputs.items()):
        to = ONNX_TYPES[f.dtype(name)]
        cast = [_n(f"in{k}_b{b}") for b in range(len(blocks))]
        nodes += [helper.make_node("Cast", [t], [c], to=to) for (t, _, _), c in zip(blocks, cast, strict=True)]
        joined = _n(f"in{k}_all")
        nodes.append(helper.make_node("Concat", cast, [joined], axis=1))
        idx = _n(f"in{k}_idx")
        inits.append(numpy_helper.from_array(np.array([order.index(c) for c in cols], dtype=np.int64), idx))
        nodes.append(helper.make_node("Gather", [joined, idx], [name], axis=1))
        outputs.append(helper.make_tensor_value_info(name, to, ["batch", len(cols)]))
    graph = helper.make_graph(
        nodes, "ctr_vocab_featurize",
        [helper.make_tensor_value_info(DENSE_RAW, TensorProto.DOUBLE, ["batch", len(f.dense)]),
         helper.make_tensor_value_info(CAT_RAW, TensorProto.STRING, ["batch", len(f.categorical)])],
        outputs, initializer=inits,
    )  # fmt: skip
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ml_opset)],
        producer_name="shopinfer.compress.ctr.vocab_graph",
    )
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def build_vocab_raw_model(f: VocabFeaturizer, model: onnx.ModelProto) -> onnx.ModelProto:
    """The vocabulary graph at ``model``'s opsets, merged in front of it: raw arrays in, the model's outputs out."""
    ops = {o.domain or "": o.version for o in model.opset_import}
    fg = build_vocab_graph(
        f, opset=ops.get("", MIN_OPSET), ml_opset=max(ops.get(ML_DOMAIN, 3), 2), ir_version=model.ir_version
    )
    return merge_with_model(fg, model)

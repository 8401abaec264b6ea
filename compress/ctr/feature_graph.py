"""CTR featurization as an ONNX graph, so a request is JSON -> two raw arrays -> one ONNX Runtime call.

:class:`app.tasks.ctr.features.CtrFeaturizer` stays the reference; this module re-expresses its fitted state as graph
nodes and must produce the same ``dense``/``sparse`` tensors (a test checks every held-out Criteo row):

* dense: ``Where(IsNaN(x), mean, Log(1 + Max(x, 0)))`` then ``(x - mean) / std``, in float64 like the
  reference (which computes in float64 and stores float32), then one ``Cast`` to float32;
* categorical: one ``ai.onnx.ml.LabelEncoder`` per field (string -> int64, ``"" -> MISSING_ID``,
  unseen -> ``RARE_ID`` as the default), or a single encoder over ``"<field>\\x1f<value>"`` keys
  (``encoder="joint"``, needs ``StringConcat``, opset 20).

The server's part is :func:`app.tasks.ctr.raw.raw_arrays` (re-exported here; import it from there in
the server, it does not load ``onnx``): JSON rows -> ``dense_raw`` float64 + ``cat_raw`` strings.

Serving (``APP_CTR_FEATURIZE=graph``)::

    session = onnxruntime.InferenceSession(version_dir / RAW_MODEL_FILE)   # from the "raw_model" aux file
    (pctr,) = session.run(["pctr"], raw_arrays(records, featurizer))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.tasks.ctr.features import FIRST_ID, MISSING_ID, RARE_ID, CtrFeaturizer
from app.tasks.ctr.raw import CAT_RAW as CAT_RAW
from app.tasks.ctr.raw import DENSE_RAW as DENSE_RAW
from app.tasks.ctr.raw import RAW_MODEL_FILE as RAW_MODEL_FILE
from app.tasks.ctr.raw import RAW_MODEL_ROLE as RAW_MODEL_ROLE
from app.tasks.ctr.raw import Featurizer
from app.tasks.ctr.raw import raw_arrays as raw_arrays

KEY_SEP = "\x1f"
ML_DOMAIN = "ai.onnx.ml"
MIN_OPSET = 13  # IsNaN for float64, Split with equal parts
JOINT_MIN_OPSET = 20  # StringConcat
_PREFIX = "featurize/"

Encoder = Literal["per_field", "joint"]


# ---- the graph ----
def _name(s: str) -> str:
    return _PREFIX + s


def _const(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(array, _name(name))


def _dense_nodes(featurizer: CtrFeaturizer) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    mean = np.array(featurizer.dense_mean, dtype=np.float64)
    std = np.array(featurizer.dense_std, dtype=np.float64)
    inits = [_const("zero", np.array(0.0)), _const("one", np.array(1.0)), _const("mean", mean), _const("std", std)]
    n = _name
    nodes = [
        helper.make_node("IsNaN", [DENSE_RAW], [n("missing")]),
        helper.make_node("Max", [DENSE_RAW, n("zero")], [n("clipped")]),
        helper.make_node("Add", [n("clipped"), n("one")], [n("one_plus")]),
        helper.make_node("Log", [n("one_plus")], [n("log1p")]),
        helper.make_node("Where", [n("missing"), n("mean"), n("log1p")], [n("filled")]),
        helper.make_node("Sub", [n("filled"), n("mean")], [n("centred")]),
        helper.make_node("Div", [n("centred"), n("std")], [n("dense64")]),
        helper.make_node("Cast", [n("dense64")], ["dense"], to=TensorProto.FLOAT),
    ]
    return nodes, inits


def _encoder(inp: str, out: str, keys: list[str], start: int, name: str) -> onnx.NodeProto:
    """String -> int64 lookup; ``""`` is missing, ids run from ``start`` in vocabulary order, default rare."""
    return helper.make_node(
        "LabelEncoder", [inp], [out], domain=ML_DOMAIN, name=_name(name),
        keys_strings=["", *keys], values_int64s=[MISSING_ID, *range(start, start + len(keys))],
        default_int64=RARE_ID,
    )  # fmt: skip


def _per_field_nodes(featurizer: CtrFeaturizer, opset: int) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    """Split ``cat_raw`` into [N, 1] columns (one node), encode each, concatenate: 28 nodes for 26 fields."""
    ccols = featurizer.categorical_columns
    cols = [_name(f"raw{j}") for j in range(len(ccols))]
    ids = [_name(f"id{j}") for j in range(len(ccols))]
    split = helper.make_node("Split", [CAT_RAW], cols, axis=1, name=_name("split"))
    if opset >= 18:  # before 18, equal parts = one per output
        split.attribute.append(helper.make_attribute("num_outputs", len(ccols)))
    nodes = [split]
    nodes += [
        _encoder(x, y, featurizer.vocab[c], FIRST_ID, f"encode_{c}") for x, y, c in zip(cols, ids, ccols, strict=True)
    ]
    nodes.append(helper.make_node("Concat", ids, ["sparse"], axis=1, name=_name("concat")))
    return nodes, []


def _joint_nodes(featurizer: CtrFeaturizer, opset: int) -> tuple[list[onnx.NodeProto], list[TensorProto]]:
    """One encoder over ``"<j>\\x1f<value>"``; a missing value becomes ``"<j>\\x1f"`` and maps to MISSING_ID."""
    ccols = featurizer.categorical_columns
    prefixes = np.array([[f"{j}{KEY_SEP}" for j in range(len(ccols))]], dtype=object)
    inits = [
        helper.make_tensor(
            _name("prefix"), TensorProto.STRING, list(prefixes.shape), [p.encode() for p in prefixes.ravel()]
        )
    ]
    keys: list[str] = []
    values: list[int] = []
    for j, c in enumerate(ccols):
        keys.append(f"{j}{KEY_SEP}")
        values.append(MISSING_ID)
        keys += [f"{j}{KEY_SEP}{k}" for k in featurizer.vocab[c]]
        values += list(range(FIRST_ID, FIRST_ID + len(featurizer.vocab[c])))
    nodes = [
        helper.make_node("StringConcat", [_name("prefix"), CAT_RAW], [_name("keys")]),
        helper.make_node(
            "LabelEncoder",
            [_name("keys")],
            ["sparse"],
            domain=ML_DOMAIN,
            name=_name("encode"),
            keys_strings=keys,
            values_int64s=values,
            default_int64=RARE_ID,
        ),
    ]
    return nodes, inits


def build_feature_graph(
    featurizer: CtrFeaturizer,
    *,
    opset: int = 17,
    ml_opset: int = 3,
    ir_version: int = 8,
    encoder: Encoder = "per_field",
) -> onnx.ModelProto:
    """``dense_raw`` FP64 [-1, D] + ``cat_raw`` STRING [-1, C] -> ``dense`` FP32 [-1, D] + ``sparse`` INT64 [-1, C]."""
    if opset < MIN_OPSET:
        raise ValueError(f"the feature graph needs opset >= {MIN_OPSET}, got {opset}")
    if encoder == "joint" and opset < JOINT_MIN_OPSET:
        raise ValueError(f"encoder='joint' needs StringConcat (opset >= {JOINT_MIN_OPSET}), got opset {opset}")
    d, c = len(featurizer.dense_columns), len(featurizer.categorical_columns)
    dense_nodes, dense_inits = _dense_nodes(featurizer)
    cat_nodes, cat_inits = (_joint_nodes if encoder == "joint" else _per_field_nodes)(featurizer, opset)
    graph = helper.make_graph(
        [*dense_nodes, *cat_nodes], "ctr_featurize",
        [helper.make_tensor_value_info(DENSE_RAW, TensorProto.DOUBLE, ["batch", d]),
         helper.make_tensor_value_info(CAT_RAW, TensorProto.STRING, ["batch", c])],
        [helper.make_tensor_value_info("dense", TensorProto.FLOAT, ["batch", d]),
         helper.make_tensor_value_info("sparse", TensorProto.INT64, ["batch", c])],
        initializer=[*dense_inits, *cat_inits],
    )  # fmt: skip
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ml_opset)],
        producer_name="shopinfer.compress.ctr.feature_graph",
    )
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    return model


def _opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {o.domain or "": o.version for o in model.opset_import}


def feature_graph_for(
    featurizer: CtrFeaturizer, model: onnx.ModelProto, encoder: Encoder = "per_field"
) -> onnx.ModelProto:
    """The feature graph at ``model``'s own opsets and IR version, ready for :func:`merge_with_model`."""
    ops = _opsets(model)
    return build_feature_graph(
        featurizer,
        opset=ops.get("", MIN_OPSET),
        ml_opset=max(ops.get(ML_DOMAIN, 3), 2),
        ir_version=model.ir_version,
        encoder=encoder,
    )


def merge_with_model(feature_graph: onnx.ModelProto, model: onnx.ModelProto) -> onnx.ModelProto:
    """One graph raw -> model outputs: the feature graph's ``dense``/``sparse`` feed the model's inputs.

    Merged by hand (nodes in order, initializers and opsets united) so the model graph keeps its names; the
    feature graph's internal names all carry the ``featurize/`` prefix, and any clash is an error.
    """
    fg, mg = feature_graph.graph, model.graph
    fg_out = {o.name for o in fg.output}
    m_in = [i.name for i in mg.input if i.name not in {t.name for t in mg.initializer}]
    if set(m_in) != fg_out:
        raise ValueError(f"model inputs {sorted(m_in)} do not match the feature graph outputs {sorted(fg_out)}")
    f_ops, m_ops = _opsets(feature_graph), _opsets(model)
    if f_ops.get("", 0) != m_ops.get("", 0):
        raise ValueError(
            f"opset mismatch: feature graph {f_ops.get('')}, model {m_ops.get('')} (use feature_graph_for)"
        )
    f_names = _value_names(fg) - fg_out
    clash = f_names & _value_names(mg)
    if clash:
        raise ValueError(f"name clash between the feature graph and the model: {sorted(clash)[:5]}")
    opsets = {**f_ops}
    for dom, ver in m_ops.items():
        opsets[dom] = max(ver, opsets.get(dom, 0))
    graph = helper.make_graph(
        [*fg.node, *mg.node], f"{mg.name or 'model'}_raw", list(fg.input), list(mg.output),
        initializer=[*fg.initializer, *mg.initializer],
        value_info=[*fg.value_info, *fg.output, *mg.value_info],
    )  # fmt: skip
    merged = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in sorted(opsets.items())],
        producer_name=model.producer_name or "shopinfer",
        producer_version=model.producer_version,
    )
    merged.ir_version = max(model.ir_version, feature_graph.ir_version)
    onnx.checker.check_model(merged)
    return merged


def _value_names(g: onnx.GraphProto) -> set[str]:
    names = {t.name for t in g.initializer} | {i.name for i in g.input} | {o.name for o in g.output}
    for node in g.node:
        names.update(x for x in node.input if x)
        names.update(x for x in node.output if x)
    return names


def build_raw_model(
    featurizer: CtrFeaturizer, model: onnx.ModelProto, encoder: Encoder = "per_field"
) -> onnx.ModelProto:
    """Feature graph at the model's opsets, merged in front of it: the "raw_model" a version publishes."""
    return merge_with_model(feature_graph_for(featurizer, model, encoder), model)


def check_raw_model(
    raw_model: onnx.ModelProto,
    model: onnx.ModelProto,
    featurizer: Featurizer,
    records: Sequence[Mapping[str, Any]],
    atol: float = 1e-6,
) -> float:
    """Max |difference| of both paths' outputs on ``records``; raises ValueError above ``atol``."""
    from app.runtime.ort_options import cpu_session

    def session(m: onnx.ModelProto) -> Any:
        return cpu_session(m.SerializeToString())

    outputs = [o.name for o in model.graph.output]
    ref = session(model).run(outputs, featurizer.transform_records(records))
    got = session(raw_model).run(outputs, raw_arrays(records, featurizer))
    diff = max((float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True) if a.size), default=0.0)
    if not diff <= atol:
        raise ValueError(
            f"the raw-input graph differs from the model by {diff:.3g} (> {atol:g}) on {len(records)} rows"
        )
    return diff


def write_raw_model(
    featurizer: CtrFeaturizer, model_path: Path, version_dir: Path, check_records: Sequence[Mapping[str, Any]] = ()
) -> dict[str, str]:
    """Write ``model_raw.onnx`` (featurization + ``model_path``) into ``version_dir``; returns ``{role: path}``.

    With ``check_records``, both paths must agree on them first, so a version never ships a raw graph that
    scores differently from its gated model.
    """
    model = onnx.load(str(model_path))
    raw = build_raw_model(featurizer, model)
    if check_records:
        check_raw_model(raw, model, featurizer, check_records)
    onnx.save(raw, str(version_dir / RAW_MODEL_FILE))
    return {RAW_MODEL_ROLE: RAW_MODEL_FILE}

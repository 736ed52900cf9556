"""The scikit-learn side of an export, and joining it to the torch graph.

A ``Pipeline(extractor -> steps...)``'s steps after the extractor are
converted by skl2onnx's registered converters (classifiers without ZipMap, so
the graph ends in ``label`` and ``probabilities`` as skl2onnx's do; regressors
and transformers in ``variable``), then joined to the exported backbone with
``onnx.compose.merge_models``. A fine-tuner's labels are a ``Gather`` of its
``classes_`` at the top class's index.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["append_labels", "convert_head", "join"]


def convert_head(steps, n_features: int, opset: int) -> onnx.ModelProto:
    """skl2onnx's graph of ``steps`` (an estimator or a Pipeline) on float
    embeddings named ``embeddings``."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    final = steps[-1] if hasattr(steps, "steps") else steps
    options = {}
    if hasattr(final, "classes_") and hasattr(final, "predict_proba"):
        options = {id(final): {"zipmap": False}}
    try:
        return convert_sklearn(
            steps,
            initial_types=[("embeddings", FloatTensorType([None, n_features]))],
            target_opset={"": opset, "ai.onnx.ml": 3},
            options=options,
        )
    except Exception as exc:  # skl2onnx's errors name the step it lacks
        raise TypeError(
            f"skl2onnx cannot convert the steps after the extractor "
            f"({type(final).__name__}): {exc}"
        ) from exc


def _unique_opsets(model: onnx.ModelProto) -> None:
    seen = {}
    for op in model.opset_import:
        seen[op.domain] = max(seen.get(op.domain, 0), op.version)
    del model.opset_import[:]
    model.opset_import.extend(helper.make_opsetid(d, v) for d, v in seen.items())


def join(body: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """``body`` (ending in ``embeddings``) followed by ``head``; the merged
    graph keeps ``embeddings`` as an output beside the head's."""
    for model in (body, head):
        _unique_opsets(model)
    embeddings = next(o for o in body.graph.output if o.name == "embeddings")
    embeddings = copy.deepcopy(embeddings)
    version = max(body.ir_version, head.ir_version)
    body.ir_version = head.ir_version = version
    merged = onnx.compose.merge_models(
        body,
        head,
        io_map=[("embeddings", "embeddings")],  # prefix2 applies to it
        prefix2="head/",
    )
    renames = {f"head/{o.name}": o.name for o in head.graph.output}
    for node in merged.graph.node:
        node.output[:] = [renames.get(n, n) for n in node.output]
        node.input[:] = [renames.get(n, n) for n in node.input]
    for out in merged.graph.output:
        out.name = renames.get(out.name, out.name)
    _unique_opsets(merged)  # merge_models lists a shared domain twice
    outputs = [embeddings, *merged.graph.output]
    del merged.graph.output[:]
    merged.graph.output.extend(outputs)
    return merged


def append_labels(model: onnx.ModelProto, classes, index: str = "label_index"):
    """Replace the output ``index`` by ``label``: ``classes[index]``."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "UO":
        array, elem = (
            np.asarray([str(c) for c in classes], dtype=object),
            (TensorProto.STRING),
        )
    elif classes.dtype.kind in "iub":
        array, elem = classes.astype(np.int64), TensorProto.INT64
    else:
        raise TypeError(
            f"classes of dtype {classes.dtype} cannot be ONNX labels; use integer "
            "or string labels."
        )
    model.graph.initializer.append(numpy_helper.from_array(array, "classes"))
    model.graph.node.append(
        helper.make_node("Gather", ["classes", index], ["label"], axis=0)
    )
    outputs = [o for o in model.graph.output if o.name != index]
    del model.graph.output[:]
    model.graph.output.extend(
        [helper.make_tensor_value_info("label", elem, [None]), *outputs]
    )

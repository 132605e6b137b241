#!/usr/bin/env python3
"""Generators for classic ImageNet CNNs as ONNX files (the kiln "model zoo").

Each model is built node by node with onnx.helper only, with seeded random
weights: He-normal conv/fc weights, BatchNormalization with gamma ~1, beta ~0,
running mean ~0 and running variance ~1 (all with a little noise), so that
activations stay in a sane range when the model is actually run. The graphs
follow the reference architectures exactly (torchvision layouts, or the
Caffe AlexNet), so parameter counts match the published figures.

The module also exposes EXPECTED, the figures a correct `kiln inspect` must
report for each model. They are computed here, independently of kiln, by
analysing the graph itself (analyse()): learnable parameters, BatchNorm
running statistics, multiply-accumulates (with ONNX shape inference, any
symbolic batch bound to 1), the opset, and the model's real inputs/outputs.
EXPECTED is built from weightless "skeleton" graphs so importing is cheap.

Usage:  python3 models/gen/zoo.py OUT_DIR [name ...]
writes OUT_DIR/NAME.onnx for each named model (default: all), skipping files
that already exist and are newer than this script.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PRODUCER = "kiln-zoo"
IMAGE = [1, 3, 224, 224]
CLASSES = 1000

# ---------------------------------------------------------------------------
# Graph builder
# ---------------------------------------------------------------------------


class Builder:
    """Accumulates nodes and initializers for one graph.

    With materialize=False the weight tensors are "hollow": they carry
    name, dtype and dims but no data. Such a graph is only good for
    analyse(), which never needs the weight values. Small constants
    (shapes, axes, clip bounds) are always materialized.
    """

    def __init__(self, seed, materialize=True):
        self.rng = np.random.default_rng(seed)
        self.materialize = materialize
        self.nodes = []
        self.inits = []
        self._names = set()

    # -- tensors ----------------------------------------------------------

    def _add_init(self, tensor):
        assert tensor.name not in self._names, tensor.name
        self._names.add(tensor.name)
        self.inits.append(tensor)
        return tensor.name

    def param(self, name, shape, sample):
        """A float32 learnable tensor; sample(rng, shape) draws its values."""
        if not self.materialize:
            return self._add_init(_hollow(name, shape))
        values = np.asarray(sample(self.rng, shape), dtype=np.float32)
        return self._add_init(numpy_helper.from_array(values, name))

    def he_weight(self, name, shape, fan_in):
        std = np.sqrt(2.0 / fan_in)
        return self.param(name, shape, lambda r, s: r.standard_normal(s, dtype=np.float32) * std)

    def small(self, name, shape, scale=0.01, offset=0.0):
        return self.param(name, shape,
                          lambda r, s: offset + scale * r.standard_normal(s, dtype=np.float32))

    def const(self, name, values, dtype):
        """A small constant initializer (always materialized)."""
        if name in self._names:  # shared constants (e.g. ReLU6 bounds)
            return name
        return self._add_init(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))

    def node(self, op, inputs, name, n_outputs=1, **attrs):
        outputs = [name] if n_outputs == 1 else [f"{name}:{i}" for i in range(n_outputs)]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0]

    # -- layers -----------------------------------------------------------

    def conv(self, x, name, cin, cout, k, stride=1, pad=None, group=1, bias=False):
        pad = k // 2 if pad is None else pad
        w = self.he_weight(f"{name}.weight", [cout, cin // group, k, k], cin // group * k * k)
        inputs = [x, w]
        if bias:
            inputs.append(self.small(f"{name}.bias", [cout]))
        return self.node("Conv", inputs, name, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[pad] * 4, group=group, dilations=[1, 1])

    def bn(self, x, name, c, gamma=1.0):
        scale = self.small(f"{name}.weight", [c], 0.05, gamma)
        shift = self.small(f"{name}.bias", [c], 0.05)
        mean = self.small(f"{name}.running_mean", [c], 0.05)
        var = self.param(f"{name}.running_var", [c],
                         lambda r, s: np.exp(0.1 * r.standard_normal(s, dtype=np.float32)))
        return self.node("BatchNormalization", [x, scale, shift, mean, var], name, epsilon=1e-5)

    def relu(self, x, name):
        return self.node("Relu", [x], name)

    def relu6(self, x, name):
        """ReLU6 as opset-13 Clip; the bounds are shared scalar initializers."""
        lo = self.const("relu6.min", 0.0, np.float32)
        hi = self.const("relu6.max", 6.0, np.float32)
        return self.node("Clip", [x, lo, hi], name)

    def maxpool(self, x, name, k, stride, pads):
        return self.node("MaxPool", [x], name, kernel_shape=[k, k], strides=[stride, stride],
                         pads=pads)

    def add(self, a, b, name):
        return self.node("Add", [a, b], name)

    def gemm(self, x, name, k, n):
        """A PyTorch-style Linear: weight [n, k] used with transB=1."""
        w = self.he_weight(f"{name}.weight", [n, k], k)
        b = self.small(f"{name}.bias", [n])
        return self.node("Gemm", [x, w, b], name, alpha=1.0, beta=1.0, transB=1)

    def dropout9(self, x, name, ratio=0.5):
        """Opset-9 Dropout: ratio is an attribute."""
        return self.node("Dropout", [x], name, ratio=ratio)

    def lrn(self, x, name):
        return self.node("LRN", [x], name, size=5, alpha=1e-4, beta=0.75, bias=1.0)

    def gap_flatten(self, x, name):
        x = self.node("GlobalAveragePool", [x], f"{name}.gap")
        return self.node("Flatten", [x], f"{name}.flatten", axis=1)

    def dynamic_flatten(self, x, name):
        """x.view(x.size(0), -1) the way PyTorch exports it at opset 13."""
        def constant(suffix, values):
            t = numpy_helper.from_array(np.asarray(values, dtype=np.int64), f"{name}.{suffix}")
            return self.node("Constant", [], f"{name}.{suffix}", value=t)
        shape = self.node("Shape", [x], f"{name}.shape")
        batch = self.node("Gather", [shape, constant("index", 0)], f"{name}.gather", axis=0)
        batch = self.node("Unsqueeze", [batch, constant("axes", [0])], f"{name}.unsqueeze")
        target = self.node("Concat", [batch, constant("minus_one", [-1])], f"{name}.concat",
                           axis=0)
        return self.node("Reshape", [x, target], f"{name}.reshape")

    # -- model ------------------------------------------------------------

    def finish(self, graph_name, x_in, logits, opset, in_shape=IMAGE, out_shape=None,
               ir_version=None, inits_as_inputs=False):
        """Wrap up: rename the last tensor to "logits", build the ModelProto."""
        out_shape = out_shape or [in_shape[0], CLASSES]
        self.nodes[-1].output[0] = "logits"
        assert logits == self.nodes[-1].name
        inputs = [helper.make_tensor_value_info(x_in, TensorProto.FLOAT, in_shape)]
        if inits_as_inputs:  # as exporters did for IR version < 4
            inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in self.inits]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)]
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name=PRODUCER, producer_version="1")
        model.ir_version = ir_version or helper.find_min_ir_version_for([model.opset_import[0]])
        return model


def _hollow(name, shape):
    """A float tensor with dims but no data (for weightless skeletons)."""
    t = TensorProto()
    t.name, t.data_type = name, TensorProto.FLOAT
    t.dims.extend(shape)
    return t


# ---------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------


def _resnet_stem(b, x):
    x = b.conv(x, "conv1", 3, 64, 7, stride=2, pad=3)
    x = b.relu(b.bn(x, "bn1", 64), "relu")
    return b.maxpool(x, "maxpool", 3, 2, [1, 1, 1, 1])


def _downsample(b, x, name, cin, cout, stride):
    x = b.conv(x, f"{name}.downsample.0", cin, cout, 1, stride=stride, pad=0)
    return b.bn(x, f"{name}.downsample.1", cout)


def _basic_block(b, x, name, cin, width, stride):
    y = b.conv(x, f"{name}.conv1", cin, width, 3, stride=stride)
    y = b.relu(b.bn(y, f"{name}.bn1", width), f"{name}.relu1")
    y = b.conv(y, f"{name}.conv2", width, width, 3)
    y = b.bn(y, f"{name}.bn2", width, gamma=0.5)
    if stride != 1 or cin != width:
        x = _downsample(b, x, name, cin, width, stride)
    return b.relu(b.add(y, x, f"{name}.add"), f"{name}.relu2"), width


def _bottleneck(b, x, name, cin, width, stride):
    """torchvision v1.5 bottleneck: the stride sits on the 3x3 conv."""
    cout = 4 * width
    y = b.conv(x, f"{name}.conv1", cin, width, 1, pad=0)
    y = b.relu(b.bn(y, f"{name}.bn1", width), f"{name}.relu1")
    y = b.conv(y, f"{name}.conv2", width, width, 3, stride=stride)
    y = b.relu(b.bn(y, f"{name}.bn2", width), f"{name}.relu2")
    y = b.conv(y, f"{name}.conv3", width, cout, 1, pad=0)
    y = b.bn(y, f"{name}.bn3", cout, gamma=0.5)
    if stride != 1 or cin != cout:
        x = _downsample(b, x, name, cin, cout, stride)
    return b.relu(b.add(y, x, f"{name}.add"), f"{name}.relu3"), cout


def _resnet_body(b, x, block, depths):
    """The four stages; returns (features, channels)."""
    x, c = _resnet_stem(b, x), 64
    for stage, (depth, width) in enumerate(zip(depths, [64, 128, 256, 512])):
        for i in range(depth):
            stride = 2 if stage > 0 and i == 0 else 1
            x, c = block(b, x, f"layer{stage + 1}.{i}", c, width, stride)
    return x, c


def resnet50(materialize=True):
    b = Builder(seed=50, materialize=materialize)
    x, c = _resnet_body(b, "input", _bottleneck, [3, 4, 6, 3])
    y = b.gemm(b.gap_flatten(x, "pool"), "fc", c, CLASSES)
    return b.finish("resnet50", "input", y, opset=13)


def resnet18_dynbatch(materialize=True):
    b = Builder(seed=18, materialize=materialize)
    x, c = _resnet_body(b, "input", _basic_block, [2, 2, 2, 2])
    x = b.node("GlobalAveragePool", [x], "avgpool")
    y = b.gemm(b.dynamic_flatten(x, "flatten"), "fc", c, CLASSES)
    return b.finish("resnet18_dynbatch", "input", y, opset=13,
                    in_shape=["N", 3, 224, 224], out_shape=["N", CLASSES])


def _conv_bn_relu6(b, x, name, cin, cout, k, stride=1, group=1):
    x = b.conv(x, f"{name}.0", cin, cout, k, stride=stride, group=group)
    return b.relu6(b.bn(x, f"{name}.1", cout), f"{name}.2")


def _inverted_residual(b, x, name, cin, cout, stride, expand):
    hidden = cin * expand
    y = x
    if expand != 1:
        y = _conv_bn_relu6(b, y, f"{name}.expand", cin, hidden, 1)
    y = _conv_bn_relu6(b, y, f"{name}.dw", hidden, hidden, 3, stride=stride, group=hidden)
    y = b.conv(y, f"{name}.project", hidden, cout, 1, pad=0)
    y = b.bn(y, f"{name}.project_bn", cout, gamma=0.5)
    if stride == 1 and cin == cout:
        y = b.add(x, y, f"{name}.add")
    return y


MOBILENETV2_SETTINGS = [  # expansion t, channels c, repeats n, stride s
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
]


def mobilenetv2(materialize=True):
    b = Builder(seed=2, materialize=materialize)
    x = _conv_bn_relu6(b, "input", "features.0", 3, 32, 3, stride=2)
    c, index = 32, 1
    for t, cout, n, s in MOBILENETV2_SETTINGS:
        for i in range(n):
            x = _inverted_residual(b, x, f"features.{index}", c, cout, s if i == 0 else 1, t)
            c, index = cout, index + 1
    x = _conv_bn_relu6(b, x, f"features.{index}", c, 1280, 1)
    y = b.gemm(b.gap_flatten(x, "pool"), "classifier", 1280, CLASSES)
    return b.finish("mobilenetv2", "input", y, opset=13)


def alexnet_v9(materialize=True):
    """Caffe bvlc_alexnet (grouped conv2/4/5, LRN) at opset 9, IR version 3.

    At 224x224 Caffe's ceil-mode pool1 (54 -> 27) is written as an explicit
    one-pixel end padding, since MaxPool has no ceil_mode before opset 10.
    """
    b = Builder(seed=9, materialize=materialize)
    x = b.relu(b.conv("input", "conv1", 3, 96, 11, stride=4, pad=0, bias=True), "relu1")
    x = b.maxpool(b.lrn(x, "norm1"), "pool1", 3, 2, [0, 0, 1, 1])
    x = b.relu(b.conv(x, "conv2", 96, 256, 5, pad=2, group=2, bias=True), "relu2")
    x = b.maxpool(b.lrn(x, "norm2"), "pool2", 3, 2, [0, 0, 0, 0])
    x = b.relu(b.conv(x, "conv3", 256, 384, 3, bias=True), "relu3")
    x = b.relu(b.conv(x, "conv4", 384, 384, 3, group=2, bias=True), "relu4")
    x = b.relu(b.conv(x, "conv5", 384, 256, 3, group=2, bias=True), "relu5")
    x = b.maxpool(x, "pool5", 3, 2, [0, 0, 0, 0])
    x = b.node("Reshape", [x, b.const("flatten.shape", [1, -1], np.int64)], "flatten")
    x = b.dropout9(b.relu(b.gemm(x, "fc6", 9216, 4096), "relu6"), "drop6")
    x = b.dropout9(b.relu(b.gemm(x, "fc7", 4096, 4096), "relu7"), "drop7")
    y = b.gemm(x, "fc8", 4096, CLASSES)
    return b.finish("alexnet_v9", "input", y, opset=9, ir_version=3, inits_as_inputs=True)


VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_v9(materialize=True):
    b = Builder(seed=16, materialize=materialize)
    x, c = "input", 3
    for i, v in enumerate(VGG16_CONFIG):
        if v == "M":
            x = b.maxpool(x, f"features.{i}", 2, 2, [0, 0, 0, 0])
        else:
            x = b.relu(b.conv(x, f"features.{i}", c, v, 3, bias=True), f"features.{i}.relu")
            c = v
    x = b.node("Flatten", [x], "flatten", axis=1)
    x = b.dropout9(b.relu(b.gemm(x, "classifier.0", 512 * 7 * 7, 4096), "classifier.1"),
                   "classifier.2")
    x = b.dropout9(b.relu(b.gemm(x, "classifier.3", 4096, 4096), "classifier.4"),
                   "classifier.5")
    y = b.gemm(x, "classifier.6", 4096, CLASSES)
    return b.finish("vgg16_v9", "input", y, opset=9)


MODELS = {
    "resnet50": resnet50,
    "mobilenetv2": mobilenetv2,
    "alexnet_v9": alexnet_v9,
    "vgg16_v9": vgg16_v9,
    "resnet18_dynbatch": resnet18_dynbatch,
}

# ---------------------------------------------------------------------------
# Independent analysis (what `kiln inspect` must agree with)
# ---------------------------------------------------------------------------

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
DTYPE_NAMES = {TensorProto.FLOAT: "f32", TensorProto.FLOAT16: "f16", TensorProto.DOUBLE: "f64",
               TensorProto.BFLOAT16: "bf16", TensorProto.INT64: "i64", TensorProto.INT32: "i32",
               TensorProto.INT8: "i8", TensorProto.UINT8: "u8", TensorProto.BOOL: "bool"}
BN_STAT_SLOTS = {("BatchNormalization", 3), ("BatchNormalization", 4)}
# Inputs that hold shapes, axes, indices or clip bounds rather than learned weights.
NON_LEARNED_SLOTS = {("Reshape", 1), ("Unsqueeze", 1), ("Squeeze", 1), ("Expand", 1),
                     ("Tile", 1), ("Pad", 1), ("Gather", 1), ("Clip", 1), ("Clip", 2),
                     ("Slice", 1), ("Slice", 2), ("Slice", 3), ("Slice", 4),
                     ("ReduceMean", 1), ("ReduceSum", 1), ("Resize", 1), ("Resize", 2),
                     ("Resize", 3), ("Upsample", 1), ("ConstantOfShape", 0)}

# Published figures (torchvision model docs; Caffe bvlc_alexnet). MACs are
# published rounded to 10 MMAC ("GFLOPS" in torchvision's tables).
PUBLISHED = {
    "resnet50": {"params": 25_557_032, "gmacs": 4.09},
    "mobilenetv2": {"params": 3_504_872, "gmacs": 0.30},
    "alexnet_v9": {"params": 60_965_224},
    "vgg16_v9": {"params": 138_357_544, "gmacs": 15.47},
    "resnet18_dynbatch": {"params": 11_689_512, "gmacs": 1.81},
}


def _numel(dims):
    return int(np.prod(dims, dtype=np.int64)) if len(dims) else 1


def _uses(graph):
    """initializer name -> set of (op_type, input slot) that consume it."""
    uses = {}
    for node in graph.node:
        for slot, name in enumerate(node.input):
            uses.setdefault(name, set()).add((node.op_type, slot))
    return uses


def count_params(model):
    """(learnable params, BatchNorm running-stat elements) from initializers."""
    uses = _uses(model.graph)
    params = bn_stats = 0
    for t in model.graph.initializer:
        slots = uses.get(t.name, set())
        n = _numel(t.dims)
        if slots and slots <= BN_STAT_SLOTS:
            bn_stats += n
        elif t.data_type in FLOAT_TYPES and not (slots and slots <= NON_LEARNED_SLOTS):
            params += n
    return params, bn_stats


def _has_data(t):
    return bool(t.raw_data or t.float_data or t.int64_data or t.int32_data or t.double_data
                or t.data_location == TensorProto.EXTERNAL)


def _dims(value_info):
    return value_info.type.tensor_type.shape.dim


def _shape_skeleton(model):
    """A weightless copy for shape inference: big or hollow initializers become
    declared graph inputs, symbolic input dims are bound to 1, output shapes
    are dropped (they are re-inferred)."""
    g = model.graph
    keep = [t for t in g.initializer
            if _has_data(t) and (t.data_type not in FLOAT_TYPES or _numel(t.dims) <= 64)]
    kept = {t.name for t in keep}
    inits = {t.name for t in g.initializer}
    inputs = []
    for vi in g.input:
        if vi.name in inits:
            continue
        vi = helper.make_tensor_value_info(
            vi.name, vi.type.tensor_type.elem_type,
            [d.dim_value if d.HasField("dim_value") else 1 for d in _dims(vi)])
        inputs.append(vi)
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
               for t in g.initializer if t.name not in kept]
    outputs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None)
               for o in g.output]
    graph = helper.make_graph(list(g.node), g.name, inputs, outputs, keep)
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = max(model.ir_version, 4)
    return m


def _inferred_shapes(model):
    m = onnx.shape_inference.infer_shapes(_shape_skeleton(model), strict_mode=True,
                                          data_prop=True)
    g = m.graph
    shapes = {t.name: list(t.dims) for t in g.initializer}
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        dims = _dims(vi)
        known = vi.type.tensor_type.HasField("shape")
        if known and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    return shapes


def count_macs(model):
    """Sum of multiply-accumulates over Conv, Gemm and MatMul (batch = 1)."""
    shapes = _inferred_shapes(model)
    producer = {out: node for node in model.graph.node for out in node.output}

    def shape(name):
        if name not in shapes:
            raise ValueError(f"shape of {name!r} not inferred")
        return shapes[name]

    def numel(name):
        """Element count; looks through Reshape/Flatten when the shape is data
        dependent (e.g. the Shape->Gather->Concat->Reshape flatten)."""
        node = producer.get(name)
        if name not in shapes and node is not None and node.op_type in ("Reshape", "Flatten"):
            return numel(node.input[0])
        return _numel(shape(name))

    macs = 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            x, w, y = (shape(n) for n in (node.input[0], node.input[1], node.output[0]))
            macs += _numel(y) * (x[1] // attrs.get("group", 1)) * _numel(w[2:])
        elif node.op_type == "Gemm":  # A is 2-D, so M * K = numel(A)
            b = shape(node.input[1])
            n = b[0] if attrs.get("transB", 0) else b[1]
            macs += numel(node.input[0]) * n
        elif node.op_type == "MatMul":
            a, y = shape(node.input[0]), shape(node.output[0])
            macs += _numel(y) * a[-1]
    return macs


def _io(value_infos, exclude=()):
    out = []
    for vi in value_infos:
        if vi.name in exclude:
            continue
        shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in _dims(vi)]
        out.append({"name": vi.name, "dtype": DTYPE_NAMES[vi.type.tensor_type.elem_type],
                    "shape": shape})
    return out


def analyse(model):
    """The EXPECTED record for a model. "inputs" lists only real inputs (graph
    inputs that are initializers too, as in IR<4 models, are left out)."""
    params, bn_stats = count_params(model)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    inits = {t.name for t in model.graph.initializer}
    return {"params": params, "bn_stats": bn_stats, "macs": count_macs(model), "opset": opset,
            "inputs": _io(model.graph.input, inits), "outputs": _io(model.graph.output)}


def check_published(name, record):
    pub = PUBLISHED.get(name, {})
    if "params" in pub:
        assert record["params"] == pub["params"], (name, record["params"], pub["params"])
    if "gmacs" in pub:
        assert abs(record["macs"] / 1e9 - pub["gmacs"]) <= 0.005 + 1e-9, (name, record["macs"])


def _expected():
    table = {}
    for name, build in MODELS.items():
        table[name] = analyse(build(materialize=False))
        check_published(name, table[name])
    return table


EXPECTED = _expected()

# ---------------------------------------------------------------------------
# Writing files
# ---------------------------------------------------------------------------


def _up_to_date(path):
    return os.path.exists(path) and os.path.getmtime(path) > os.path.getmtime(__file__)


def write_model(name, path):
    """Build, verify against EXPECTED, check and save (atomically) one model."""
    model = MODELS[name]()
    record = analyse(model)
    assert record == EXPECTED[name], (name, record, EXPECTED[name])
    onnx.checker.check_model(model, full_check=True)
    tmp = f"{path}.tmp{os.getpid()}"
    onnx.save(model, tmp)
    os.replace(tmp, path)


def generate(out_dir, names=None, log=print):
    """Write OUT_DIR/NAME.onnx for each name (default all); returns name -> path."""
    names = list(names or MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; known: {sorted(MODELS)}")
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for name in names:
        path = paths[name] = os.path.join(out_dir, f"{name}.onnx")
        if _up_to_date(path):
            log(f"up to date: {path}")
            continue
        write_model(name, path)
        log(f"wrote {path}")
    return paths


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.split("Usage:")[1].strip(), file=sys.stderr)
        print(f"models: {' '.join(MODELS)}", file=sys.stderr)
        return 2
    generate(argv[1], argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""More model-zoo generators (issue #3): networks beyond zoo.py's ResNets,
MobileNetV2, AlexNet and VGG, built the same way with zoo.Builder (onnx.helper
only, seeded random weights, opset 13).

  densenet121    torchvision DenseNet-121: growth 32, blocks 6/12/24/16,
                 bn_size 4, pre-activation BN-ReLU-Conv layers, each layer
                 reading the Concat of every earlier feature map of its block
                 (as torch's ONNX export writes it), transitions
                 BN-ReLU-Conv1x1-AvgPool2x2.          7,978,856 params
  squeezenet1_1  torchvision SqueezeNet 1.1: fire modules (squeeze 1x1,
                 expand 1x1 and 3x3, Concat), ceil-mode max pools, final
                 Conv1x1 + ReLU + GlobalAveragePool + Flatten. 1,235,496 params
  googlenet      Inception v1 as in Caffe's bvlc_googlenet (Szegedy et al.
                 2014, no auxiliary heads): biased convs + ReLU, LRN after
                 pool1 and conv2, ceil-mode max pools, nine 4-branch inception
                 modules (1x1 | 1x1-3x3 | 1x1-5x5 | MaxPool3x3s1p1-1x1) joined
                 by Concat, AveragePool 7x7, Flatten, Gemm. 6,998,552 params
  unet2d         2-D U-Net for 1x1x128x128 single-channel images: 4 levels
                 of (Conv3x3-BN-ReLU) x2 with 16/32/64/128 channels, each
                 followed by MaxPool 2x2, a 256-channel bottleneck at 8x8,
                 4 up levels of ConvTranspose 2x2 stride 2 + Concat with the
                 skip + (Conv3x3-BN-ReLU) x2, final Conv1x1 to 2 classes:
                 output [1,2,128,128] per-pixel logits.  1,942,306 params
  cnn3d          small 3-D CNN for 1x1x64x64x64 CT volumes:
                 (Conv3d 3x3x3-BN-ReLU-MaxPool3d 2) x3 with 8/16/32 channels,
                 GlobalAveragePool, Flatten, Gemm to 2 classes.       17,674 params

Initialisation (inherited from zoo.Builder): He-normal conv/fc weights, and
BatchNormalization close to identity (gamma ~1, beta ~0, mean ~0, var ~1), so
He scaling keeps every activation's second moment roughly constant through the
depth. Standard-normal inputs give outputs of order 1-10 (checked with ONNX
Runtime; see check_ranges()).

Like zoo.py the module exposes EXPECTED (params, bn_stats, macs, opset,
inputs, outputs, as `kiln inspect --json` should report them), computed from
weightless skeletons with zoo's analysis plus ConvTranspose MACs (which zoo's
count_macs does not count: each input element times Cout/group x kernel,
the figure kiln uses too), and checks the published torchvision parameter
counts and MACs.

Usage:  python3 models/gen/zoo2.py OUT_DIR [name ...]
writes OUT_DIR/NAME.onnx for each named model (default: all of this module's),
skipping files that already exist and are newer than this script and zoo.py.
`python3 models/gen/zoo2.py --check` builds every model, prints its figures
and runs it once in ONNX Runtime on standard-normal input to show the
output range.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402

CLASSES = zoo.CLASSES
IMAGE = zoo.IMAGE
OPSET = 13

# ---------------------------------------------------------------------------
# Builder: zoo's, plus N-d convolution/pooling, ConvTranspose and Concat
# ---------------------------------------------------------------------------


class Builder(zoo.Builder):
    """zoo.Builder with the layers these networks need beyond zoo.py's."""

    def conv_nd(self, x, name, cin, cout, k, nd=2, stride=1, pad=None, group=1, bias=False):
        """Conv with a k^nd kernel (zoo.Builder.conv is 2-D only)."""
        pad = k // 2 if pad is None else pad
        w = self.he_weight(f"{name}.weight", [cout, cin // group] + [k] * nd,
                           cin // group * k ** nd)
        inputs = [x, w]
        if bias:
            inputs.append(self.small(f"{name}.bias", [cout]))
        return self.node("Conv", inputs, name, kernel_shape=[k] * nd, strides=[stride] * nd,
                         pads=[pad] * (2 * nd), group=group, dilations=[1] * nd)

    def conv_transpose(self, x, name, cin, cout, k, stride, bias=True):
        """PyTorch ConvTranspose2d(cin, cout, k, stride), weight [cin, cout, k, k].

        With k == stride every output pixel gets exactly one kernel tap from
        each input channel, so the He fan-in is cin (not cin * k * k)."""
        fan_in = cin * max(1, (k // stride) ** 2)
        w = self.he_weight(f"{name}.weight", [cin, cout, k, k], fan_in)
        inputs = [x, w]
        if bias:
            inputs.append(self.small(f"{name}.bias", [cout]))
        return self.node("ConvTranspose", inputs, name, kernel_shape=[k, k],
                         strides=[stride, stride], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)

    def pool(self, op, x, name, k, stride, pad=0, nd=2, ceil=False):
        """MaxPool or AveragePool with a k^nd window (symmetric padding)."""
        attrs = dict(kernel_shape=[k] * nd, strides=[stride] * nd, pads=[pad] * (2 * nd))
        if ceil:
            attrs["ceil_mode"] = 1
        return self.node(op, [x], name, **attrs)

    def concat(self, xs, name):
        return self.node("Concat", list(xs), name, axis=1)


# ---------------------------------------------------------------------------
# DenseNet-121 (torchvision.models.densenet121)
# ---------------------------------------------------------------------------

DENSENET121 = dict(growth=32, blocks=(6, 12, 24, 16), init_features=64, bn_size=4)


def _dense_layer(b, features, name, cin, growth, bn_size):
    """torch.cat(features) -> norm1-relu1-conv1(1x1) -> norm2-relu2-conv2(3x3)."""
    x = features[0] if len(features) == 1 else b.concat(features, f"{name}.cat")
    x = b.relu(b.bn(x, f"{name}.norm1", cin), f"{name}.relu1")
    x = b.conv(x, f"{name}.conv1", cin, bn_size * growth, 1, pad=0)
    x = b.relu(b.bn(x, f"{name}.norm2", bn_size * growth), f"{name}.relu2")
    return b.conv(x, f"{name}.conv2", bn_size * growth, growth, 3)


def _transition(b, x, name, cin, cout):
    x = b.relu(b.bn(x, f"{name}.norm", cin), f"{name}.relu")
    x = b.conv(x, f"{name}.conv", cin, cout, 1, pad=0)
    return b.pool("AveragePool", x, f"{name}.pool", 2, 2)


def densenet121(materialize=True):
    cfg = DENSENET121
    b = Builder(seed=121, materialize=materialize)
    c = cfg["init_features"]
    x = b.conv("input", "features.conv0", 3, c, 7, stride=2, pad=3)
    x = b.relu(b.bn(x, "features.norm0", c), "features.relu0")
    x = b.pool("MaxPool", x, "features.pool0", 3, 2, pad=1)
    for i, n_layers in enumerate(cfg["blocks"]):
        block = f"features.denseblock{i + 1}"
        features = [x]
        for j in range(n_layers):
            cin = c + j * cfg["growth"]
            features.append(_dense_layer(b, features, f"{block}.denselayer{j + 1}", cin,
                                         cfg["growth"], cfg["bn_size"]))
        x = b.concat(features, f"{block}.cat")
        c += n_layers * cfg["growth"]
        if i + 1 < len(cfg["blocks"]):
            x = _transition(b, x, f"features.transition{i + 1}", c, c // 2)
            c //= 2
    x = b.relu(b.bn(x, "features.norm5", c), "relu")
    y = b.gemm(b.gap_flatten(x, "pool"), "classifier", c, CLASSES)
    return b.finish("densenet121", "input", y, opset=OPSET)


# ---------------------------------------------------------------------------
# SqueezeNet 1.1 (torchvision.models.squeezenet1_1)
# ---------------------------------------------------------------------------

# Fire(inplanes, squeeze, expand1x1, expand3x3) or "M" (MaxPool 3/2, ceil mode)
SQUEEZENET1_1 = ["M", (64, 16, 64, 64), (128, 16, 64, 64), "M", (128, 32, 128, 128),
                 (256, 32, 128, 128), "M", (256, 48, 192, 192), (384, 48, 192, 192),
                 (384, 64, 256, 256), (512, 64, 256, 256)]


def _fire(b, x, name, cin, squeeze, e1, e3):
    s = b.relu(b.conv(x, f"{name}.squeeze", cin, squeeze, 1, pad=0, bias=True),
               f"{name}.squeeze_activation")
    y1 = b.relu(b.conv(s, f"{name}.expand1x1", squeeze, e1, 1, pad=0, bias=True),
                f"{name}.expand1x1_activation")
    y3 = b.relu(b.conv(s, f"{name}.expand3x3", squeeze, e3, 3, pad=1, bias=True),
                f"{name}.expand3x3_activation")
    return b.concat([y1, y3], f"{name}.cat"), e1 + e3


def squeezenet1_1(materialize=True):
    b = Builder(seed=11, materialize=materialize)
    x = b.relu(b.conv("input", "features.0", 3, 64, 3, stride=2, pad=0, bias=True),
               "features.1")
    c = 64
    for i, layer in enumerate(SQUEEZENET1_1, start=2):
        if layer == "M":
            x = b.pool("MaxPool", x, f"features.{i}", 3, 2, ceil=True)
        else:
            assert layer[0] == c, (layer, c)
            x, c = _fire(b, x, f"features.{i}", *layer)
    # classifier: Dropout (dropped at inference), final conv, ReLU, avgpool;
    # torchvision's own init draws the final conv with std 0.01, He here keeps
    # the logits O(1).
    x = b.relu(b.conv(x, "classifier.1", c, CLASSES, 1, pad=0, bias=True), "classifier.2")
    x = b.node("GlobalAveragePool", [x], "classifier.3")
    y = b.node("Flatten", [x], "flatten", axis=1)
    return b.finish("squeezenet1_1", "input", y, opset=OPSET)


# ---------------------------------------------------------------------------
# GoogLeNet / Inception v1 (Caffe bvlc_googlenet, no auxiliary classifiers)
# ---------------------------------------------------------------------------

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj); "M" = MaxPool 3/2 ceil
GOOGLENET = [("3a", (64, 96, 128, 16, 32, 32)), ("3b", (128, 128, 192, 32, 96, 64)), "M",
             ("4a", (192, 96, 208, 16, 48, 64)), ("4b", (160, 112, 224, 24, 64, 64)),
             ("4c", (128, 128, 256, 24, 64, 64)), ("4d", (112, 144, 288, 32, 64, 64)),
             ("4e", (256, 160, 320, 32, 128, 128)), "M",
             ("5a", (256, 160, 320, 32, 128, 128)), ("5b", (384, 192, 384, 48, 128, 128))]


def _conv_relu(b, x, name, cin, cout, k, stride=1, pad=None):
    return b.relu(b.conv(x, name, cin, cout, k, stride=stride, pad=pad, bias=True),
                  f"{name}.relu")


def _inception(b, x, name, cin, cfg):
    c1, r3, c3, r5, c5, pp = cfg
    y1 = _conv_relu(b, x, f"{name}.1x1", cin, c1, 1)
    y3 = _conv_relu(b, x, f"{name}.3x3_reduce", cin, r3, 1)
    y3 = _conv_relu(b, y3, f"{name}.3x3", r3, c3, 3)
    y5 = _conv_relu(b, x, f"{name}.5x5_reduce", cin, r5, 1)
    y5 = _conv_relu(b, y5, f"{name}.5x5", r5, c5, 5)
    yp = b.pool("MaxPool", x, f"{name}.pool", 3, 1, pad=1)
    yp = _conv_relu(b, yp, f"{name}.pool_proj", cin, pp, 1)
    return b.concat([y1, y3, y5, yp], f"{name}.output"), c1 + c3 + c5 + pp


def googlenet(materialize=True):
    b = Builder(seed=22, materialize=materialize)
    x = _conv_relu(b, "input", "conv1.7x7_s2", 3, 64, 7, stride=2, pad=3)
    x = b.lrn(b.pool("MaxPool", x, "pool1.3x3_s2", 3, 2, ceil=True), "pool1.norm1")
    x = _conv_relu(b, x, "conv2.3x3_reduce", 64, 64, 1)
    x = _conv_relu(b, x, "conv2.3x3", 64, 192, 3)
    x = b.pool("MaxPool", b.lrn(x, "conv2.norm2"), "pool2.3x3_s2", 3, 2, ceil=True)
    c, pools = 192, 3
    for item in GOOGLENET:
        if item == "M":
            x = b.pool("MaxPool", x, f"pool{pools}.3x3_s2", 3, 2, ceil=True)
            pools += 1
        else:
            x, c = _inception(b, x, f"inception_{item[0]}", c, item[1])
    x = b.pool("AveragePool", x, "pool5.7x7_s1", 7, 1)  # Dropout(0.4) is a no-op here
    x = b.node("Flatten", [x], "flatten", axis=1)
    y = b.gemm(x, "loss3.classifier", c, CLASSES)
    return b.finish("googlenet", "input", y, opset=OPSET)


# ---------------------------------------------------------------------------
# 2-D U-Net (Ronneberger et al. 2015, padded convs, BN)
# ---------------------------------------------------------------------------

UNET2D = dict(image=[1, 1, 128, 128], base=16, depth=4, classes=2)


def _double_conv(b, x, name, cin, cout):
    for i, c in enumerate((cin, cout), start=1):
        x = b.conv(x, f"{name}.conv{i}", c, cout, 3)
        x = b.relu(b.bn(x, f"{name}.bn{i}", cout), f"{name}.relu{i}")
    return x


def unet2d(materialize=True):
    cfg = UNET2D
    b = Builder(seed=4, materialize=materialize)
    x, c, skips = "input", cfg["image"][1], []
    for level in range(cfg["depth"]):
        width = cfg["base"] << level
        x = _double_conv(b, x, f"down{level + 1}", c, width)
        skips.append((x, width))
        x = b.pool("MaxPool", x, f"down{level + 1}.pool", 2, 2)
        c = width
    width = cfg["base"] << cfg["depth"]
    x, c = _double_conv(b, x, "bottleneck", c, width), width
    for level in reversed(range(cfg["depth"])):
        skip, width = skips[level]
        x = b.conv_transpose(x, f"up{level + 1}.upconv", c, width, 2, 2)
        x = b.concat([skip, x], f"up{level + 1}.cat")
        x, c = _double_conv(b, x, f"up{level + 1}", 2 * width, width), width
    y = b.conv(x, "head", c, cfg["classes"], 1, pad=0, bias=True)
    out = [cfg["image"][0], cfg["classes"]] + cfg["image"][2:]
    return b.finish("unet2d", "input", y, opset=OPSET, in_shape=cfg["image"], out_shape=out)


# ---------------------------------------------------------------------------
# Small 3-D CNN for CT volumes
# ---------------------------------------------------------------------------

CNN3D = dict(volume=[1, 1, 64, 64, 64], widths=(8, 16, 32), classes=2)


def cnn3d(materialize=True):
    cfg = CNN3D
    b = Builder(seed=3, materialize=materialize)
    x, c = "input", cfg["volume"][1]
    for i, width in enumerate(cfg["widths"], start=1):
        x = b.conv_nd(x, f"block{i}.conv", c, width, 3, nd=3)
        x = b.relu(b.bn(x, f"block{i}.bn", width), f"block{i}.relu")
        x = b.pool("MaxPool", x, f"block{i}.pool", 2, 2, nd=3)
        c = width
    y = b.gemm(b.gap_flatten(x, "pool"), "fc", c, cfg["classes"])
    return b.finish("cnn3d", "input", y, opset=OPSET, in_shape=cfg["volume"],
                    out_shape=[cfg["volume"][0], cfg["classes"]])


MODELS = {
    "densenet121": densenet121,
    "squeezenet1_1": squeezenet1_1,
    "googlenet": googlenet,
    "unet2d": unet2d,
    "cnn3d": cnn3d,
}

# ---------------------------------------------------------------------------
# Analysis (what `kiln inspect` must agree with)
# ---------------------------------------------------------------------------

# Published figures: torchvision model docs (params; "GFLOPS" there are GMACs,
# rounded to 10 MMAC). googlenet, unet2d and cnn3d have no published figure
# for this exact variant: their parameter counts, computed here, are pinned
# so that an accidental change to a generator is noticed.
PUBLISHED = {
    "densenet121": {"params": 7_978_856, "gmacs": 2.83},
    "squeezenet1_1": {"params": 1_235_496, "gmacs": 0.35},
    "googlenet": {"params": 6_998_552},
    "unet2d": {"params": 1_942_306},
    "cnn3d": {"params": 17_674},
}


def count_conv_transpose_macs(model):
    """ConvTranspose multiply-accumulates: numel(X) * Cout/group * prod(kernel)."""
    shapes = zoo._inferred_shapes(model)
    macs = 0
    for node in model.graph.node:
        if node.op_type == "ConvTranspose":
            x, w = shapes[node.input[0]], shapes[node.input[1]]
            macs += zoo._numel(x) * zoo._numel(w[1:])
    return macs


def analyse(model):
    """zoo.analyse(), with ConvTranspose MACs added."""
    record = zoo.analyse(model)
    record["macs"] += count_conv_transpose_macs(model)
    return record


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
    if not os.path.exists(path):
        return False
    sources = (os.path.abspath(__file__), os.path.abspath(zoo.__file__))
    return os.path.getmtime(path) > max(os.path.getmtime(s) for s in sources)


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


# Every generated network, zoo.py's and this module's, in the order the tests
# and the benchmark list them.
ALL_MODELS = ["resnet50", "mobilenetv2", "vgg16_v9", *MODELS, "alexnet_v9",
              "resnet18_dynbatch"]
assert sorted(ALL_MODELS) == sorted([*zoo.MODELS, *MODELS])


def generate_any(out_dir, names=None, log=print):
    """generate() for names from either zoo.py or this module (default: all)."""
    names = list(names or ALL_MODELS)
    unknown = [n for n in names if n not in zoo.MODELS and n not in MODELS]
    if unknown:
        raise KeyError(f"unknown model(s) {unknown}; known: {ALL_MODELS}")
    paths = {}
    for name in names:
        write = zoo.generate if name in zoo.MODELS else generate
        paths.update(write(out_dir, [name], log=log))
    return paths


def check_ranges(names=None):
    """Print each model's figures and its output range in ONNX Runtime on a
    standard-normal input (np.random.default_rng(0))."""
    import onnxruntime as ort

    for name in names or MODELS:
        model = MODELS[name]()
        rec = EXPECTED[name]
        shape = [d if isinstance(d, int) else 1 for d in rec["inputs"][0]["shape"]]
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        sess = ort.InferenceSession(model.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {rec["inputs"][0]["name"]: x})
        print(f"{name:14s} params {rec['params']:>11,}  bn_stats {rec['bn_stats']:>7,}  "
              f"MACs {rec['macs'] / 1e9:7.3f} G  out {list(y.shape)}  "
              f"min {y.min():.3g} max {y.max():.3g} std {y.std():.3g}")


def main(argv):
    if len(argv) >= 2 and argv[1] == "--check":
        check_ranges(argv[2:])
        return 0
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.split("Usage:")[1].strip(), file=sys.stderr)
        print(f"models: {' '.join(MODELS)}", file=sys.stderr)
        return 2
    generate(argv[1], argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""Reference networks and numbers for `zfvis import`, in PyTorch.

usage:
  import_ref.py torchvision ARCH OUT_DIR   (ARCH: alexnet, vgg11, vgg11_bn, ...)
      Random weights (seeded; batch-norm statistics randomised), saved as
      OUT_DIR/model.pth (state dict) and OUT_DIR/model.onnx (torch.onnx.export;
      for _bn variants also OUT_DIR/model_dynamo.onnx, the dynamo exporter's),
      an input OUT_DIR/x.npy [2, 3, 224, 224], torchvision's logits
      OUT_DIR/logits.npy, and for the first, a middle and the last conv layer
      (numbered 1..N) OUT_DIR/proj{L}.npy: the deconvnet projection of the
      strongest activation of the map with the highest peak (OUT_DIR/proj{L}.json
      names map and position), computed as the gradient of that activation
      with every ReLU's backward replaced by ReLU of the incoming gradient.
  import_ref.py zoo WEIGHTS.safetensors OUT.onnx
      A graph built like the ONNX zoo's Caffe models (opset 9, input
      gpu_0/data_0, Conv/Relu/MaxPool/LRN/Flatten/Gemm/Dropout, final Softmax)
      from a zfvis ZFNet/AlexNet snapshot; onnxruntime's softmax output on a
      random input in OUT.onnx.x.npy / OUT.onnx.probs.npy.
  import_ref.py graph ARCH OUT_DIR UNIT,UNIT...   (resnet18, densenet121, ...)
      As torchvision, for graph networks: OUT_DIR/model.pth, x.npy, logits.npy
      and for each named unit (a module path) OUT_DIR/unit-{UNIT}.npy: the
      projection of the strongest activation of its map with the highest
      peak (unit-{UNIT}.json: map, y, x), the gradient with every ReLU and
      ReLU6 (modules and F.relu) reversed as ReLU of the incoming gradient.
      With a fourth argument "onnx", also model.onnx (torch.onnx.export,
      dynamo=False) and model_dynamo.onnx (the default exporter) and
      onnx-units.json: each file's last Relu output name on maps. VGG classifiers
      keep torchvision's zero biases.
  import_ref.py archs OUT_DIR SIZE ARCH...
      For each torchvision ARCH: random weights (seeded) as OUT_DIR/ARCH.pth
      and its logits on one image OUT_DIR/x.npy [1, 3, SIZE, SIZE] as
      OUT_DIR/ARCH.logits.npy.
  import_ref.py ort FILE.onnx OUT_DIR
      onnxruntime's output on a seeded channels-last input [1, S, S, 3]
      (S from the graph's input) of a committed tf2onnx file: OUT_DIR/x.npy
      (NCHW) and OUT_DIR/probs.npy.
  import_ref.py tf2onnx OUT.onnx
      A graph shaped as tf2onnx converts a small Keras classifier (NHWC
      input, Shape/Cast/Slice/Concat/Reshape flatten with int32 tensors,
      MatMul+Add, Mul+Add batch norm after a ReLU, Softmax); onnxruntime's
      output in OUT.onnx.x.npy (NCHW) / .probs.npy.
  import_ref.py pads OUT.onnx
      A graph with a Pad node and a conv with TensorFlow's SAME padding at
      stride 2; onnxruntime's output in OUT.onnx.x.npy / .probs.npy.
  import_ref.py grey OUT_DIR
      A 1-channel 28x28 digit classifier (random weights, its own key names)
      as model.pth + layers.json and model.onnx, an image digit.png and the
      probabilities of the MNIST pipeline on it (probs.npy).
  import_ref.py pytorchcv ARCH OUT_DIR      (zfnet, zfnetb, alexnet)
      As torchvision, from pytorchcv's model.
  import_ref.py save ARCH OUT.pth
      Only the state dict of torchvision's ARCH with random weights.
  import_ref.py evil OUT.pth MARKER
      A state dict with a __reduce__ payload that would create MARKER if run.
  import_ref.py unsupported OUT.onnx
      A graph with a Resize node (upsampling, which zfvis does not read).
  import_ref.py malformed DIR
      Valid ONNX files (onnx.checker passes where it can) that no network
      can be read from: a Conv with one input, a Conv with zero strides, a
      BatchNormalization without its tensors, a Gemm with a 1-D weight, an
      LRN of size 0.
  import_ref.py ops OUT.onnx
      A small graph using the importer's other ops (BatchNormalization,
      Clip, asymmetric MaxPool pads, a grouped conv without bias,
      AveragePool, LRN, GlobalAveragePool, Reshape, MatMul+Add, Softmax) with
      random weights; onnxruntime's output in OUT.onnx.x.npy / .probs.npy.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

from deconv_ref import DeconvReLU


def randomise(model, seed):
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.normal_(m.bias, 0.0, 0.05)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0.0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.1)
        if isinstance(m, nn.LayerNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.1)
        if hasattr(m, "layer_scale"):
            # ConvNeXt's 1e-6 would hide every block behind its shortcut.
            m.layer_scale.data.uniform_(0.5, 1.0)
    model.eval()
    return model


def map_relus(features):
    """The ReLU module after each conv of `features` (its feature maps), in order."""
    mods = [m for m in features.modules() if not list(m.children())]
    relus = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Conv2d):
            relus.append(next(r for r in mods[i + 1:] if isinstance(r, nn.ReLU)))
    return relus


def _SkipWith(lrn, args, kw):
    class S(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return lrn(x, *args, **kw)

        @staticmethod
        def backward(ctx, g):
            return g
    return S.apply


def references(model, features, out):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    np.save(f"{out}/x.npy", x.numpy())
    with torch.no_grad():
        np.save(f"{out}/logits.npy", model(x).numpy())
    relus = map_relus(features)
    # The deconvnet as a modified gradient: ReLU's backward is ReLU of the
    # signal, LRN's is the identity (functional LRN inside modules too).
    captured = {}
    for k, r in enumerate(relus):
        def fwd(t, k=k):
            captured[k] = DeconvReLU.apply(t)
            return captured[k]
        r.forward = fwd
    lrn = nn.functional.local_response_norm
    nn.functional.local_response_norm = lambda x, *a, **kw: _SkipWith(lrn, a, kw)(x)
    n = len(relus)
    try:
        for layer in sorted({1, (n + 1) // 2, n}):
            xg = x[:1].clone().requires_grad_(True)
            captured.clear()
            features(xg)
            h = captured[layer - 1]
            peaks = h[0].detach().flatten(1).max(1).values
            fmap = int(torch.argmax(peaks))
            m = h[0, fmap]
            k = int(torch.argmax(m.detach().flatten()))
            m.flatten()[k].backward()
            np.save(f"{out}/proj{layer}.npy", xg.grad[0].numpy())
            with open(f"{out}/proj{layer}.json", "w") as f:
                json.dump({"map": fmap, "y": k // m.shape[1], "x": k % m.shape[1]}, f)
    finally:
        nn.functional.local_response_norm = lrn
    with open(f"{out}/layers.json", "w") as f:
        json.dump({"convs": n}, f)


def export(model, out):
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(model, (x,), f"{out}/model.onnx", input_names=["input"], output_names=["logits"],
                      opset_version=17, dynamo=False)


def torchvision_main(arch, out):
    import torchvision
    model = randomise(getattr(torchvision.models, arch)(weights=None), 0)
    torch.save(model.state_dict(), f"{out}/model.pth")
    export(model, out)
    if arch.endswith("_bn"):
        # torch.onnx.export's default since PyTorch 2.9 (torch.export based;
        # large weights go to model_dynamo.onnx.data beside the file).
        torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), f"{out}/model_dynamo.onnx",
                          input_names=["input"], dynamo=True, verbose=False)
    references(model, model.features, out)


class DeconvReLU6(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)


def last_relu(path):
    """The output name of the last Relu node on maps (before any
    Flatten/Reshape/Gemm) of an ONNX file."""
    import onnx
    g = onnx.load(path, load_external_data=False).graph
    relus = []
    for n in g.node:
        if n.op_type in ("Flatten", "Reshape", "Gemm", "MatMul"):
            break
        if n.op_type == "Relu":
            relus.append(n.output[0])
    return relus[-1] if relus else None


def graph_main(arch, out, units, onnx_too="no"):
    import torchvision
    import torch.nn.functional as F
    model = randomise(getattr(torchvision.models, arch)(weights=None), 0)
    # Auxiliary heads (GoogLeNet's aux1/aux2, Inception v3's AuxLogits) are not imported.
    convs = sum(isinstance(m, nn.Conv2d) for n, m in model.named_modules()
                if "AuxLogits" not in n and not n.startswith("aux"))
    if arch.startswith("convnext"):
        # Each block's two linear layers act on the channels: 1x1 convs.
        convs += sum(isinstance(m, nn.Linear) and ".block." in n for n, m in model.named_modules())
    with open(f"{out}/layers.json", "w") as f:
        json.dump({"convs": convs}, f)
    if arch.startswith("vgg"):
        # torchvision's own initialisation of the classifier: every bias
        # zero, which the TorchScript exporter stores once (Identity nodes).
        for m in model.classifier.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)
    torch.save(model.state_dict(), f"{out}/model.pth")
    if onnx_too == "onnx":
        x1 = torch.randn(1, 3, 224, 224)
        torch.onnx.export(model, (x1,), f"{out}/model.onnx", input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False)
        torch.onnx.export(model, (x1,), f"{out}/model_dynamo.onnx", input_names=["input"],
                          dynamo=True, verbose=False)
        if arch.startswith("convnext"):
            # Before opset 17 the TorchScript exporter decomposes LayerNorm.
            torch.onnx.export(model, (x1,), f"{out}/model_opset14.onnx", input_names=["input"],
                              output_names=["logits"], opset_version=14, dynamo=False)
        with open(f"{out}/onnx-units.json", "w") as f:
            json.dump({k: last_relu(f"{out}/{k}") for k in ["model.onnx", "model_dynamo.onnx"]}, f)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 224, 224)
    np.save(f"{out}/x.npy", x.numpy())
    with torch.no_grad():
        np.save(f"{out}/logits.npy", model(x).numpy())
    relu, relu6 = F.relu, F.relu6
    nn.ReLU.forward = lambda self, t: DeconvReLU.apply(t)
    nn.ReLU6.forward = lambda self, t: DeconvReLU6.apply(t)
    F.relu = lambda t, inplace=False: DeconvReLU.apply(t)
    F.relu6 = lambda t, inplace=False: DeconvReLU6.apply(t)
    try:
        for unit in units.split(","):
            captured = {}
            hook = model.get_submodule(unit).register_forward_hook(
                lambda m, i, o: captured.update(h=o))
            xg = x[:1].clone().requires_grad_(True)
            model(xg)
            hook.remove()
            h = captured["h"]
            peaks = h[0].detach().flatten(1).max(1).values
            fmap = int(torch.argmax(peaks))
            m = h[0, fmap]
            k = int(torch.argmax(m.detach().flatten()))
            m.flatten()[k].backward()
            np.save(f"{out}/unit-{unit}.npy", xg.grad[0].numpy())
            # The unit's maps, to find it by value in a graph that names it otherwise.
            np.save(f"{out}/unit-{unit}.out.npy", h[0].detach().numpy())
            with open(f"{out}/unit-{unit}.json", "w") as f:
                json.dump({"map": fmap, "y": k // m.shape[1], "x": k % m.shape[1]}, f)
    finally:
        F.relu, F.relu6 = relu, relu6


def archs_main(out, size, *archs):
    import torchvision
    torch.manual_seed(1)
    x = torch.randn(1, 3, int(size), int(size))
    np.save(f"{out}/x.npy", x.numpy())
    for arch in archs:
        model = randomise(getattr(torchvision.models, arch)(weights=None), 0)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                # Smaller gains keep the deepest members (EfficientNet-B6/7,
                # V2-L) well-conditioned: with randomise's, PyTorch's own
                # float32 and float64 logits differ by 790 of 4539.
                m.weight.data.uniform_(0.3, 0.8)
        torch.save(model.state_dict(), f"{out}/{arch}.pth")
        with torch.no_grad():
            np.save(f"{out}/{arch}.logits.npy", model(x).numpy())
        del model


def ort_main(path, out):
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    side = inp.shape[1]
    x = np.random.default_rng(5).uniform(-1, 1, (1, side, side, 3)).astype(np.float32)
    np.save(f"{out}/x.npy", x.transpose(0, 3, 1, 2).copy())
    np.save(f"{out}/probs.npy", sess.run(None, {inp.name: x})[0])


def ort_image_main(path, image, filt, mean, std, out):
    """onnxruntime on a photo as a Keras user feeds it: PIL's
    img.resize((n, n), filter), (p/255 - mean) / std, NHWC."""
    import onnxruntime as ort
    from PIL import Image
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    side = inp.shape[1]
    img = Image.open(image).convert("RGB").resize((side, side), getattr(Image.Resampling, filt.upper()))
    x = (np.asarray(img, dtype=np.float32) / 255.0 - float(mean)) / float(std)
    np.save(f"{out}/probs.npy", sess.run(None, {inp.name: x[None]})[0][0])


def tf2onnx_main(out):
    """A graph shaped as tf2onnx writes a small Keras classifier: NHWC input
    and a Transpose, Conv+Relu, batch norm as Mul+Add after the ReLU, a
    channels-last flatten computed by Shape/Cast/Slice/Concat/Cast/Reshape
    with int32 tensors, Dense layers as MatMul+Add, a final Softmax."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper, TensorProto
    rng = np.random.default_rng(3)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    inits = [
        numpy_helper.from_array(f(8, 3, 3, 3) * 0.3, "conv1/kernel"), numpy_helper.from_array(f(8) * 0.1, "conv1/bias"),
        numpy_helper.from_array(1 + 0.2 * f(1, 8, 1, 1), "bn/mul"), numpy_helper.from_array(0.1 * f(1, 8, 1, 1), "bn/add"),
        numpy_helper.from_array(f(16, 8, 3, 3) * 0.2, "conv2/kernel"), numpy_helper.from_array(f(16) * 0.1, "conv2/bias"),
        numpy_helper.from_array(np.array([0], np.int32), "zero"), numpy_helper.from_array(np.array([1], np.int32), "one"),
        numpy_helper.from_array(np.array([-1], np.int32), "minus_one"),
        numpy_helper.from_array(f(16 * 8 * 8, 32) * 0.05, "dense/kernel"), numpy_helper.from_array(f(32) * 0.1, "dense/bias"),
        numpy_helper.from_array(f(32, 10) * 0.2, "logits/kernel"), numpy_helper.from_array(f(10) * 0.1, "logits/bias"),
    ]
    N = helper.make_node
    nodes = [
        N("Transpose", ["input_1"], ["nchw"], name="transpose_in", perm=[0, 3, 1, 2]),
        N("Conv", ["nchw", "conv1/kernel", "conv1/bias"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Relu", ["c1"], ["r1"], name="conv1/Relu"),
        N("Mul", ["r1", "bn/mul"], ["m1"], name="bn/mul_1"),
        N("Add", ["m1", "bn/add"], ["b1"], name="bn/add_1"),
        N("MaxPool", ["b1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        N("Conv", ["p1", "conv2/kernel", "conv2/bias"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("Relu", ["c2"], ["r2"], name="conv2/Relu"),
        N("MaxPool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        N("Transpose", ["p2"], ["nhwc"], name="transpose_out", perm=[0, 2, 3, 1]),
        N("Shape", ["nhwc"], ["shape"], name="flatten/Shape"),
        N("Cast", ["shape"], ["shape32"], name="flatten/Cast", to=TensorProto.INT32),
        N("Slice", ["shape32", "zero", "one", "zero"], ["batch"], name="flatten/strided_slice"),
        N("Concat", ["batch", "minus_one"], ["newshape32"], name="flatten/concat", axis=0),
        N("Cast", ["newshape32"], ["newshape"], name="flatten/Cast_1", to=TensorProto.INT64),
        N("Reshape", ["nhwc", "newshape"], ["flat"], name="flatten/Reshape"),
        N("MatMul", ["flat", "dense/kernel"], ["d1"], name="dense/MatMul"),
        N("Add", ["d1", "dense/bias"], ["d1b"], name="dense/BiasAdd"),
        N("Relu", ["d1b"], ["d1r"], name="dense/Relu"),
        N("MatMul", ["d1r", "logits/kernel"], ["d2"], name="logits/MatMul"),
        N("Add", ["d2", "logits/bias"], ["d2b"], name="logits/BiasAdd"),
        N("Softmax", ["d2b"], ["probs"], name="logits/Softmax", axis=-1),
    ]
    g = helper.make_graph(nodes, "tf2onnx", [helper.make_tensor_value_info("input_1", TensorProto.FLOAT, ["unk__1", 32, 32, 3])],
                          [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["unk__2", 10])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    onnx.checker.check_model(m)
    onnx.save(m, out)
    x = rng.random((1, 32, 32, 3)).astype(np.float32)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    np.save(out + ".x.npy", x.transpose(0, 3, 1, 2).copy())
    np.save(out + ".probs.npy", sess.run(None, {"input_1": x})[0])


class Digits(nn.Module):
    """A small 1-channel 28x28 classifier with its own key names."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        import torch.nn.functional as F
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        return self.head(torch.flatten(x, 1))


def grey_main(out):
    """Digits with random weights: model.pth, model.onnx, layers.json (its
    layout in the manifest's format), a 60x44 RGB PNG and the probabilities
    of the MNIST pipeline on it: convert("L"), Resize((28, 28)) (bilinear),
    ToTensor, Normalize((0.1307,), (0.3081,))."""
    from PIL import Image
    import torchvision.transforms as T
    torch.manual_seed(5)
    model = Digits().eval()
    torch.save(model.state_dict(), f"{out}/model.pth")
    torch.onnx.export(model, (torch.randn(1, 1, 28, 28),), f"{out}/model.onnx", input_names=["image"],
                      opset_version=17, dynamo=False)
    conv = lambda n, i, o: {"op": "conv", "name": n, "in": i, "out": o, "k": 3, "stride": 1, "pad": 1}
    pool = {"op": "max_pool", "k": 2, "stride": 2, "pad": 0}
    layers = [conv("c1", 1, 8), {"op": "relu"}, pool, conv("c2", 8, 16), {"op": "relu"}, pool,
              {"op": "flatten"}, {"op": "linear", "name": "head", "in": 784, "out": 10}]
    with open(f"{out}/layers.json", "w") as f:
        json.dump(layers, f)
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 256, (44, 60, 3), dtype=np.uint8))
    img.save(f"{out}/digit.png")
    tf = T.Compose([T.Resize((28, 28)), T.ToTensor(), T.Normalize((0.1307,), (0.3081,))])
    x = tf(Image.open(f"{out}/digit.png").convert("L")).unsqueeze(0)
    with torch.no_grad():
        np.save(f"{out}/probs.npy", model(x).softmax(-1).numpy())


def wrapped_main(out):
    """resnet18 (random) as users save it: a plain state dict, safetensors,
    a checkpoint dict nesting it under "state_dict", one under "model" with
    DataParallel's "module." prefix, and the whole pickled model."""
    import torchvision
    from safetensors.torch import save_file
    model = randomise(torchvision.models.resnet18(weights=None), 0)
    sd = model.state_dict()
    torch.save(sd, f"{out}/plain.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, f"{out}/plain.safetensors")
    torch.save({"epoch": 90, "state_dict": sd, "optimizer": {}}, f"{out}/nested.pth")
    torch.save({"model": {"module." + k: v for k, v in sd.items()}}, f"{out}/module.pth")
    torch.save(model, f"{out}/whole.pth")


def save_main(arch, out):
    import torchvision
    torch.save(randomise(getattr(torchvision.models, arch)(weights=None), 0).state_dict(), out)


def pytorchcv_main(arch, out):
    from pytorchcv.model_provider import get_model
    model = randomise(get_model(arch, pretrained=False), 0)
    torch.save(model.state_dict(), f"{out}/model.pth")
    references(model, model.features, out)


def zoo_main(weights, out):
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    from safetensors.torch import load_file
    w = {k: v.float().numpy() for k, v in load_file(weights).items()}
    k1 = w["conv1.weight"].shape[2]
    if k1 == 7:  # ZFNet
        c1, p12, c2 = (2, 1), (3, 2, 1), (2, 0)
    else:        # AlexNet
        c1, p12, c2 = (4, 2), (3, 2, 0), (1, 2)
    inits, nodes = [], []
    cur = "gpu_0/data_0"

    def add(op, inputs, name, **attrs):
        nonlocal cur
        o = name + "_0"
        nodes.append(helper.make_node(op, [cur] + inputs, [o], name=name, **attrs))
        cur = o

    def conv(i, s, p):
        n = f"conv{i}"
        for t in ("weight", "bias"):
            inits.append(numpy_helper.from_array(w[f"{n}.{t}"], f"{n}_{t[0]}_0"))
        k = w[f"{n}.weight"].shape[2]
        add("Conv", [f"{n}_w_0", f"{n}_b_0"], n, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
        add("Relu", [], f"relu{i}")

    def pool(i, k, s, p):
        add("MaxPool", [], f"pool{i}", kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)

    def lrn(i):
        add("LRN", [], f"norm{i}", size=5, alpha=1e-4, beta=0.75, bias=2.0)

    conv(1, *c1); pool(1, *p12); lrn(1)
    conv(2, *c2); pool(2, *p12); lrn(2)
    conv(3, 1, 1); conv(4, 1, 1); conv(5, 1, 1); pool(5, 3, 2, 0)
    add("Flatten", [], "flatten", axis=1)
    for i in (6, 7, 8):
        n = f"fc{i}"
        inits.append(numpy_helper.from_array(w[f"{n}.weight"], f"{n}_w_0"))
        inits.append(numpy_helper.from_array(w[f"{n}.bias"], f"{n}_b_0"))
        add("Gemm", [f"{n}_w_0", f"{n}_b_0"], n, transB=1)
        if i < 8:
            add("Relu", [], f"relu{i}")
            add("Dropout", [], f"drop{i}", ratio=0.5)
    add("Softmax", [], "prob")
    g = helper.make_graph(nodes, "zoo_like",
                          [helper.make_tensor_value_info("gpu_0/data_0", TensorProto.FLOAT, [1, 3, 224, 224])],
                          [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, w["fc8.bias"].shape[0]])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)])
    onnx.checker.check_model(m)
    onnx.save(m, out)
    # onnxruntime's output on a random input: an independent check of the
    # graph's semantics (ONNX's LRN and Gemm, not PyTorch's).
    import onnxruntime as ort
    x = np.random.RandomState(0).randn(1, 3, 224, 224).astype(np.float32)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    np.save(out + ".x.npy", x)
    np.save(out + ".probs.npy", sess.run(None, {"gpu_0/data_0": x})[0])


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def evil_main(out, marker):
    sd = nn.Conv2d(3, 4, 3).state_dict()
    sd["payload"] = Evil(marker)
    torch.save(sd, out)


def unsupported_main(out):
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    w = np.random.RandomState(0).randn(4, 3, 3, 3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv1", kernel_shape=[3, 3]),
             helper.make_node("Resize", ["c", "", "scales"], ["s"], name="upsample", mode="nearest")]
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                          [helper.make_tensor_value_info("s", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(w, "w"),
                                       numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), out)


def malformed_main(outdir):
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    rs = np.random.RandomState(0)
    w = numpy_helper.from_array(rs.randn(4, 3, 3, 3).astype(np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])

    def save(name, nodes, inits, out="y"):
        g = helper.make_graph(nodes, name, [x], [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              initializer=inits)
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)]),
                  os.path.join(outdir, name + ".onnx"))

    save("conv_one_input", [helper.make_node("Conv", ["x"], ["y"], name="c1", kernel_shape=[3, 3])], [])
    save("zero_strides", [helper.make_node("Conv", ["x", "w"], ["y"], name="c1", kernel_shape=[3, 3],
                                           strides=[0, 0])], [w])
    save("bn_no_tensors", [helper.make_node("Conv", ["x", "w"], ["c"], name="c1", kernel_shape=[3, 3]),
                           helper.make_node("BatchNormalization", ["c"], ["y"], name="bn1")], [w])
    fc = numpy_helper.from_array(rs.randn(10).astype(np.float32), "fc")
    save("gemm_1d", [helper.make_node("Conv", ["x", "w"], ["c"], name="c1", kernel_shape=[3, 3]),
                     helper.make_node("Flatten", ["c"], ["f"], name="flat"),
                     helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc1")], [w, fc])
    save("lrn_size_0", [helper.make_node("Conv", ["x", "w"], ["c"], name="c1", kernel_shape=[3, 3]),
                        helper.make_node("LRN", ["c"], ["y"], name="norm1", size=0)], [w])
    N = helper.make_node
    conv = lambda o="c": N("Conv", ["x", "w"], [o], name="c1", kernel_shape=[3, 3])
    arr = lambda a, n: numpy_helper.from_array(np.asarray(a), n)
    # Graph structure: a cycle, a name nothing produces, no nodes at all.
    save("cycle", [N("Relu", ["b"], ["a"], name="r1"), N("Relu", ["a"], ["b"], name="r2"),
                   N("Add", ["x", "a"], ["y"], name="add")], [])
    save("undefined_input", [conv(), N("Add", ["c", "ghost"], ["y"], name="add")], [w])
    save("no_nodes", [], [], out="x")
    # Attributes: negative strides and pads, kernel larger than the input, dilation 0.
    save("negative_strides", [N("Conv", ["x", "w"], ["y"], name="c1", kernel_shape=[3, 3], strides=[-1, -1])], [w])
    save("negative_pads", [N("Conv", ["x", "w"], ["y"], name="c1", kernel_shape=[3, 3], pads=[-5, -5, -5, -5])], [w])
    save("zero_dilation", [N("Conv", ["x", "w"], ["y"], name="c1", kernel_shape=[3, 3], dilations=[0, 0])], [w])
    save("pool_too_big", [conv(), N("MaxPool", ["c"], ["y"], name="p1", kernel_shape=[99, 99])], [w])
    save("pool_zero_kernel", [conv(), N("MaxPool", ["c"], ["y"], name="p1", kernel_shape=[0, 0])], [w])
    # Tensors: wrong rank, empty kernel, channels that do not match, groups that do not divide.
    save("conv_weight_3d", [N("Conv", ["x", "w3"], ["y"], name="c1", kernel_shape=[3, 3])],
         [arr(rs.randn(4, 3, 3).astype(np.float32), "w3")])
    save("conv_empty_kernel", [N("Conv", ["x", "w0"], ["y"], name="c1")],
         [arr(np.zeros((4, 3, 0, 0), np.float32), "w0")])
    save("conv_wrong_channels", [N("Conv", ["x", "w5"], ["y"], name="c1", kernel_shape=[3, 3])],
         [arr(rs.randn(4, 5, 3, 3).astype(np.float32), "w5")])
    save("pad_reflect", [N("Pad", ["x", "pads"], ["y"], name="pad", mode="reflect")],
         [arr(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")])
    save("pad_not_square", [N("Pad", ["x", "pads"], ["y"], name="pad")],
         [arr(np.array([0, 0, 2, 0, 0, 0, 0, 0], np.int64), "pads")])
    save("conv_pads_not_square", [N("Conv", ["x", "w"], ["y"], name="c1", kernel_shape=[3, 3], pads=[0, 0, 2, 0])], [w])
    save("conv_bad_groups", [N("Conv", ["x", "w"], ["y"], name="c1", kernel_shape=[3, 3], group=2)], [w])
    save("conv_bias_length", [N("Conv", ["x", "w", "b7"], ["y"], name="c1", kernel_shape=[3, 3])],
         [w, arr(np.zeros(7, np.float32), "b7")])
    # A declared size far beyond the bytes: dims of 2^40 floats over 16 bytes.
    huge = onnx.TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20],
                            raw_data=b"\0" * 16)
    save("huge_dims", [N("Conv", ["x", "huge"], ["y"], name="c1")], [huge])
    save("reshape_huge", [conv(), N("Reshape", ["c", "shape"], ["y"], name="r")],
         [w, arr(np.array([1 << 40, 1 << 40], np.int64), "shape")])
    save("concat_mismatch", [conv("c"), N("MaxPool", ["c"], ["p"], name="p1", kernel_shape=[2, 2], strides=[2, 2]),
                             N("Concat", ["c", "p"], ["y"], name="cat", axis=1)], [w])
    save("add_mismatch", [conv("c"), N("Add", ["c", "x"], ["y"], name="add")], [w])
    save("gemm_in_features", [conv("c"), N("Flatten", ["c"], ["f"], name="flat"), N("Gemm", ["f", "g"], ["y"], name="fc1")],
         [w, arr(rs.randn(10, 17).astype(np.float32), "g")])
    save("bn_short", [conv("c"), N("BatchNormalization", ["c", "s", "s", "s", "s"], ["y"], name="bn1")],
         [w, arr(np.ones(2, np.float32), "s")])
    xi = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 0, 0])
    g = helper.make_graph([conv("y")], "zero_input", [xi], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)]), os.path.join(outdir, "zero_input.onnx"))
    # State dicts read through --layers: missing and misshapen tensors, odd layouts.
    sd = {"c1.weight": torch.randn(8, 1, 3, 3), "c1.bias": torch.randn(8)}
    conv_l = {"op": "conv", "name": "c1", "in": 1, "out": 8, "k": 3, "stride": 1, "pad": 1}
    head = [{"op": "flatten"}, {"op": "linear", "name": "h", "in": 8 * 28 * 28, "out": 10}]
    sd_h = dict(sd, **{"h.weight": torch.randn(10, 8 * 28 * 28), "h.bias": torch.randn(10)})
    def state(name, tensors, layers):
        torch.save(tensors, os.path.join(outdir, name + ".pth"))
        with open(os.path.join(outdir, name + ".layers.json"), "w") as f:
            json.dump(layers, f)
    state("sd_missing_tensor", sd, [conv_l, {"op": "relu"}] + head)
    state("sd_wrong_shape", dict(sd_h, **{"c1.weight": torch.randn(8, 1, 5, 5)}), [conv_l, {"op": "relu"}] + head)
    state("sd_conv_1d", dict(sd_h, **{"c1.weight": torch.randn(72)}), [conv_l, {"op": "relu"}] + head)
    state("sd_int_tensor", dict(sd_h, **{"c1.weight": torch.ones(8, 1, 3, 3, dtype=torch.int64)}), [conv_l, {"op": "relu"}] + head)
    state("sd_zero_stride", sd_h, [dict(conv_l, stride=0), {"op": "relu"}] + head)
    state("sd_negative_kernel", sd_h, [dict(conv_l, k=-3), {"op": "relu"}] + head)
    state("sd_huge_out", sd_h, [dict(conv_l, out=1 << 40), {"op": "relu"}] + head)
    state("sd_unknown_op", sd_h, [conv_l, {"op": "swish"}] + head)
    state("sd_bad_input_ref", sd_h, [conv_l, {"op": "add", "inputs": [0, 7]}] + head)
    state("sd_not_a_list", sd_h, {"op": "conv"})
    torch.save([1, 2, 3], os.path.join(outdir, "sd_list.pth"))
    with open(os.path.join(outdir, "sd_list.layers.json"), "w") as f:
        json.dump([conv_l] + head, f)


def pads_main(out):
    """A graph with an explicit Pad node (opset 13, pads as an input) and a
    conv with TensorFlow's SAME padding at stride 2 (pads [0, 0, 1, 1]);
    onnxruntime's softmax output on a random input in OUT.x.npy / .probs.npy."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper, TensorProto
    r = np.random.RandomState(3)
    f = lambda *s: r.randn(*s).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("w1", f(8, 3, 3, 3) * 0.3), ("b1", f(8) * 0.1),
        ("pads", np.array([0, 0, 2, 1, 0, 0, 0, 1], dtype=np.int64)),
        ("w2", f(16, 8, 3, 3) * 0.3), ("b2", f(16) * 0.1),
        ("wf", f(10, 16) * 0.3), ("bf", f(10) * 0.1)]]
    N = helper.make_node
    nodes = [
        N("Conv", ["x", "w1", "b1"], ["c1"], name="same2", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]),
        N("Relu", ["c1"], ["r1"], name="relu1"),
        N("Pad", ["r1", "pads"], ["p1"], name="pad", mode="constant"),
        N("Conv", ["p1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3]),
        N("Relu", ["c2"], ["r2"], name="relu2"),
        N("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        N("Flatten", ["g"], ["flat"], name="flat"),
        N("Gemm", ["flat", "wf", "bf"], ["logits"], name="fc", transB=1),
        N("Softmax", ["logits"], ["prob"], name="softmax", axis=1),
    ]
    g = helper.make_graph(nodes, "pads", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(m)
    onnx.save(m, out)
    x = f(1, 3, 64, 64)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    np.save(out + ".x.npy", x)
    probs = sess.run(None, {"x": x})[0]
    np.save(out + ".probs.npy", probs)
    # The same network in PyTorch (checked against onnxruntime), and the
    # deconvnet projection of r2's strongest activation of its strongest map:
    # the gradient with each ReLU's backward replaced by ReLU of the signal.
    import torch.nn.functional as F

    class DeconvRelu(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            return t.clamp(min=0)

        @staticmethod
        def backward(ctx, g):
            return g.clamp(min=0)

    W = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in inits}
    xt = torch.from_numpy(x).requires_grad_()
    h = DeconvRelu.apply(F.conv2d(F.pad(xt, (0, 1, 0, 1)), W["w1"], W["b1"], stride=2))
    r2 = DeconvRelu.apply(F.conv2d(F.pad(h, (1, 1, 2, 0)), W["w2"], W["b2"]))
    logits = F.linear(r2.mean((2, 3)), W["wf"], W["bf"])
    assert np.abs(logits.softmax(-1).detach().numpy() - probs).max() < 1e-5
    m = int(r2[0].amax((1, 2)).argmax())
    k = int(r2[0, m].flatten().argmax())
    r2[0, m].flatten()[k].backward()
    np.save(out + ".proj.npy", xt.grad[0].numpy())
    with open(out + ".proj.json", "w") as fh:
        json.dump({"map": m, "y": k // r2.shape[3], "x": k % r2.shape[3]}, fh)


def ops_main(out):
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper, TensorProto
    r = np.random.RandomState(0)
    f = lambda *s: r.randn(*s).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for n, a in [
        ("w1", f(8, 3, 3, 3) * 0.3), ("b1", f(8) * 0.1),
        ("bn_s", 1 + 0.2 * f(8)), ("bn_b", 0.1 * f(8)), ("bn_m", 0.2 * f(8)), ("bn_v", np.abs(f(8)) + 0.5),
        ("zero", np.array(0, dtype=np.float32)),
        ("w2", f(16, 4, 3, 3) * 0.3),
        ("shape", np.array([1, -1], dtype=np.int64)),
        ("wf", f(16, 10) * 0.3), ("bf", f(10) * 0.1)]]
    N = helper.make_node
    nodes = [
        N("Conv", ["x", "w1", "b1"], ["c1"], name="stem", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        N("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"], name="bn", epsilon=1e-3),
        N("Clip", ["n1", "zero"], ["r1"], name="relu6ish"),
        N("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1]),
        N("Conv", ["p1", "w2"], ["c2"], name="grouped", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2),
        N("Relu", ["c2"], ["r2"], name="relu2"),
        N("AveragePool", ["r2"], ["a2"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
        N("LRN", ["a2"], ["l2"], name="lrn", size=3, alpha=1e-3, beta=0.75, bias=1.0),
        N("GlobalAveragePool", ["l2"], ["g"], name="gap"),
        N("Reshape", ["g", "shape"], ["flat"], name="reshape"),
        N("MatMul", ["flat", "wf"], ["mm"], name="fc"),
        N("Add", ["mm", "bf"], ["logits"], name="fc_bias"),
        N("Softmax", ["logits"], ["prob"], name="softmax", axis=1),
    ]
    g = helper.make_graph(nodes, "ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                          [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)])
    onnx.checker.check_model(m)
    onnx.save(m, out)
    x = f(1, 3, 64, 64)
    sess = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    np.save(out + ".x.npy", x)
    np.save(out + ".probs.npy", sess.run(None, {"x": x})[0])


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"torchvision": torchvision_main, "graph": graph_main, "archs": archs_main, "ort": ort_main, "ort_image": ort_image_main, "grey": grey_main, "tf2onnx": tf2onnx_main, "pytorchcv": pytorchcv_main, "save": save_main, "wrapped": wrapped_main, "zoo": zoo_main,
     "evil": evil_main, "unsupported": unsupported_main, "malformed": malformed_main, "ops": ops_main,
     "pads": pads_main}[cmd](*args)

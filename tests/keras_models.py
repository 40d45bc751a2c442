"""Keras applications converted by the real tf2onnx, as Keras users convert:
Keras 3 `model.export()` to a SavedModel, then
`python -m tf2onnx.convert --saved-model DIR --output FILE --opset 17`.

Writes tests/keras/{name}.onnx for MobileNetV2, EfficientNetB0, ResNet50,
Xception and InceptionV3 with random (seeded) weights, 10 classes and small
inputs. To keep the committed files small (5 MB in all), every Conv2D and
SeparableConv2D of the application is built with 1/8 of its filters
(MobileNetV2) or 1/16 (ResNet50, Xception, InceptionV3), at least 4, and
EfficientNetB0 is Keras's builder at B0's coefficients with width 0.25: the
graphs are the applications' own, layer for layer, only narrower.

Versions (a venv of their own; TensorFlow is too heavy for CI):
  python3 -m venv /tmp/tfvenv
  /tmp/tfvenv/bin/pip install 'tensorflow-cpu==2.17.1' 'tf2onnx==1.16.1' 'numpy<2'
  /tmp/tfvenv/bin/python tests/keras_models.py tests/keras
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import keras
from keras import layers


DIVISOR = [1]


def _narrowed(cls):
    init = cls.__init__

    def patched(self, filters, *a, **kw):
        init(self, filters if DIVISOR[0] == 1 else max(4, filters // DIVISOR[0]), *a, **kw)

    cls.__init__ = patched


for _cls in (layers.Conv2D, layers.SeparableConv2D):
    _narrowed(_cls)


def narrow(divisor):
    """Build Conv2D / SeparableConv2D with filters // divisor (at least 4)."""
    DIVISOR[0] = divisor


def models():
    """(name, builder, input size, filter divisor)."""
    a = keras.applications
    yield "mobilenet_v2", lambda: a.MobileNetV2(weights=None, input_shape=(96, 96, 3), classes=10), 96, 8
    from keras.src.applications import efficientnet
    # B0's depth and resolution coefficients at width 0.25 (its squeeze-excite
    # reshapes by the block's input width, which the builder must know).
    yield "efficientnet_b0", lambda: efficientnet.EfficientNet(
        0.25, 1.0, 224, 0.2, name="efficientnetb0", weights=None, input_shape=(64, 64, 3), classes=10), 64, 1
    yield "resnet50", lambda: a.ResNet50(weights=None, input_shape=(64, 64, 3), classes=10), 64, 16
    yield "xception", lambda: a.Xception(weights=None, input_shape=(96, 96, 3), classes=10), 96, 16
    yield "inception_v3", lambda: a.InceptionV3(weights=None, input_shape=(96, 96, 3), classes=10), 96, 16


def randomise(model, seed):
    """Random weights; batch-norm statistics randomised too."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        v = w.numpy()
        name = w.path
        if "moving_variance" in name:
            v = rng.uniform(0.5, 2.0, v.shape)
        elif "moving_mean" in name:
            v = rng.normal(0.0, 0.2, v.shape)
        elif "gamma" in name:
            v = rng.uniform(0.5, 1.5, v.shape)
        elif "beta" in name or "bias" in name:
            v = rng.normal(0.0, 0.1, v.shape)
        elif v.ndim >= 2:
            fan_in = int(np.prod(v.shape[:-1])) if "depthwise" not in name else int(np.prod(v.shape[:2]))
            v = rng.normal(0.0, np.sqrt(2.0 / max(fan_in, 1)), v.shape)
        else:
            continue
        w.assign(v.astype(np.float32))


def main(out):
    os.makedirs(out, exist_ok=True)
    keras.utils.set_random_seed(0)
    for name, build, size, divisor in models():
        narrow(divisor)
        model = build()
        randomise(model, 0)
        with tempfile.TemporaryDirectory() as d:
            saved = os.path.join(d, "saved")
            model.export(saved)
            path = os.path.join(out, f"{name}.onnx")
            subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved,
                            "--output", path, "--opset", "17"], check=True)
        print(name, size, os.path.getsize(path))


if __name__ == "__main__":
    main(sys.argv[1])

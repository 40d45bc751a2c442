"""Captum peer for `zfvis bench --methods`: the time Captum takes to compute
the maps of the deconvnet's family for one image and its top class.

usage: bench_methods.py (zfnet MODEL_DIR SNAPSHOT | torchvision:ARCH MODEL.pth) INPUT.npy ITERS THREADS LAST

LAST: Grad-CAM's layer, as explain_ref.py's CONV|MODULE. Prints JSON: per
method the median seconds (Deconvolution, GuidedBackprop, Saliency,
LayerGradCam + bilinear interpolation, GuidedGradCam (bilinear),
IntegratedGradients riemann_trapezoid 50 steps), and "total".
"""
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")
from explain_ref import load  # noqa: E402


def main(args):
    from captum.attr import (Deconvolution, GuidedBackprop, GuidedGradCam, IntegratedGradients,
                             LayerAttribution, LayerGradCam, Saliency)
    model, relus, rest = load(args)
    inp, iters, threads, at = rest[0], int(rest[1]), int(rest[2]), rest[3]
    torch.set_num_threads(threads)
    layer = relus[int(at) - 1] if at.isdigit() else model.get_submodule(at)
    x = torch.from_numpy(np.load(inp)).float()
    with torch.no_grad():
        cls = int(model(x).argmax(1)[0])
    xg = x.clone().requires_grad_(True)
    size = tuple(x.shape[2:])
    methods = {
        "deconv": lambda: Deconvolution(model).attribute(xg, target=cls),
        "guided": lambda: GuidedBackprop(model).attribute(xg, target=cls),
        "gradient": lambda: Saliency(model).attribute(xg, target=cls, abs=False),
        "gradcam": lambda: LayerAttribution.interpolate(
            LayerGradCam(model, layer).attribute(xg, target=cls, relu_attributions=True), size, "bilinear"),
        "guided-gradcam": lambda: GuidedGradCam(model, layer).attribute(xg, target=cls, interpolate_mode="bilinear"),
        "ig": lambda: IntegratedGradients(model).attribute(
            xg, baselines=torch.zeros_like(x), target=cls, n_steps=50, method="riemann_trapezoid"),
    }
    out = {}
    for name, f in methods.items():
        f()
        ts = []
        for _ in range(iters):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        out[name] = statistics.median(ts)
    out["total"] = sum(out.values())
    out["class"] = cls
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])

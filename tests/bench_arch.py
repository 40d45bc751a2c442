"""PyTorch peer for `zfvis bench --arch`: a torchvision network with random
weights, saved for zfvis to import, and PyTorch's times on it.

usage: bench_arch.py ARCH OUT.pth THREADS ITERS OCCLUSION(0|1) [UNIT]

Prints JSON: forward_ms (batch 1, median), forward32_ms (batch 32),
projection_ms (the deconvnet of the strongest activation of map 0 of UNIT,
a module path, or without UNIT of the last conv layer of `features`, as a
modified gradient: forward + backward with every ReLU's backward replaced
by ReLU of the gradient, median) and, when OCCLUSION is 1 and Captum is
installed, occlusion_s: Captum's Occlusion over the whole image (48 px
square, stride 8, baseline 0) at its best perturbations_per_eval of 16,
32, 64 (occlusion_ppe: which).
"""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from deconv_ref import DeconvReLU
import torchvision


def median_ms(f, n):
    f()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def projection(model, x, unit):
    """The modified-gradient projection of map 0's strongest activation."""
    if unit:
        captured = {}

        def keep(m, i, o):
            captured["h"] = o

        def run(xg):
            hook = model.get_submodule(unit).register_forward_hook(keep)
            try:
                model(xg)
            finally:
                hook.remove()
            return captured["h"]
    else:
        feats = list(model.features)
        last = max(i for i, m in enumerate(feats) if isinstance(m, nn.Conv2d)) + 1

        def run(xg):
            h = xg
            for m in feats[: last + 1]:
                h = m(h)
            return h

    def project():
        xg = x.clone().requires_grad_(True)
        m0 = run(xg)[0, 0].flatten()
        m0[int(torch.argmax(m0.detach()))].backward()
        return xg.grad

    return project


def main():
    arch, out, threads, iters, occ = sys.argv[1:6]
    unit = sys.argv[6] if len(sys.argv) > 6 else ""
    torch.set_num_threads(int(threads))
    iters = int(iters)
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    torch.save(model.state_dict(), out)
    x = torch.randn(1, 3, 224, 224)
    x32 = torch.randn(32, 3, 224, 224)
    with torch.no_grad():
        fwd = median_ms(lambda: model(x), iters)
        fwd32 = median_ms(lambda: model(x32), max(3, iters // 4))
    relu = nn.ReLU.forward, F.relu
    nn.ReLU.forward = lambda self, t: DeconvReLU.apply(t)
    F.relu = lambda t, inplace=False: DeconvReLU.apply(t)
    proj = median_ms(projection(model, x, unit), max(3, iters // 2))
    nn.ReLU.forward, F.relu = relu
    res = {"forward_ms": fwd, "forward32_ms": fwd32, "projection_ms": proj, "threads": torch.get_num_threads()}
    if occ == "1":
        try:
            from captum.attr import Occlusion
        except ImportError:
            res["occlusion_s"] = None
        else:
            with torch.no_grad():
                target = int(model(x).argmax())
            best = None
            for ppe in (16, 32, 64):
                t = time.perf_counter()
                with torch.no_grad():
                    Occlusion(model).attribute(x, sliding_window_shapes=(3, 48, 48), strides=(3, 8, 8),
                                               baselines=0, target=target, perturbations_per_eval=ppe)
                s = time.perf_counter() - t
                if best is None or s < best[0]:
                    best = (s, ppe)
            res["occlusion_s"], res["occlusion_ppe"] = best
    print(json.dumps(res))


if __name__ == "__main__":
    main()

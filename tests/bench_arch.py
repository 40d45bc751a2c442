"""PyTorch peer for `zfvis bench --arch`: a torchvision network with random
weights, saved for zfvis to import, and PyTorch's times on it.

usage: bench_arch.py ARCH OUT.pth THREADS ITERS OCCLUSION(0|1)

Prints JSON: forward_ms (batch 1, median), projection_ms (the deconvnet of
the last conv layer's strongest unit of map 0 as a modified gradient:
forward to that layer + backward, median) and, when OCCLUSION is 1 and
Captum is installed, occlusion_s: Captum's Occlusion over the whole image
(48 px square, stride 8, baseline 0, 32 positions per forward).
"""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn

from deconv_ref import DeconvReLU
import torchvision


def main():
    arch, out, threads, iters, occ = sys.argv[1:6]
    torch.set_num_threads(int(threads))
    iters = int(iters)
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    torch.save(model.state_dict(), out)
    x = torch.randn(1, 3, 224, 224)

    def median_ms(f, n):
        f()
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            ts.append((time.perf_counter() - t) * 1000)
        return statistics.median(ts)

    with torch.no_grad():
        fwd = median_ms(lambda: model(x), iters)

    # The last conv's ReLU, and the deconvnet through the features.
    feats = list(model.features)
    last = max(i for i, m in enumerate(feats) if isinstance(m, nn.Conv2d)) + 1

    def project():
        xg = x.clone().requires_grad_(True)
        h = xg
        for m in feats[: last + 1]:
            h = DeconvReLU.apply(h) if isinstance(m, nn.ReLU) else m(h)
        m0 = h[0, 0].flatten()
        m0[int(torch.argmax(m0.detach()))].backward()
        return xg.grad

    proj = median_ms(project, max(3, iters // 2))
    res = {"forward_ms": fwd, "projection_ms": proj, "threads": torch.get_num_threads()}
    if occ == "1":
        try:
            from captum.attr import Occlusion
        except ImportError:
            res["occlusion_s"] = None
        else:
            with torch.no_grad():
                target = int(model(x).argmax())
            t = time.perf_counter()
            with torch.no_grad():
                Occlusion(model).attribute(x, sliding_window_shapes=(3, 48, 48), strides=(3, 8, 8),
                                           baselines=0, target=target, perturbations_per_eval=32)
            res["occlusion_s"] = time.perf_counter() - t
    print(json.dumps(res))


if __name__ == "__main__":
    main()

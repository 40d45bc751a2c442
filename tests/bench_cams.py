"""The grad-cam package's peer for `zfvis bench --cams`: the seconds one
CAM method of pytorch-grad-cam 1.5.7 takes for one image and its top class,
with the package's own batching (AblationCAM: 32, ScoreCAM: 16).

usage: bench_cams.py torchvision:ARCH MODEL.pth INPUT.npy MODULE METHOD ITERS THREADS OUT.npy
Prints JSON {"seconds": median, "class"}; the map goes to OUT.npy.
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
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    model, _, rest = load(args)
    inp, module, method, iters, threads, out = rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]), rest[5]
    torch.set_num_threads(threads)
    x = torch.from_numpy(np.load(inp)).float()
    with torch.no_grad():
        cls = int(model(x).argmax(1)[0])
    layer = model.get_submodule(module)
    kind = {"ablationcam": pgc.AblationCAM, "scorecam": pgc.ScoreCAM}[method]
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        with kind(model=model, target_layers=[layer]) as cam:
            m = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])[0]
        ts.append(time.perf_counter() - t)
    np.save(out, m.astype(np.float32))
    print(json.dumps({"seconds": statistics.median(ts), "class": cls}))


if __name__ == "__main__":
    main(sys.argv[1:])

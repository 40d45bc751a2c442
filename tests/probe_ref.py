"""PyTorch references for `zfvis probe` / `zfvis transfer`.

usage:
  probe_ref.py softmax X.npy Y.npy CLASSES LAMBDA OUT_W.npy OUT_B.npy
      Multinomial logistic regression on X standardised with its own mean
      and population std: minimise mean cross-entropy + LAMBDA/2 ||W||^2
      (bias not penalised) with torch.optim.LBFGS (strong Wolfe), float64.
  probe_ref.py features MODEL_DIR X.npy OUT_DIR
      The zfvis ZFNet/AlexNet of MODEL_DIR (last snapshot) on inputs X
      [N, 3, 224, 224]: each conv block's output (after ReLU, max-pool, LRN)
      average-pooled to 4x4 and flattened, and fc6/fc7 after ReLU, as
      OUT_DIR/{conv1..conv5,fc6,fc7}.npy.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn


def softmax_main(xp, yp, classes, lam, out_w, out_b):
    x = torch.from_numpy(np.load(xp)).double()
    y = torch.from_numpy(np.load(yp)).long()
    x = (x - x.mean(0)) / x.std(0, unbiased=False).clamp_min(1e-6)
    w = torch.zeros(x.shape[1], int(classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(int(classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=2000, tolerance_grad=1e-10, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(x @ w + b, y) + float(lam) / 2 * (w ** 2).sum()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    np.save(out_w, w.detach().numpy())
    np.save(out_b, b.detach().numpy())


def features_main(model_dir, xp, out):
    from safetensors.torch import load_file
    sys.path.insert(0, os.path.dirname(__file__))
    from pytorch_ref import spec

    man = json.load(open(os.path.join(model_dir, "manifest.json")))
    w = {k: v.float() for k, v in load_file(os.path.join(model_dir, man["snapshots"][-1]["file"])).items()}
    blocks, _ = spec(man["architecture"], man["width"], man.get("fc_width") or man["width"], len(man["classes"]))
    h = torch.from_numpy(np.load(xp)).float()
    with torch.no_grad():
        for i, (_, _, (k, s, p), pool, norm) in enumerate(blocks):
            n = f"conv{i + 1}"
            h = torch.relu(nn.functional.conv2d(h, w[n + ".weight"], w[n + ".bias"], s, p))
            if pool:
                h = nn.functional.max_pool2d(h, pool[0], pool[1], pool[2])
            if norm:
                h = nn.functional.local_response_norm(h, 5, 1e-4, 0.75, 2.0)
            np.save(f"{out}/{n}.npy", nn.functional.adaptive_avg_pool2d(h, 4).flatten(1).numpy())
        h = h.flatten(1)
        for n in ["fc6", "fc7"]:
            h = torch.relu(nn.functional.linear(h, w[n + ".weight"], w[n + ".bias"]))
            np.save(f"{out}/{n}.npy", h.numpy())


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"softmax": softmax_main, "features": features_main}[cmd](*args)

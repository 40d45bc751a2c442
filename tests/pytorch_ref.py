"""Independent reference for zfvis's forward pass and deconvnet, in PyTorch.

usage: pytorch_ref.py ARCH WIDTH FC_WIDTH CLASSES WEIGHTS.safetensors INPUT.npy OUT_DIR LAYER MAP

Writes OUT_DIR/map{1..5}.npy (conv outputs after ReLU), logits.npy and
proj.npy: the deconvnet projection of the strongest activation of MAP in
LAYER, computed as a gradient where every ReLU's backward is ReLU of the
incoming signal, max-pool's backward is PyTorch's own (sums coinciding
switches) and LRN's backward is the identity (skipped).
"""
import sys
import numpy as np
import torch
import torch.nn as nn

from deconv_ref import DeconvReLU
from safetensors.torch import load_file


class SkipLRN(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return nn.functional.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=2.0)

    @staticmethod
    def backward(ctx, g):
        return g


def spec(arch, width, fc_width, classes):
    c = [max(1, round(n * width)) for n in [96, 256, 384, 384, 256]]
    f = max(1, round(4096 * fc_width))
    if arch == "zfnet":
        l1, p12, l2 = (7, 2, 1), (3, 2, 1), (5, 2, 0)
    else:
        l1, p12, l2 = (11, 4, 2), (3, 2, 0), (5, 1, 2)
    blocks = [(3, c[0], l1, p12, True), (c[0], c[1], l2, p12, True), (c[1], c[2], (3, 1, 1), None, False),
              (c[2], c[3], (3, 1, 1), None, False), (c[3], c[4], (3, 1, 1), (3, 2, 0), False)]
    return blocks, f


def forward(w, blocks, x, deconv=False):
    """Conv maps (after ReLU) and logits of the zfvis ZFNet/AlexNet with weights `w`;
    with `deconv`, ReLU and LRN backwards are the deconvnet's."""
    relu = DeconvReLU.apply if deconv else (lambda t: t.clamp(min=0))
    lrn = SkipLRN.apply if deconv else (lambda t: nn.functional.local_response_norm(t, 5, 1e-4, 0.75, 2.0))
    maps = []
    h = x
    for i, (_, _, (k, s, p), pool, norm) in enumerate(blocks):
        n = f"conv{i + 1}"
        h = relu(nn.functional.conv2d(h, w[n + ".weight"], w[n + ".bias"], s, p))
        maps.append(h)
        if pool:
            h = nn.functional.max_pool2d(h, pool[0], pool[1], pool[2])
        if norm:
            h = lrn(h)
    h = h.flatten(1)
    h = torch.relu(nn.functional.linear(h, w["fc6.weight"], w["fc6.bias"]))
    h = torch.relu(nn.functional.linear(h, w["fc7.weight"], w["fc7.bias"]))
    return maps, nn.functional.linear(h, w["fc8.weight"], w["fc8.bias"])


def main():
    arch, width, fc_width, classes, weights, inp, out, layer, fmap = sys.argv[1:10]
    width, fc_width, classes, layer, fmap = float(width), float(fc_width), int(classes), int(layer), int(fmap)
    w = load_file(weights)
    w = {k: v.float() for k, v in w.items()}
    blocks, _ = spec(arch, width, fc_width, classes)
    x = torch.from_numpy(np.load(inp)).float()
    run = lambda x, deconv: forward(w, blocks, x, deconv)

    with torch.no_grad():
        maps, logits = run(x, False)
    for i, m in enumerate(maps):
        np.save(f"{out}/map{i + 1}.npy", m.numpy())
    np.save(f"{out}/logits.npy", logits.numpy())

    # Deconvnet as a modified gradient (biases do not enter the gradient).
    xg = x[:1].clone().requires_grad_(True)
    maps, _ = run(xg, True)
    m = maps[layer - 1][0, fmap]
    i = int(torch.argmax(m.flatten()))
    m.flatten()[i].backward()
    np.save(f"{out}/proj.npy", xg.grad[0].numpy())
    np.save(f"{out}/proj_pos.npy", np.array([i // m.shape[1], i % m.shape[1]]))


if __name__ == "__main__":
    main()

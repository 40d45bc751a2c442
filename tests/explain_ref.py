"""Independent references for `zfvis explain` and `zfvis sanity`: Captum's
attributions, NumPy deletion/insertion, scipy/scikit-image similarity scores.

usage:
  explain_ref.py maps zfnet MODEL_DIR SNAPSHOT.safetensors INPUT.npy OUT_DIR CONV IG_STEPS
  explain_ref.py maps torchvision:ARCH MODEL.pth INPUT.npy OUT_DIR CONV|MODULE IG_STEPS [METHODS [SIZE STRIDE]]
      -> OUT_DIR/{deconv,guided,gradient,gradcam,guided_gradcam,ig,occlusion}.npy, class.json (top class)
         Grad-CAM at the ReLU after conv CONV (1-based) or at the module named
         MODULE (a graph's `layer4`), bilinear to the input size; METHODS
         comma-separated (default the first five but deconv); occlusion
         with a SIZE square at STRIDE (default 48, 16), baseline 0, on the
         class probability.
  explain_ref.py auc (zfnet MODEL_DIR SNAPSHOT | torchvision:ARCH MODEL.pth) INPUT.npy CLASS SAL.npy...
      -> one JSON line per map: {"deletion_auc", "insertion_auc"} (Petsiuk et al.)
  explain_ref.py scores BASE.npy MAP.npy
      -> JSON: spearman_abs, spearman, ssim, hog (None where undefined)
"""
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")


def zfnet(model_dir, snapshot):
    from pytorch_ref import spec
    from safetensors.torch import load_file
    m = json.load(open(os.path.join(model_dir, "manifest.json")))
    blocks, f = spec(m["architecture"], m["width"], m["fc_width"], len(m["classes"]))
    w = {k: v.float() for k, v in load_file(snapshot).items()}
    layers, relus = [], []
    for i, (cin, cout, (k, s, p), pool, norm) in enumerate(blocks):
        conv = nn.Conv2d(cin, cout, k, s, p)
        conv.weight.data, conv.bias.data = w[f"conv{i + 1}.weight"], w[f"conv{i + 1}.bias"]
        relu = nn.ReLU()
        layers += [conv, relu]
        relus.append(relu)
        if pool:
            layers.append(nn.MaxPool2d(pool[0], pool[1], pool[2]))
        if norm:
            layers.append(nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0))
    layers.append(nn.Flatten())
    for i, n in enumerate(["fc6", "fc7", "fc8"]):
        lin = nn.Linear(w[n + ".weight"].shape[1], w[n + ".weight"].shape[0])
        lin.weight.data, lin.bias.data = w[n + ".weight"], w[n + ".bias"]
        layers.append(lin)
        if i < 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval(), relus


def torchvision_model(arch, path):
    import torchvision
    from import_ref import map_relus
    model = getattr(torchvision.models, arch)(weights=None)
    model.load_state_dict(torch.load(path, weights_only=True))
    for mod in model.modules():
        if isinstance(mod, (nn.ReLU, nn.ReLU6)):
            mod.inplace = False
    chain = arch.startswith(("vgg", "alexnet"))
    return model.eval(), map_relus(model.features) if chain else []


def load(args):
    """(model, relus, args left) from `zfnet DIR SNAPSHOT` or `torchvision:ARCH PTH`."""
    if args[0] == "zfnet":
        return (*zfnet(args[1], args[2]), args[3:])
    return (*torchvision_model(args[0].split(":", 1)[1], args[1]), args[2:])


class GuidedReLU(torch.autograd.Function):
    """ReLU (or ReLU6) whose backward is guided backprop's: relu(g) where 0 < x (< 6)."""

    @staticmethod
    def forward(ctx, x, top):
        ctx.save_for_backward(x)
        ctx.top = top
        return x.clamp(0, top) if top else x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        open_ = (x > 0) & (x < ctx.top) if ctx.top else (x > 0)
        return g.clamp(min=0) * open_, None


class DeconvReLU(torch.autograd.Function):
    """ReLU (or ReLU6) whose backward is the deconvnet's: relu(g), whatever x."""

    @staticmethod
    def forward(ctx, x, top):
        return x.clamp(0, top) if top else x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0), None


class SkippedLRN(torch.autograd.Function):
    """Local response normalisation passing the signal back unchanged (the
    deconvnet's convention: contrast normalisation is not inverted)."""

    @staticmethod
    def forward(ctx, x, lrn):
        return lrn(x)

    @staticmethod
    def backward(ctx, g):
        return g, None


def guided_patched(model, x, cls, rule=GuidedReLU):
    """Guided backprop (or the deconvnet, rule=DeconvReLU, LRN skipped) with
    every ReLU/ReLU6 module's forward replaced (works where a module is
    called more than once, which Captum's hooks refuse)."""
    saved = {}
    for m in model.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6)):
            top = 6.0 if isinstance(m, nn.ReLU6) else None
            saved[m] = m.forward
            m.forward = (lambda t, top=top: rule.apply(t, top))
        if rule is DeconvReLU and isinstance(m, nn.LocalResponseNorm):
            saved[m] = m.forward
            m.forward = (lambda t, f=m.forward: SkippedLRN.apply(t, f))
    try:
        xg = x.clone().requires_grad_(True)
        model(xg)[0, cls].backward()
        return xg.grad
    finally:
        for m, f in saved.items():
            m.forward = f


def reused_relus(model, x):
    calls = {}
    hooks = [m.register_forward_hook(lambda m, i, o: calls.__setitem__(m, calls.get(m, 0) + 1))
             for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return any(v > 1 for v in calls.values())


def maps_main(args):
    model, relus, rest = load(args)
    inp, out, at, steps = rest[0], rest[1], rest[2], int(rest[3])
    want = rest[4].split(",") if len(rest) > 4 else ["guided", "gradient", "gradcam", "guided_gradcam", "ig"]
    size, stride = (int(rest[5]), int(rest[6])) if len(rest) > 6 else (48, 16)
    layer = relus[int(at) - 1] if at.isdigit() else model.get_submodule(at)
    x = torch.from_numpy(np.load(inp)).float()
    with torch.no_grad():
        cls = int(model(x).argmax(1)[0])
    res = attributions(model, layer, x, cls, want, steps, size, stride)
    # The same in float64: the exact map, against which float32's own error
    # (PyTorch's, ours) shows how well defined the map is (max-pool
    # switches and ReLU masks of near-equal values flip with rounding).
    grads = [w for w in want if w != "occlusion"]
    res64 = attributions(model.double(), layer, x.double(), cls, grads, steps, size, stride)
    model.float()
    for k, v in list(res.items()) + [(k + ".f64", v) for k, v in res64.items()]:
        v = v.detach()
        np.save(f"{out}/{k}.npy", (v[0] if v.dim() == 4 else v).numpy().astype(np.float64 if k.endswith(".f64") else np.float32))
    json.dump({"class": cls}, open(f"{out}/class.json", "w"))


def attributions(model, layer, x, cls, want, steps, size, stride):
    """{method: map} of the methods in `want`, in x's dtype."""
    from captum.attr import (GuidedBackprop, IntegratedGradients, LayerAttribution,
                             LayerGradCam, Saliency)
    xg = x.clone().requires_grad_(True)
    res = {}
    if "guided" in want or "guided_gradcam" in want:
        # Captum's hooks refuse a ReLU module called twice (torchvision's
        # ResNet) and guide only nn.ReLU (ReLU6 gets the plain gradient).
        relu6 = any(isinstance(m, nn.ReLU6) for m in model.modules())
        if relu6 or reused_relus(model, x):
            res["guided"] = guided_patched(model, x, cls)
        else:
            res["guided"] = GuidedBackprop(model).attribute(xg, target=cls)
    if "deconv" in want:
        # Captum's Deconvolution where its hooks apply (no LRN, each ReLU
        # module called once, no ReLU6); otherwise the same rule patched in.
        lrn = any(isinstance(m, nn.LocalResponseNorm) for m in model.modules())
        relu6 = any(isinstance(m, nn.ReLU6) for m in model.modules())
        if lrn or relu6 or reused_relus(model, x):
            res["deconv"] = guided_patched(model, x, cls, DeconvReLU)
        else:
            from captum.attr import Deconvolution
            res["deconv"] = Deconvolution(model).attribute(xg, target=cls)
    if "occlusion" in want:
        from captum.attr import Occlusion
        prob = lambda t: torch.softmax(model(t), 1)
        with torch.no_grad():
            occ = Occlusion(prob).attribute(
                x, sliding_window_shapes=(x.shape[1], size, size),
                strides=(x.shape[1], stride, stride), baselines=0, target=cls,
                perturbations_per_eval=16)
        res["occlusion"] = occ[0, 0]
    if "gradient" in want:
        res["gradient"] = Saliency(model).attribute(xg, target=cls, abs=False)
    if "gradcam" in want or "guided_gradcam" in want:
        lgc = LayerGradCam(model, layer).attribute(xg, target=cls, relu_attributions=True)
        res["gradcam"] = LayerAttribution.interpolate(lgc, tuple(x.shape[2:]), "bilinear")[0, 0]
    if "guided_gradcam" in want:
        res["guided_gradcam"] = res["guided"] * res["gradcam"]
    if "ig" in want:
        res["ig"] = IntegratedGradients(model).attribute(
            xg, baselines=torch.zeros_like(x), target=cls, n_steps=steps,
            method="riemann_trapezoid", internal_batch_size=10)
    return res


def blur(x):
    """11x11 Gaussian, sigma 5, normalised, per channel, zero padding."""
    g = np.exp(-np.arange(-5, 6) ** 2 / (2 * 5.0 ** 2))
    g = g / g.sum()
    k = torch.from_numpy(np.outer(g, g)).float()
    c = x.shape[1]
    return nn.functional.conv2d(x, k.expand(c, 1, 11, 11).contiguous(), padding=5, groups=c)


def auc_main(args):
    model, _, rest = load(args)
    x = torch.from_numpy(np.load(rest[0])).float()
    cls = int(rest[1])
    _, c, h, w = x.shape
    for path in rest[2:]:
        s = np.load(path).astype(np.float64).reshape(-1)
        order = np.argsort(-s, kind="stable")  # descending, ties by index
        n = h * w // w
        out = {}
        for name, start, source in [("deletion", x, torch.zeros_like(x)), ("insertion", blur(x), x)]:
            p = []
            for k in range(n + 1):
                img = start.clone().reshape(c, -1)
                idx = torch.from_numpy(order[: k * w].copy())
                img[:, idx] = source.reshape(c, -1)[:, idx]
                with torch.no_grad():
                    p.append(float(torch.softmax(model(img.reshape(1, c, h, w)).double(), 1)[0, cls]))
            out[name + "_auc"] = (sum(p) - (p[0] + p[-1]) / 2) / n
        print(json.dumps(out))


def views(m):
    m = m.astype(np.float64)
    if m.ndim == 3:
        return np.abs(m).max(0), m.sum(0)
    return np.abs(m), m


def scores_main(args):
    from scipy.stats import spearmanr, pearsonr
    from skimage.feature import hog
    from skimage.metrics import structural_similarity
    (ba, bs), (ma, ms) = views(np.load(args[0])), views(np.load(args[1]))

    def defined(f):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = float(f())
        return None if np.isnan(v) else v

    out = {
        "spearman_abs": defined(lambda: spearmanr(ba.ravel(), ma.ravel())[0]),
        "spearman": defined(lambda: spearmanr(bs.ravel(), ms.ravel())[0]),
    }
    if ba.max() > 0 and ma.max() > 0:
        a, b = ba / ba.max(), ma / ma.max()
        out["ssim"] = defined(lambda: structural_similarity(a, b, data_range=1))
        out["hog"] = defined(lambda: pearsonr(hog(a), hog(b))[0])
    else:
        out["ssim"] = out["hog"] = None
    print(json.dumps(out))


if __name__ == "__main__":
    {"maps": maps_main, "auc": auc_main, "scores": scores_main}[sys.argv[1]](sys.argv[2:])

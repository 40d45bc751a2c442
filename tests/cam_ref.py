"""References for the CAM family and SmoothGrad: the grad-cam package
(pytorch-grad-cam 1.5.7) and Captum's NoiseTunnel.

usage:
  cam_ref.py cams (zfnet MODEL_DIR SNAPSHOT | torchvision:ARCH MODEL.pth) INPUT.npy OUT_DIR LAYER METHODS
      -> OUT_DIR/<method>.npy: the package's map (S x S, its normalisation),
         class.json (the top class, which every map explains). LAYER: the
         ReLU after conv LAYER (1-based) or the module named LAYER;
         METHODS comma-separated of gradcam, gradcam++, xgradcam, hirescam,
         layercam, eigencam, ablationcam, scorecam. Eigen-CAM's projection
         goes through the package's own sign convention
         (get_2d_projection_with_sign_correction), as zfvis fixes the sign.
  cam_ref.py smooth (zfnet MODEL_DIR SNAPSHOT | torchvision:ARCH MODEL.pth) INPUT.npy NOISE.npy SIGMA OUT.npy METHOD SQUARED
      -> OUT.npy: Captum's NoiseTunnel (smoothgrad, or smoothgrad_sq when
         SQUARED is 1) over METHOD (gradient: Saliency(abs=False), guided:
         GuidedBackprop, ig: IntegratedGradients from 0, 50 steps,
         riemann_trapezoid) for the top class, nt_samples = len(NOISE),
         stdevs = SIGMA, with torch.normal drawing NOISE (standard normal,
         [n, C, S, S]) instead of its own numbers.
"""
import json
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")
from explain_ref import load  # noqa: E402


def cams_main(args):
    import pytorch_grad_cam as pgc
    import pytorch_grad_cam.eigen_cam as eigen
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction
    model, relus, rest = load(args)
    inp, out, at, want = rest[0], rest[1], rest[2], rest[3].split(",")
    layer = relus[int(at) - 1] if at.isdigit() else model.get_submodule(at)
    x = torch.from_numpy(np.load(inp)).float()
    with torch.no_grad():
        cls = int(model(x).argmax(1)[0])
    eigen.get_2d_projection = get_2d_projection_with_sign_correction
    classes = {
        "gradcam": pgc.GradCAM, "gradcam++": pgc.GradCAMPlusPlus, "xgradcam": pgc.XGradCAM,
        "hirescam": pgc.HiResCAM, "layercam": pgc.LayerCAM, "eigencam": pgc.EigenCAM,
        "ablationcam": pgc.AblationCAM, "scorecam": pgc.ScoreCAM,
    }
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    for name in want:
        with classes[name](model=model, target_layers=[layer]) as cam:
            m = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])[0]
        np.save(f"{out}/{name}.npy", m.astype(np.float32))
    json.dump({"class": cls}, open(f"{out}/class.json", "w"))


def smooth_main(args):
    from captum.attr import GuidedBackprop, IntegratedGradients, NoiseTunnel, Saliency
    model, _, rest = load(args)
    x = torch.from_numpy(np.load(rest[0])).float()
    eps = torch.from_numpy(np.load(rest[1])).float()
    sigma, out, method, squared = float(rest[2]), rest[3], rest[4], rest[5] == "1"
    with torch.no_grad():
        cls = int(model(x).argmax(1)[0])
    base, kw = {
        "gradient": (Saliency, {"abs": False}),
        "guided": (GuidedBackprop, {}),
        "ig": (IntegratedGradients, {"baselines": torch.zeros_like(x), "n_steps": 50,
                                     "method": "riemann_trapezoid"}),
    }[method]
    normal = torch.normal
    torch.normal = lambda mean, std, *a, **k: mean + std * eps.reshape(std.shape)
    try:
        a = NoiseTunnel(base(model)).attribute(
            x.clone().requires_grad_(True), nt_type="smoothgrad_sq" if squared else "smoothgrad",
            nt_samples=eps.shape[0], stdevs=sigma, target=cls, **kw)
    finally:
        torch.normal = normal
    np.save(out, a[0].detach().numpy().astype(np.float32))


if __name__ == "__main__":
    {"cams": cams_main, "smooth": smooth_main}[sys.argv[1]](sys.argv[2:])

"""References for `zfvis visualize`: torch-lucent 0.1.8 (the PyTorch port
of Lucid), its own parameterisation, transforms, objectives and loop.

torch-lucent pins kornia <= 0.4.1, which does not install beside torch 2.13;
the Makefile installs it without dependencies beside a current kornia, and
the two functions it calls from kornia's top level are pointed at their new
place (kornia.geometry.transform) here.

usage:
  visualize_ref.py grad MODEL UNIT MAP DRAWS.json DIR
      -> DIR/grad<k>.npy: the gradient of Lucent's channel objective (minus
         the mean of map MAP of UNIT) with respect to the spectrum
         DIR/init<k>.npy ([B, C, H, W/2+1, 2]), k = 1.., for each draw of
         DRAWS.json; fft + decorrelated colour, with Lucid's
         transforms (pad 12, jitter 8, scale, rotate, jitter 4) whose
         random draws are DRAWS.json's (a list of {jitter, scale, angle,
         jitter2}), then the ImageNet normalisation.
  visualize_ref.py render MODEL UNIT MAP STEPS SIZE SEED...
      -> JSON: [objective of each seed's image]: render_vis with Lucent's
         defaults (its transforms, Adam 0.05, fft, decorrelate) on a
         SIZE-pixel image, then the map's mean on the image itself.
  visualize_ref.py bench MODEL UNIT MAP STEPS SIZE
      -> JSON {seconds, objective}: render_vis with Lucid's recipe (the
         transforms zfvis uses by default), one map, STEPS steps, no progress
         bar; the map's mean on the final image.

MODEL: `zfnet MODEL_DIR SNAPSHOT` or `torchvision:ARCH MODEL.pth`. UNIT: a conv
number (ZFNet: its conv, before the ReLU) or a module path (`inception4a`).
"""
import json
import os
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
warnings.filterwarnings("ignore")

import kornia  # noqa: E402
import kornia.geometry.transform as _kt  # noqa: E402

kornia.get_rotation_matrix2d = _kt.get_rotation_matrix2d
kornia.warp_affine = _kt.warp_affine

from lucent.optvis import objectives, param, render, transform  # noqa: E402

LUCID_SCALES = [1, 0.975, 1.025, 0.95, 1.05]
LUCID_ANGLES = list(range(-5, 6))


def load(args):
    """(model, hook name of UNIT, args left)."""
    if args[0] == "zfnet":
        from explain_ref import zfnet
        model, _ = zfnet(args[1], args[2])
        rest = args[3:]
        convs = [i for i, m in enumerate(model) if isinstance(m, torch.nn.Conv2d)]
        name = str(convs[int(rest[0]) - 1])
    else:
        from explain_ref import torchvision_model
        model, _ = torchvision_model(args[0].split(":", 1)[1], args[1])
        rest = args[2:]
        name = rest[0].replace(".", "_")
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), name, rest[1:]


def lucid_transforms():
    return [
        transform.pad(12, mode="constant", constant_value=0.5),
        transform.jitter(8),
        transform.random_scale(LUCID_SCALES),
        transform.random_rotate(LUCID_ANGLES),
        transform.jitter(4),
    ]


def grad_main(args):
    model, name, rest = load(args)
    cmap, draws, out = int(rest[0]), json.load(open(rest[1])), rest[2]
    for k, d in enumerate(draws, 1):
        init = torch.from_numpy(np.load(f"{out}/init{k}.npy")).float()
        b, h = init.shape[0], init.shape[2]
        params, image_f = param.image(h, batch=b, decorrelate=True, fft=True)
        with torch.no_grad():
            params[0].copy_(init)
        it = iter([d["jitter"][0], d["jitter"][1], d["scale"], d["angle"], d["jitter2"][0], d["jitter2"][1]])
        np.random.choice = lambda *a, **kw: next(it)
        transform_f = transform.compose(lucid_transforms() + [transform.normalize()])
        hook = render.hook_model(model, image_f)
        try:
            model(transform_f(image_f()))
        except RuntimeError:
            pass  # a fixed-size classifier past the unit: Lucent's own warning case
        loss = objectives.channel(name, cmap)(hook)
        loss.backward()
        np.save(f"{out}/grad{k}.npy", params[0].grad.numpy())


def value(model, name, cmap, img):
    hook = render.hook_model(model, lambda: img)
    with torch.no_grad():
        try:
            model(transform.normalize()(img))
        except RuntimeError:
            pass
        return float(hook(name)[:, cmap].mean())


def render_main(args):
    model, name, rest = load(args)
    cmap, steps, size, seeds = int(rest[0]), int(rest[1]), int(rest[2]), rest[3:]
    out = []
    for s in seeds:
        torch.manual_seed(int(s))
        np.random.seed(int(s))
        imgs = render.render_vis(
            model, objectives.channel(name, cmap), lambda: param.image(size),
            thresholds=(steps,), progress=False, show_image=False,
        )
        img = torch.from_numpy(imgs[-1]).permute(0, 3, 1, 2).contiguous()
        out.append(value(model, name, cmap, img))
    print(json.dumps(out))


def bench_main(args):
    model, name, rest = load(args)
    cmap, steps, size = int(rest[0]), int(rest[1]), int(rest[2])
    torch.manual_seed(0)
    np.random.seed(0)
    t = time.perf_counter()
    imgs = render.render_vis(
        model, objectives.channel(name, cmap), lambda: param.image(size),
        transforms=lucid_transforms(), thresholds=(steps,), progress=False, show_image=False,
    )
    seconds = time.perf_counter() - t
    img = torch.from_numpy(imgs[-1]).permute(0, 3, 1, 2).contiguous()
    print(json.dumps({"seconds": seconds, "objective": value(model, name, cmap, img)}))


if __name__ == "__main__":
    {"grad": grad_main, "render": render_main, "bench": bench_main}[sys.argv[1]](sys.argv[2:])

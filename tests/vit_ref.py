"""References for the vision transformers (torchvision's ViT and Swin), random weights.

usage:
  vit_ref.py archs OUT_DIR ARCH [SIZE]
      -> OUT_DIR/ARCH.pth (torchvision's ARCH, every parameter drawn),
         x.npy (one SIZE px input, default 224), ARCH.logits.npy.
  vit_ref.py small OUT_DIR [SIZE]
      A ViT-B/16 layout cut to 4 blocks of 192 channels (12 heads, MLP 768),
      for SIZE px inputs (default 224)
      -> model.pth, x.npy, logits.npy, class.json (the top class),
         block1.npy (encoder_layer_1's patch tokens as [C, 14, 14] maps),
         rollout_{mean,max,min}.npy, rollout_mean_d0.npy (discard 0),
         grad_rollout.npy ([14, 14]: NumPy from the attention weights and
         their gradients that forward hooks captured),
         gradcam.npy (the grad-cam package at encoder_layer_2 with its
         reshape_transform), gradient.npy and ig.npy (Captum: Saliency,
         IntegratedGradients from 0, 16 steps, riemann_trapezoid).
  vit_ref.py onnx OUT_DIR
      A 3-block torchvision ViT (64 channels, 4 heads), a timm DeiT with a
      distillation token, a timm DeiT III (layer scale) and a timm ViT with
      a mean-pooling head (same sizes), random weights, each exported by
      both torch.onnx.export exporters -> {M}_{ts,dynamo}.onnx for M in
      vit, deit, deit3, avgvit, x.npy,
      M.logits.npy, M.block{i}.npy (block i's patch tokens as [C, 14, 14]
      maps, from forward hooks), M.rollout.npy (NumPy, mean of heads,
      discard 0.9); odd_scale.onnx (attention scaled by 0.5, not 1/sqrt(d)).
  vit_ref.py swin_onnx OUT_DIR SIZE [v1|v2]
      A torchvision Swin of two stages of two blocks (32 channels; V1: 7x7
      windows, V2: 8x8 and its blocks and patch merging), random weights,
      exported by both exporters at SIZE px -> swin_{ts,dynamo}.onnx,
      x.npy, swin.logits.npy.
  vit_ref.py swin OUT_DIR [SIZE]
      A Swin-T layout cut to two stages of two blocks -> model.pth, x.npy,
      logits.npy, class.json, gradcam.npy (the package at features.3.1),
      gradient.npy (Captum's Saliency).
"""
import json
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

warnings.filterwarnings("ignore")


def randomise(model, seed):
    """Every parameter drawn: layer norms' scales around 1, weights He-normal,
    the rest (biases, tokens, position embeddings, bias tables) N(0, 0.1)."""
    torch.manual_seed(seed)
    norms = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    for name, p in model.named_parameters():
        with torch.no_grad():
            if name in norms:
                p.uniform_(0.5, 1.5)
            elif p.dim() >= 2 and not name.endswith(
                    ("class_token", "pos_embedding", "bias_table", "cls_token", "dist_token", "pos_embed")):
                fan_in = p[0].numel()
                p.normal_(0.0, (2.0 / fan_in) ** 0.5)
            else:
                p.normal_(0.0, 0.1)
    return model.eval()


def image(seed=1, size=224):
    torch.manual_seed(seed)
    return torch.randn(1, 3, size, size)


def archs_main(out, arch, size=224):
    import torchvision
    model = randomise(getattr(torchvision.models, arch)(weights=None), 0)
    torch.save(model.state_dict(), f"{out}/{arch}.pth")
    torch.manual_seed(1)
    x = torch.randn(1, 3, size, size)
    np.save(f"{out}/x.npy", x.numpy())
    with torch.no_grad():
        np.save(f"{out}/{arch}.logits.npy", model(x).numpy())


class ExplicitAttention(nn.Module):
    """torchvision's MultiheadAttention (batch first) written out, its
    softmax a module: a forward hook on it sees the attention weights."""

    def __init__(self, mha):
        super().__init__()
        self.mha, self.heads = mha, mha.num_heads
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x, *_, **__):
        b, n, c = x.shape
        q, k, v = F.linear(x, self.mha.in_proj_weight, self.mha.in_proj_bias).chunk(3, -1)
        split = lambda t: t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
        q, k, v = split(q), split(k), split(v)
        a = self.softmax(q @ k.transpose(-2, -1) / (c // self.heads) ** 0.5)
        o = (a @ v).transpose(1, 2).reshape(b, n, c)
        return self.mha.out_proj(o), None


def rollout(atts, discard, prefix=1):
    """vit-explain's rollout of fused [N, N] matrices (rows renormalised),
    the class token's row over the patches (after `prefix` learned tokens)."""
    n = atts[0].shape[-1]
    result = np.eye(n)
    for f in atts:
        f = f.astype(np.float64).copy()
        flat = f.reshape(-1)
        k = int(flat.size * discard)
        idx = np.argsort(flat, kind="stable")[:k]
        idx = idx[idx != 0]
        flat[idx] = 0
        a = (f + np.eye(n)) / 2
        a = a / a.sum(axis=-1, keepdims=True)
        result = a @ result
    mask = result[0, prefix:]
    w = int(round(mask.size ** 0.5))
    return (mask / mask.max()).reshape(w, w)


def small_main(out, size=224):
    from torchvision.models.vision_transformer import VisionTransformer
    model = randomise(VisionTransformer(size, 16, num_layers=4, num_heads=12, hidden_dim=192,
                                        mlp_dim=768), 0)
    torch.save(model.state_dict(), f"{out}/model.pth")
    x = image(size=size)
    side = size // 16
    np.save(f"{out}/x.npy", x.numpy())
    blocks = {}
    model.encoder.layers[1].register_forward_hook(lambda m, i, o: blocks.__setitem__(1, o))
    with torch.no_grad():
        logits = model(x)
    cls = int(logits.argmax(1)[0])
    np.save(f"{out}/logits.npy", logits.numpy())
    np.save(f"{out}/block1.npy", blocks[1][0, 1:].T.reshape(-1, side, side).numpy())
    json.dump({"class": cls}, open(f"{out}/class.json", "w"))

    # Captum and the grad-cam package on the model as torchvision has it.
    from captum.attr import IntegratedGradients, Saliency
    xg = x.clone().requires_grad_(True)
    np.save(f"{out}/gradient.npy", Saliency(model).attribute(xg, target=cls, abs=False)[0].detach().numpy())
    ig = IntegratedGradients(model).attribute(xg, baselines=torch.zeros_like(x), target=cls, n_steps=16,
                                              method="riemann_trapezoid", internal_batch_size=8)
    np.save(f"{out}/ig.npy", ig[0].detach().numpy())
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def reshape_transform(t, side=side):
        return t[:, 1:, :].reshape(t.size(0), side, side, t.size(2)).permute(0, 3, 1, 2)

    with pgc.GradCAM(model=model, target_layers=[model.encoder.layers[-2]],
                     reshape_transform=reshape_transform) as cam:
        m = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])[0]
    np.save(f"{out}/gradcam.npy", m.astype(np.float32))

    # The attention weights and their gradients, from forward hooks on the
    # written-out attention's softmax.
    atts = []

    def keep(m, i, o):
        o.retain_grad()
        atts.append(o)

    for layer in model.encoder.layers:
        layer.self_attention = ExplicitAttention(layer.self_attention)
        layer.self_attention.softmax.register_forward_hook(keep)
    logits2 = model(x)
    assert torch.allclose(logits2, logits, atol=1e-4), "the written-out attention"
    logits2[0, cls].backward()
    a = [t[0].detach().numpy() for t in atts]
    g = [t.grad[0].numpy() for t in atts]
    for fusion, fuse in [("mean", np.mean), ("max", np.max), ("min", np.min)]:
        np.save(f"{out}/rollout_{fusion}.npy", rollout([fuse(t, axis=0) for t in a], 0.9).astype(np.float32))
    np.save(f"{out}/rollout_mean_d0.npy", rollout([t.mean(axis=0) for t in a], 0.0).astype(np.float32))
    weighted = [(t * np.maximum(d, 0)).mean(axis=0) for t, d in zip(a, g)]
    np.save(f"{out}/grad_rollout.npy", rollout(weighted, 0.9).astype(np.float32))


def swin_main(out, size=224):
    """A Swin-T layout cut to two stages of two blocks (48 and 96 channels):
    model.pth, x.npy, logits.npy, class.json, gradcam.npy (the package at
    features.3.1, its maps permuted from [B, H, W, C]), gradient.npy (Captum)."""
    from torchvision.models.swin_transformer import SwinTransformer
    model = randomise(SwinTransformer([4, 4], 48, [2, 2], [3, 6], [7, 7]), 0)
    torch.save(model.state_dict(), f"{out}/model.pth")
    x = image(size=size)
    np.save(f"{out}/x.npy", x.numpy())
    with torch.no_grad():
        logits = model(x)
    cls = int(logits.argmax(1)[0])
    np.save(f"{out}/logits.npy", logits.numpy())
    json.dump({"class": cls}, open(f"{out}/class.json", "w"))
    from captum.attr import Saliency
    xg = x.clone().requires_grad_(True)
    np.save(f"{out}/gradient.npy", Saliency(model).attribute(xg, target=cls, abs=False)[0].detach().numpy())
    import pytorch_grad_cam as pgc
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    with pgc.GradCAM(model=model, target_layers=[model.features[3][1]],
                     reshape_transform=lambda t: t.permute(0, 3, 1, 2)) as cam:
        m = cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])[0]
    np.save(f"{out}/gradcam.npy", m.astype(np.float32))


def onnx_main(out):
    import timm
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import VisionTransformer as TimmViT
    from torchvision.models.vision_transformer import VisionTransformer
    models = {
        "vit": (VisionTransformer(image_size=224, patch_size=16, num_layers=3, num_heads=4,
                                  hidden_dim=64, mlp_dim=128, num_classes=10),
                lambda m: m.encoder.layers, 1),
        "deit": (VisionTransformerDistilled(img_size=224, patch_size=16, embed_dim=64, depth=3,
                                            num_heads=4, mlp_ratio=2.0, num_classes=10),
                 lambda m: m.blocks, 2),
        "deit3": (timm.create_model("deit3_small_patch16_224", embed_dim=64, depth=3, num_heads=4,
                                    mlp_ratio=2.0, num_classes=10),
                  lambda m: m.blocks, 1),
        "avgvit": (TimmViT(img_size=224, patch_size=16, embed_dim=64, depth=3, num_heads=4,
                           mlp_ratio=2.0, num_classes=10, global_pool="avg"),
                   lambda m: m.blocks, 1),
    }
    x = image()
    np.save(f"{out}/x.npy", x.numpy())
    for name, (model, blocks, prefix) in models.items():
        model = randomise(model, 0)
        for ext, dynamo in [("ts", False), ("dynamo", True)]:
            kw = {} if dynamo else {"opset_version": 17, "output_names": ["logits"]}
            torch.onnx.export(model, (x,), f"{out}/{name}_{ext}.onnx", input_names=["input"],
                              dynamo=dynamo, verbose=False, **kw)
        outs = []
        hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o)) for b in blocks(model)]
        with torch.no_grad():
            np.save(f"{out}/{name}.logits.npy", model(x).numpy())
        for h in hooks:
            h.remove()
        for i, o in enumerate(outs):
            grid = o[0, prefix:].T.reshape(o.shape[-1], 14, 14)
            np.save(f"{out}/{name}.block{i}.npy", grid.numpy())
        # Rollout (mean of heads, discard 0.9) from the attention weights.
        atts = []
        for b in blocks(model):
            if name == "vit":
                b.self_attention = ExplicitAttention(b.self_attention)
                softmax = b.self_attention.softmax
            else:
                b.attn.fused_attn = False
                softmax = b.attn.attn_drop
            softmax.register_forward_hook(lambda m, i, o: atts.append(o[0].mean(0).numpy()))
        with torch.no_grad():
            assert torch.allclose(model(x), torch.from_numpy(np.load(f"{out}/{name}.logits.npy")), atol=1e-5)
        np.save(f"{out}/{name}.rollout.npy", rollout(atts, 0.9, prefix).astype(np.float32))
    # Attention zfvis does not read: a scale other than 1/sqrt(d).
    odd = randomise(TimmViT(img_size=224, patch_size=16, embed_dim=64, depth=1, num_heads=4,
                            num_classes=10), 0)
    odd.blocks[0].attn.fused_attn = False
    odd.blocks[0].attn.scale = 0.5
    torch.onnx.export(odd, (x,), f"{out}/odd_scale.onnx", input_names=["input"], dynamo=False,
                      opset_version=17)


def swin_onnx_main(out, size=112, version="v1"):
    from torchvision.models import swin_transformer as st
    v2 = {"block": st.SwinTransformerBlockV2, "downsample_layer": st.PatchMergingV2} if version == "v2" else {}
    window = [8, 8] if version == "v2" else [7, 7]
    model = randomise(st.SwinTransformer(patch_size=[4, 4], embed_dim=32, depths=[2, 2], num_heads=[2, 4],
                                         window_size=window, num_classes=10, **v2), 0)
    x = image(size=size)
    np.save(f"{out}/x.npy", x.numpy())
    for ext, dynamo in [("ts", False), ("dynamo", True)]:
        kw = {} if dynamo else {"opset_version": 17, "output_names": ["logits"]}
        torch.onnx.export(model, (x,), f"{out}/swin_{ext}.onnx", input_names=["input"],
                          dynamo=dynamo, verbose=False, **kw)
    with torch.no_grad():
        np.save(f"{out}/swin.logits.npy", model(x).numpy())


if __name__ == "__main__":
    torch.set_num_threads(2)
    mode = sys.argv[1]
    if mode == "archs":
        archs_main(sys.argv[2], sys.argv[3], *map(int, sys.argv[4:5]))
    elif mode == "small":
        small_main(sys.argv[2], *map(int, sys.argv[3:4]))
    elif mode == "onnx":
        onnx_main(sys.argv[2])
    elif mode == "swin_onnx":
        swin_onnx_main(sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
    elif mode == "swin":
        swin_main(sys.argv[2], *map(int, sys.argv[3:4]))
    else:
        sys.exit(f"unknown mode {mode}")

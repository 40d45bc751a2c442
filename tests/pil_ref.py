"""PIL and torchvision references for zfvis's decoding, resizing and preprocessing.

usage:
  pil_ref.py jpegs SRC OUT_DIR [EXTRA.jpg ...]
      JPEGs made with PIL from the photo SRC: baseline 4:2:0, 4:2:2, 4:4:4,
      progressive, optimised low quality, odd sizes, greyscale, CMYK and
      EXIF-oriented (2, 3, 6, 8), plus copies of EXTRA files. For each
      OUT_DIR/NAME.jpg, OUT_DIR/NAME.npy holds PIL's pixels:
      ImageOps.exif_transpose(Image.open(f)).convert("RGB"), HWC uint8.
  pil_ref.py resize SRC OUT_DIR RESIZE CROP
      PNGs of several sizes and aspect ratios made from SRC (OUT_DIR/NAME.png)
      and torchvision's Resize(RESIZE) + CenterCrop(CROP) of each, on the PIL
      image, as OUT_DIR/NAME.npy (HWC uint8).
  pil_ref.py filters SRC OUT_DIR
      PNGs of several sizes and aspect ratios made from SRC (OUT_DIR/NAME.png)
      and, for each of PIL's six filters, CenterCrop(224) of: torchvision's
      Resize(256, interpolation=FILTER) (NAME__FILTER__crop256.npy), PIL's
      img.resize((256, 256), FILTER) (..__squash256.npy) and
      img.resize((224, 224), FILTER) (..__squash224.npy); and
      img.convert("L") (NAME__L.npy), all uint8.
  pil_ref.py pipelines WEIGHTS.pth LIST.txt OUT_DIR
      Softmax of torchvision's AlexNet with WEIGHTS.pth on each file of
      LIST.txt through the pipelines people ship (OUT_DIR/PIPELINE.npy):
      squash_bicubic (img.resize((224, 224)), ToTensor, ImageNet Normalize),
      crop_lanczos (Resize(256, LANCZOS), CenterCrop(224), ...), keras_nearest
      (img.resize((224, 224), NEAREST) / 255) and caffe (img.resize((256,
      256)) bilinear, CenterCrop(224), BGR 0..255 minus (104, 117, 123)).
  pil_ref.py predict MODEL_DIR LIST.txt OUT.npy
      Softmax of the zfvis ZFNet/AlexNet in MODEL_DIR (last snapshot), run
      in PyTorch on each file of LIST.txt opened with PIL and transformed by
      torchvision: Resize(resize), CenterCrop(input_size), ToTensor,
      Normalize(mean, std) from the manifest. [N, classes] float32.
  pil_ref.py alexnet WEIGHTS.pth LIST.txt OUT.npy
      Softmax of torchvision's AlexNet with the state dict WEIGHTS.pth on
      each file, through torchvision's eval transform of AlexNet_Weights
      (Resize(256), CenterCrop(224), normalise) on the PIL image.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageOps


def pil_pixels(path):
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def jpegs_main(src, out, extras):
    os.makedirs(out, exist_ok=True)
    photo = Image.open(src).convert("RGB")
    w, h = photo.size

    def save(name, img, **kw):
        img.save(os.path.join(out, name + ".jpg"), "JPEG", **kw)

    save("baseline_420", photo, quality=90, subsampling=2)
    save("baseline_422", photo, quality=90, subsampling=1)
    save("baseline_444", photo, quality=95, subsampling=0)
    save("progressive_420", photo, quality=85, subsampling=2, progressive=True)
    save("progressive_444", photo, quality=85, subsampling=0, progressive=True)
    save("optimized_q40", photo, quality=40, optimize=True)
    # Odd sizes: chroma upsampling at the right and bottom edges.
    save("odd_333x251", photo.crop((17, 23, 17 + 333, 23 + 251)), quality=88, subsampling=2)
    save("odd_1x1", photo.resize((1, 1)), quality=90)
    save("grey", photo.convert("L"), quality=90)
    save("cmyk", photo.convert("CMYK"), quality=90)
    small = photo.resize((w // 2, h // 3))
    for o in (2, 3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = o
        save(f"exif_orientation_{o}", small, quality=90, exif=exif.tobytes())
    for i, e in enumerate(extras):
        shutil.copy(e, os.path.join(out, f"extra_{i}_{os.path.basename(e).split('.')[0]}.jpg"))
    for f in sorted(os.listdir(out)):
        if f.endswith(".jpg"):
            np.save(os.path.join(out, f[:-4] + ".npy"), pil_pixels(os.path.join(out, f)))


def resize_main(src, out, resize, crop):
    from torchvision import transforms

    os.makedirs(out, exist_ok=True)
    photo = Image.open(src).convert("RGB")
    t = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(crop)])
    sizes = [(640, 480), (480, 640), (500, 375), (375, 500), (257, 256), (1000, 300),
             (300, 1000), (333, 251), (225, 225), (224, 224), (901, 677), (120, 90), (280, 1200), (1200, 280)]
    for w, h in sizes:
        name = f"{w}x{h}"
        img = photo.resize((w, h), Image.LANCZOS)
        img.save(os.path.join(out, name + ".png"))
        np.save(os.path.join(out, name + ".npy"), np.asarray(t(img)))


FILTERS = {"nearest": Image.NEAREST, "box": Image.BOX, "bilinear": Image.BILINEAR,
           "hamming": Image.HAMMING, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}


def filters_main(src, out):
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    os.makedirs(out, exist_ok=True)
    photo = Image.open(src).convert("RGB")
    crop = transforms.CenterCrop(224)
    sizes = [(640, 480), (480, 640), (257, 256), (1000, 300), (300, 1000), (333, 251),
             (224, 224), (120, 90), (901, 677)]
    for w, h in sizes:
        name = f"{w}x{h}"
        img = photo.resize((w, h), Image.LANCZOS)
        img.save(os.path.join(out, name + ".png"))
        np.save(os.path.join(out, f"{name}__L.npy"), np.asarray(img.convert("L")))
        for f, pf in FILTERS.items():
            mode = InterpolationMode[f.upper()]
            outs = {"crop256": crop(transforms.Resize(256, interpolation=mode)(img)),
                    "squash256": crop(img.resize((256, 256), pf)),
                    "squash224": crop(img.resize((224, 224), pf))}
            for fit, o in outs.items():
                np.save(os.path.join(out, f"{name}__{f}__{fit}.npy"), np.asarray(o))


def pipelines_main(weights, list_path, out):
    import torchvision
    from torchvision import transforms as T

    model = torchvision.models.alexnet()
    model.load_state_dict(torch.load(weights))
    model.eval()
    norm = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    caffe_mean = torch.tensor([104.0, 117.0, 123.0]).view(3, 1, 1)
    pipelines = {
        "squash_bicubic": lambda im: norm(im.resize((224, 224))),
        "crop_lanczos": lambda im: norm(T.CenterCrop(224)(T.Resize(256, T.InterpolationMode.LANCZOS)(im))),
        "keras_nearest": lambda im: torch.from_numpy(
            np.asarray(im.resize((224, 224), Image.NEAREST), dtype=np.float32) / 255.0).permute(2, 0, 1),
        "caffe": lambda im: torch.from_numpy(
            np.asarray(T.CenterCrop(224)(im.resize((256, 256), Image.BILINEAR)), dtype=np.float32)
        ).permute(2, 0, 1).flip(0) - caffe_mean,
    }
    os.makedirs(out, exist_ok=True)
    with torch.no_grad():
        for name, f in pipelines.items():
            x = torch.stack([f(Image.open(p).convert("RGB")) for p in files(list_path)])
            np.save(os.path.join(out, name + ".npy"), model(x).softmax(-1).numpy())


def files(list_path):
    with open(list_path) as f:
        return [l.strip() for l in f if l.strip()]


def predict_main(model_dir, list_path, out):
    from safetensors.torch import load_file
    from torchvision import transforms

    sys.path.insert(0, os.path.dirname(__file__))
    from pytorch_ref import forward, spec

    man = json.load(open(os.path.join(model_dir, "manifest.json")))
    w = {k: v.float() for k, v in load_file(os.path.join(model_dir, man["snapshots"][-1]["file"])).items()}
    blocks, _ = spec(man["architecture"], man["width"], man.get("fc_width") or man["width"], len(man["classes"]))
    size = man["input_size"]
    t = transforms.Compose([
        transforms.Resize(man.get("resize") or size), transforms.CenterCrop(size),
        transforms.ToTensor(), transforms.Normalize(man["mean"], man["std"])])
    probs = []
    with torch.no_grad():
        paths = files(list_path)
        for i in range(0, len(paths), 64):
            x = torch.stack([t(Image.open(p).convert("RGB")) for p in paths[i:i + 64]])
            probs.append(forward(w, blocks, x)[1].softmax(-1))
    np.save(out, torch.cat(probs).numpy())


def alexnet_main(weights, list_path, out):
    import torchvision

    model = torchvision.models.alexnet()
    model.load_state_dict(torch.load(weights))
    model.eval()
    t = torchvision.models.AlexNet_Weights.IMAGENET1K_V1.transforms()
    with torch.no_grad():
        x = torch.stack([t(Image.open(p).convert("RGB")) for p in files(list_path)])
        np.save(out, model(x).softmax(-1).numpy())


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "jpegs":
        jpegs_main(args[0], args[1], args[2:])
    elif cmd == "resize":
        resize_main(args[0], args[1], int(args[2]), int(args[3]))
    elif cmd == "filters":
        filters_main(*args)
    elif cmd == "pipelines":
        pipelines_main(*args)
    elif cmd == "predict":
        predict_main(*args)
    elif cmd == "alexnet":
        alexnet_main(*args)
    else:
        sys.exit(f"unknown command {cmd}")

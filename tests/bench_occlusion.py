"""Occlusion speed, side by side in one run: zfvis (`zfvis occlude`) against
Captum's Occlusion on the same weights loaded into an equivalent PyTorch
model, same positions (48 px square, stride 8 at 224: 23 x 23), with
Captum's best `perturbations_per_eval`.

usage: .venv/bin/python tests/bench_occlusion.py MODEL_DIR IMAGE [ZFVIS_BIN]
Installs captum into the venv if missing. Prints both times and the ratio."""
import json, os, subprocess, sys, time

try:
    import captum  # noqa: F401
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "captum"])

import numpy as np
import torch
import torch.nn as nn
from captum.attr import Occlusion
from PIL import Image
from safetensors.torch import load_file

model_dir, image = sys.argv[1], sys.argv[2]
zfvis = sys.argv[3] if len(sys.argv) > 3 else "target/release/zfvis"
man = json.load(open(os.path.join(model_dir, "manifest.json")))
snap = max(man["snapshots"], key=lambda s: s["epoch"])
w = {k: v.float() for k, v in load_file(os.path.join(model_dir, snap["file"])).items()}
torch.set_num_threads(os.cpu_count())
assert man["architecture"] == "zfnet"

c = [w[f"conv{i}.weight"].shape[0] for i in range(1, 6)]
lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
net = nn.Sequential(
    nn.Conv2d(3, c[0], 7, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), lrn(),
    nn.Conv2d(c[0], c[1], 5, 2, 0), nn.ReLU(), nn.MaxPool2d(3, 2, 1), lrn(),
    nn.Conv2d(c[1], c[2], 3, 1, 1), nn.ReLU(), nn.Conv2d(c[2], c[3], 3, 1, 1), nn.ReLU(),
    nn.Conv2d(c[3], c[4], 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 0), nn.Flatten(),
    nn.Linear(w["fc6.weight"].shape[1], w["fc6.weight"].shape[0]), nn.ReLU(), nn.Dropout(),
    nn.Linear(w["fc7.weight"].shape[1], w["fc7.weight"].shape[0]), nn.ReLU(), nn.Dropout(),
    nn.Linear(w["fc8.weight"].shape[1], w["fc8.weight"].shape[0])).eval()
names = {0: "conv1", 4: "conv2", 8: "conv3", 10: "conv4", 12: "conv5", 16: "fc6", 19: "fc7", 22: "fc8"}
with torch.no_grad():
    for i, n in names.items():
        net[i].weight.copy_(w[n + ".weight"])
        net[i].bias.copy_(w[n + ".bias"])

# The same preprocessing as zfvis: shorter side to 224 (bilinear), centre crop.
img = Image.open(image).convert("RGB")
s = 224 / min(img.size)
img = img.resize((round(img.width * s), round(img.height * s)), Image.BILINEAR)
l, t = (img.width - 224) // 2, (img.height - 224) // 2
x = torch.from_numpy(np.asarray(img.crop((l, t, l + 224, t + 224)), dtype=np.float32) / 255).permute(2, 0, 1)
x = ((x - torch.tensor(man["mean"]).view(3, 1, 1)) / torch.tensor(man["std"]).view(3, 1, 1)).unsqueeze(0)
with torch.no_grad():
    target = int(net(x).argmax())

occ = Occlusion(lambda inp: torch.softmax(net(inp), 1))
best = None
for ppe in [16, 32, 64, 128, 256]:
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        with torch.no_grad():
            occ.attribute(x, sliding_window_shapes=(3, 48, 48), strides=(3, 8, 8), baselines=0,
                          target=target, perturbations_per_eval=ppe)
        times.append(time.perf_counter() - t0)
    tm = min(times)
    print(f"captum perturbations_per_eval={ppe}: {tm:.3f} s", flush=True)
    if best is None or tm < best[1]:
        best = (ppe, tm)

out = subprocess.run([zfvis, "occlude", "--model", model_dir, "--image", image, "--size", "48", "--stride", "8",
                      "--class", str(target), "--repeat", "3", "--device", "cpu"], capture_output=True, text=True)
if out.returncode != 0:
    sys.exit(out.stderr)
ours = float([l for l in out.stderr.splitlines() if l.startswith("occlusion_seconds")][0].split()[1])
print(f"zfvis occlude (incremental, 23x23 positions): {ours:.3f} s")
print(f"captum Occlusion (best perturbations_per_eval={best[0]}): {best[1]:.3f} s")
print(f"speed-up zfvis vs captum: {best[1] / ours:.2f}x")

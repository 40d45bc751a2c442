"""PyTorch side of tests/distributed.rs.

usage: distributed_ref.py predict MODEL_DIR IMAGE...
    Class probabilities of the model's last snapshot on each image, from
    distributed/train.py's network on torchvision's preprocessing (PIL
    decode, Resize(224), CenterCrop(224)), as JSON [[p0, p1, ...], ...].
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file
from torchvision import transforms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "distributed"))
import train  # noqa: E402


def load(model_dir):
    with open(os.path.join(model_dir, "manifest.json")) as f:
        m = json.load(f)
    layers = m.get("layers") or train.preset_layers(
        m["architecture"], m["width"], m.get("fc_width", m["width"]), len(m["classes"]))
    net = train.Net(layers)
    snap = max(m["snapshots"], key=lambda s: s["epoch"])
    w = load_file(os.path.join(model_dir, snap["file"]))
    with torch.no_grad():
        for n, t in net.tensors().items():
            t.copy_(w[n].float())
    return net.eval(), m


def main():
    cmd, model_dir, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert cmd == "predict"
    net, m = load(model_dir)
    tf = transforms.Compose([transforms.Resize(m["input_size"]), transforms.CenterCrop(m["input_size"]),
                             transforms.ToTensor(), transforms.Normalize(m["mean"], m["std"])])
    x = torch.stack([tf(train.load_rgb(p)) for p in images])
    with torch.no_grad():
        p = torch.softmax(net(x), 1)
    print(json.dumps(p.tolist()))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Train a zfvis model beyond one machine: PyTorch DistributedDataParallel
under `torchrun`, writing model folders that `zfvis serve` opens as they are.

    torchrun --nproc_per_node 8 distributed/train.py --arch zfnet --width 1 \\
        --data /data/imagenet --out models/zfnet-imagenet --epochs 70 --batch 16

The flags are `zfvis train`'s (`--batch` is per process), the data folder the
same `train/<class>/`, `val/<class>/` layout, the networks the same presets
(ZFNet/AlexNet with width multipliers, or any zfvis layer list with
`--layers manifest.json`) with the same tensor names, and the same recipes
(paper.md §2, core/src/train.rs):

- `paper`: N(0, 0.01) init, lr divided by 10 after 50% and 75% of the epochs;
- `modern`: He init, one warm-up epoch (lr/10 -> lr), cosine decay per step,
  Nesterov momentum, label smoothing 0.1;
- both: SGD with momentum and weight decay, dropout, conv filters clipped to
  RMS 0.1 after every step (unless `--no-clip`), images resized to 256 on the
  shorter side, centre 256 crop, random 224 crops with horizontal flips.

Each sample's crop and flip follow from (seed, epoch, sample index) alone, so
a step with 2 ranks x batch B/2 sees the same crops as 1 rank x batch B, and a
resumed run the same as an uninterrupted one. Rank 0 writes the snapshots
(`epoch-XXX.safetensors`, `manifest.json`) and, after every epoch, the resume
state (`train-state.pt`: model, optimiser with its momentum buffers, epoch),
each by writing a temporary file and renaming it. CPU runs use gloo, CUDA runs
NCCL with bf16 autocast and channels-last.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image, ImageOps
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torchvision import datasets, transforms

EXTS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")  # zfvis's data::EXTS
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
RESIZE = 256
INPUT = 224
STATE = "train-state.pt"


# ---- networks: zfvis layer lists ---------------------------------------------

def scaled(n, w):
    return max(1, int(math.floor(n * w + 0.5)))  # Rust's round: halves away from 0


def out_size(n, k, s, p, ceil=False):
    span = n + 2 * p - k
    if span < 0:
        return 0
    if not ceil:
        return span // s + 1
    o = (span + s - 1) // s + 1
    return o - 1 if (o - 1) * s >= n + p else o


def preset_layers(arch, width, fc_width, classes):
    """NetSpec::preset of core/src/net.rs, as the manifest's layer list."""
    c = [scaled(n, width) for n in (96, 256, 384, 384, 256)]
    if arch == "zfnet":
        conv1, pool12, conv2 = (7, 2, 1), (3, 2, 1), (5, 2, 0)
    elif arch == "alexnet":
        conv1, pool12, conv2 = (11, 4, 2), (3, 2, 0), (5, 1, 2)
    else:
        raise SystemExit(f"error: unknown architecture {arch!r}: expected zfnet or alexnet")

    def conv(name, i, o, w):
        return {"op": "conv", "name": name, "in": i, "out": o, "k": w[0], "stride": w[1], "pad": w[2]}

    pool = lambda w: {"op": "max_pool", "k": w[0], "stride": w[1], "pad": w[2]}
    lrn = {"op": "lrn", "size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
    relu = {"op": "relu"}
    layers = [conv("conv1", 3, c[0], conv1), relu, pool(pool12), lrn,
              conv("conv2", c[0], c[1], conv2), relu, pool(pool12), lrn]
    for i in range(2, 5):
        layers += [conv(f"conv{i + 1}", c[i - 1], c[i], (3, 1, 1)), relu]
    layers.append(pool((3, 2, 0)))
    side = INPUT
    for l in layers:
        if l["op"] in ("conv", "max_pool"):
            side = out_size(side, l["k"], l["stride"], l["pad"])
    f = scaled(4096, fc_width)
    drop = {"op": "dropout", "p": 0.5}
    layers += [{"op": "flatten"}, {"op": "linear", "name": "fc6", "in": side * side * c[4], "out": f}, relu, drop,
               {"op": "linear", "name": "fc7", "in": f, "out": f}, relu, drop,
               {"op": "linear", "name": "fc8", "in": f, "out": classes}]
    return layers


def tensor_names(l):
    return l.get("weight") or l["name"] + ".weight", l.get("bias") or l["name"] + ".bias"


class Net(nn.Module):
    """A zfvis layer list as a PyTorch module; `tensors()` gives the weights
    under zfvis's (PyTorch's) names."""

    def __init__(self, layers, dropout=None):
        super().__init__()
        self.layers = layers
        self.dropout = dropout
        self.weights = nn.ParameterList()
        self.names = []
        for l in layers:
            if l["op"] == "conv":
                shape = (l["out"], l["in"] // l.get("groups", 1), l["k"], l["k"])
            elif l["op"] == "linear":
                shape = (l["out"], l["in"])
            else:
                continue
            self.weights.append(nn.Parameter(torch.zeros(shape)))
            self.weights.append(nn.Parameter(torch.zeros(l["out"])))
            self.names += list(tensor_names(l))

    def forward(self, x):
        params = iter(self.weights)
        for l in self.layers:
            op = l["op"]
            if op == "conv":
                x = F.conv2d(x, next(params), next(params), l["stride"], l["pad"], 1, l.get("groups", 1))
            elif op == "linear":
                x = F.linear(x, next(params), next(params))
            elif op == "relu":
                x = F.relu(x)
            elif op == "lrn":
                x = F.local_response_norm(x, l["size"], l["alpha"], l["beta"], l["k"])
            elif op == "max_pool":
                x = F.max_pool2d(x, l["k"], l["stride"], l.get("pad", 0), ceil_mode=l.get("ceil_mode", False))
            elif op == "avg_pool":
                x = F.avg_pool2d(x, l["k"], l["stride"], l.get("pad", 0), ceil_mode=l.get("ceil_mode", False),
                                 count_include_pad=l.get("count_include_pad", True))
            elif op == "adaptive_avg_pool":
                x = F.adaptive_avg_pool2d(x, l["out"])
            elif op == "flatten":
                x = torch.flatten(x, 1)
            elif op == "dropout":
                x = F.dropout(x, l["p"] if self.dropout is None else self.dropout, self.training)
            else:
                raise ValueError(f"unknown layer op {op!r}")
        return x

    def tensors(self):
        return dict(zip(self.names, self.weights))

    def init(self, schedule):
        """Net::init: weights N(0, 0.01) (paper) or He (modern; gain 1 for the
        last linear layer), biases 0."""
        last = max(i for i, l in enumerate(self.layers) if l["op"] == "linear")
        last_w = tensor_names(self.layers[last])[0]
        with torch.no_grad():
            for name, t in sorted(self.tensors().items()):
                if name.endswith("bias") and t.dim() == 1:
                    t.zero_()
                    continue
                if schedule == "paper":
                    std = 0.01
                else:
                    fan_in = t[0].numel()
                    std = math.sqrt((1.0 if name == last_w else 2.0) / fan_in)
                t.normal_(0.0, std)

    def convs(self):
        ps = iter(self.weights)
        for l in self.layers:
            if l["op"] in ("conv", "linear"):
                w, _ = next(ps), next(ps)
                if l["op"] == "conv":
                    yield w

    @torch.no_grad()
    def clip_filters(self, max_rms=0.1):
        """Feature-scale clipping (paper §2): every conv filter whose RMS
        exceeds `max_rms` is rescaled to exactly `max_rms`."""
        for w in self.convs():
            rms = w.float().square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
            w.mul_((max_rms / rms).clamp(max=1.0).to(w.dtype))


# ---- data ----------------------------------------------------------------------

def load_rgb(path):
    """As zfvis decodes: EXIF orientation applied, then RGB."""
    with open(path, "rb") as f:
        img = Image.open(f)
        img = ImageOps.exif_transpose(img)
        return img.convert("RGB")


def is_image(path):
    return path.lower().endswith(EXTS)


def read_classes(root, wanted):
    """data::classes + data::select_classes: sorted folders of train/ (or the
    root), names from classes.json, optionally only `wanted` (ids or names)."""
    train = os.path.join(root, "train") if os.path.isdir(os.path.join(root, "train")) else root
    ids = sorted(e.name for e in os.scandir(train) if e.is_dir())
    if not ids:
        raise SystemExit(f"error: {train}: no class folders")
    names = {}
    cj = os.path.join(root, "classes.json")
    if os.path.exists(cj):
        with open(cj) as f:
            names = {c["wnid"]: c["name"] for c in json.load(f)}
    classes = [{"id": i, "name": names.get(i, i)} for i in ids]
    if wanted:
        keep = []
        for w in wanted:
            hit = [c for c in classes if w.lower() in (c["id"].lower(), c["name"].lower())]
            if not hit:
                raise SystemExit(f"error: unknown class {w!r}: the dataset's classes are {', '.join(ids)}")
            keep += hit
        classes = [c for c in classes if c in keep]
    return train, [dict(index=i, **c) for i, c in enumerate(classes)]


class Folder(datasets.ImageFolder):
    """ImageFolder over the given class ids (so val/ maps to train/'s indices),
    with zfvis's file types and decoder."""

    def __init__(self, root, ids):
        self.ids = ids
        super().__init__(root, loader=load_rgb, is_valid_file=is_image,
                         allow_empty=True)

    def find_classes(self, directory):
        return list(self.ids), {c: i for i, c in enumerate(self.ids)}


def sample_seed(seed, epoch, index):
    return ((seed * 1_000_003 + epoch) * 10_000_019 + index) % (2 ** 63)


class Augmented(Dataset):
    """Training samples keyed by (index, epoch): resize 256, centre 256, a
    224 crop and flip drawn from (seed, epoch, index)."""

    def __init__(self, folder, seed, crop=INPUT):
        self.folder, self.seed, self.crop = folder, seed, crop
        self.base = transforms.Compose([transforms.Resize(RESIZE), transforms.CenterCrop(RESIZE)])
        self.norm = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def __len__(self):
        return len(self.folder.samples)

    def __getitem__(self, key):
        i, epoch = key
        path, label = self.folder.samples[i]
        img = self.base(self.folder.loader(path))
        g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, i))
        m = RESIZE - self.crop
        oy = int(torch.randint(0, m + 1, (1,), generator=g))
        ox = int(torch.randint(0, m + 1, (1,), generator=g))
        flip = bool(torch.rand(1, generator=g) < 0.5)
        img = img.crop((ox, oy, ox + self.crop, oy + self.crop))
        if flip:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return self.norm(img), label


class Keyed(Sampler):
    """Yields (index, epoch) from a (distributed) sampler."""

    def __init__(self, inner):
        self.inner, self.epoch = inner, 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)

    def __iter__(self):
        return ((i, self.epoch) for i in self.inner)

    def __len__(self):
        return len(self.inner)


class Shuffled(Sampler):
    """One process: a permutation drawn as DistributedSampler draws it."""

    def __init__(self, n, seed):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self):
        return self.n


# ---- the run -----------------------------------------------------------------

def lr_at(args, epoch, step, steps):
    """train.rs lr_at: per step, `epoch` 1-based."""
    e = epoch - 1 + step / max(steps, 1)
    total = args.epochs
    if args.schedule == "paper":
        return args.lr if e < 0.5 * total else args.lr * 0.1 if e < 0.75 * total else args.lr * 0.01
    warm = min(1.0, total)
    if e < warm:
        return args.lr * (0.1 + 0.9 * e / warm)
    t = (e - warm) / max(total - warm, 1e-9)
    return args.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def write_atomic(path, write):
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


def write_json(path, obj):
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
    write_atomic(path, w)


def git_rev():
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip() or None
    except OSError:
        return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="zfnet", help="zfnet | alexnet")
    p.add_argument("--width", type=float, default=1.0, help="conv width multiplier (1.0 = the paper's)")
    p.add_argument("--fc-width", type=float, default=None, help="fc width multiplier (default: --width)")
    p.add_argument("--layers", default=None,
                   help="a zfvis manifest.json whose layer list to train instead of a preset "
                        "(its last linear layer gets one output per class)")
    p.add_argument("--data", required=True, help="train/<class>/*, val/<class>/*, optional classes.json")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--epochs", type=int, default=70)
    p.add_argument("--snapshots", default="1,2,5,10,20,30,40,64",
                   help="epochs at which snapshots are written (the last epoch always is)")
    p.add_argument("--batch", type=int, default=128, help="per process")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--no-clip", action="store_true", help="turn feature-scale clipping off")
    p.add_argument("--schedule", default="paper", choices=["paper", "modern"])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--resume", action="store_true", help="continue from the last completed epoch in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--half", action="store_true", help="store snapshots as fp16 (loaded as fp32)")
    p.add_argument("--limit", type=int, default=0, help="use at most N training images (0 = all)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this epoch as if killed")
    p.add_argument("--classes", default="", help="train on these classes only: ids or names, comma-separated")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers per process")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per process (default: cores / processes)")
    p.add_argument("--dropout", type=float, default=None, help="override the dropout probability (0 = off)")
    args = p.parse_args(argv)
    try:
        args.snapshots = sorted({int(s) for s in args.snapshots.split(",") if s.strip()})
    except ValueError:
        p.error(f"--snapshots must be comma-separated epochs, got {args.snapshots!r}")
    for name in ("epochs", "batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    return args


def log(rank, *a):
    if rank == 0:
        print(*a, file=sys.stderr, flush=True)


def die_with_agent():
    """Under torchrun on Linux: end when the agent ends. torchrun starts its
    workers in sessions of their own, so `kill -9` of torchrun (or of its
    process group) would leave them training on, orphaned, still writing
    into --out."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal
    agent = os.getppid()
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != agent:  # the agent was gone before prctl took effect
        os._exit(1)


def main(argv=None):
    args = parse_args(argv)
    distributed = "WORLD_SIZE" in os.environ
    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA device is visible")
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // local_world))
    if distributed:
        die_with_agent()

    train_dir, classes = read_classes(args.data, [c for c in args.classes.split(",") if c.strip()])
    ids = [c["id"] for c in classes]
    if args.layers:
        with open(args.layers) as f:
            spec = json.load(f)
        if "layers" not in spec or spec.get("input_size", INPUT) != INPUT:
            raise SystemExit(f"error: {args.layers}: expected a zfvis manifest with \"layers\" "
                             f"and input_size {INPUT}")
        layers = spec["layers"]
        last = max(i for i, l in enumerate(layers) if l["op"] == "linear")
        layers[last] = dict(layers[last], out=len(classes))
        arch_fields = {"architecture": "custom", "width": 1.0, "layers": layers}
    else:
        fc_width = args.fc_width if args.fc_width is not None else args.width
        layers = preset_layers(args.arch, args.width, fc_width, len(classes))
        arch_fields = {"architecture": args.arch, "width": args.width}
        if args.fc_width is not None:
            arch_fields["fc_width"] = args.fc_width

    # The model folder: new, or resumed.
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "manifest.json")
    state_path = os.path.join(args.out, STATE)
    torch.manual_seed(args.seed)
    net = Net(layers, args.dropout)
    net.init(args.schedule)
    manifest = dict(arch_fields, input_size=INPUT, mean=MEAN, std=STD,
                    classes=classes, snapshots=[])
    start_epoch, wall_before, opt_state = 1, 0.0, None
    if os.path.exists(manifest_path):
        if not args.resume:
            raise SystemExit(f"error: {args.out} already holds a model: pass --resume to continue it, "
                             "or choose another --out")
        with open(manifest_path) as f:
            old = json.load(f)
        same = all(old.get(k) == v for k, v in arch_fields.items() if k != "fc_width") and \
            old.get("fc_width") == arch_fields.get("fc_width") and \
            [c["id"] for c in old["classes"]] == ids
        if not same:
            raise SystemExit(f"error: {args.out}: the existing model's architecture/width/classes differ "
                             "from this command's")
        manifest["snapshots"] = old.get("snapshots", [])
        if os.path.exists(state_path):
            st = torch.load(state_path, map_location="cpu", weights_only=True)
            net.load_state_dict(st["model"])
            opt_state = st["optimizer"]
            start_epoch, wall_before = st["epoch"] + 1, st["wall_seconds"]
        elif manifest["snapshots"]:
            from safetensors.torch import load_file
            s = max(manifest["snapshots"], key=lambda s: s["epoch"])
            w = load_file(os.path.join(args.out, s["file"]))
            with torch.no_grad():
                for n, t in net.tensors().items():
                    t.copy_(w[n].float())
            start_epoch = s["epoch"] + 1
            wall_before = s.get("metrics", {}).get("wall_seconds", 0.0)
            log(rank, f"no {STATE}: resuming from snapshot {s['epoch']} with fresh momentum buffers")
        log(rank, f"resuming {args.out} at epoch {start_epoch}")

    # Data: ImageFolder, a DistributedSampler, DataLoader workers.
    train_set = Folder(train_dir, ids)
    if args.limit and len(train_set.samples) > args.limit:
        keep = sorted(torch.randperm(len(train_set.samples),
                                     generator=torch.Generator().manual_seed(args.seed))[:args.limit].tolist())
        train_set.samples = [train_set.samples[i] for i in keep]
    if not train_set.samples:
        raise SystemExit(f"error: {train_dir}: no training images")
    aug = Augmented(train_set, args.seed)
    inner = DistributedSampler(aug, num_replicas=world, rank=rank, shuffle=True, seed=args.seed) \
        if distributed else Shuffled(len(aug), args.seed)
    sampler = Keyed(inner)
    # Loader workers are persistent: forked once, below, before gloo's threads
    # exist (a fork of a process running them can inherit a held lock: forked
    # per epoch, 2 runs in 166 hung here, one seen to be a val worker hanging
    # at its start). Each
    # loader draws its workers' seed from a generator of its own, not from the
    # global one behind the dropout masks: a persistent loader draws it once,
    # in the first epoch the process runs, which differs on --resume.
    def workers(n):
        return dict(num_workers=n, persistent_workers=n > 0,
                    generator=torch.Generator().manual_seed(args.seed))

    loader_kw = dict(pin_memory=cuda, **workers(args.workers))
    loader = DataLoader(aug, batch_size=args.batch, sampler=sampler, **loader_kw)
    val_dir = os.path.join(args.data, "val")
    val_set = Folder(val_dir, ids) if os.path.isdir(val_dir) else None
    val_loader = None
    if val_set is not None and val_set.samples:
        val_set.transform = transforms.Compose([transforms.Resize(INPUT), transforms.CenterCrop(INPUT),
                                                transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
        part = torch.utils.data.Subset(val_set, list(range(rank, len(val_set), world)))
        val_loader = DataLoader(part, batch_size=100, **workers(min(args.workers, 2)))
    for lo in (loader, val_loader):
        if lo is not None and lo.num_workers > 0:
            iter(lo)  # starts the workers; this prefetch is dropped at the first epoch
    if distributed:
        dist.init_process_group("nccl" if cuda else "gloo")

    net.to(device)
    if cuda:
        net.to(memory_format=torch.channels_last)
    model = DDP(net, device_ids=[local_rank] if cuda else None) if distributed else net
    KEEP.append(model)  # never freed before os._exit: see run()
    nesterov = args.schedule == "modern"
    opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay, nesterov=nesterov)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    smoothing = 0.1 if args.schedule == "modern" else 0.0

    log(rank, f"training {manifest['architecture']} width {manifest['width']} on {len(aug)} images "
              f"({len(classes)} classes), {len(val_set.samples) if val_set else 0} val images, "
              f"{world} process(es) x batch {args.batch} on {args.device}")

    def reduce(*xs):
        t = torch.tensor(xs, dtype=torch.float64, device=device)
        if distributed:
            dist.all_reduce(t)
        return t.tolist()

    def evaluate():
        if val_loader is None:
            return None, None
        net.eval()
        h1 = h5 = n = 0
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=cuda):
            for x, y in val_loader:
                x, y = x.to(device), y.to(device)
                if cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                top = net(x).float().topk(min(5, len(classes)), 1).indices
                eq = top.eq(y[:, None])
                h1 += int(eq[:, 0].sum())
                h5 += int(eq.sum())
                n += len(y)
        net.train()
        h1, h5, n = reduce(h1, h5, n)
        return h1 / n, h5 / n

    steps = len(loader)
    t0 = time.time()
    command = " ".join(["torchrun" if distributed else "python"] + sys.argv)
    for epoch in range(start_epoch, args.epochs + 1):
        sampler.set_epoch(epoch)
        torch.manual_seed(args.seed * 1000 + epoch * 100 + rank)  # dropout masks: resumable
        net.train()
        te = time.time()
        loss_sum = seen = 0.0
        for step, (x, y) in enumerate(loader):
            for g in opt.param_groups:
                g["lr"] = lr_at(args, epoch, step, steps)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", torch.bfloat16, enabled=cuda):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not args.no_clip:
                net.clip_filters(0.1)
            l = loss.item()
            if not math.isfinite(l):
                raise SystemExit(f"error: loss became {l} at epoch {epoch} step {step}: lower --lr")
            loss_sum += l * len(y)
            seen += len(y)
            if (step + 1) % max(steps // 5, 1) == 0:
                log(rank, f"epoch {epoch} step {step + 1}/{steps} loss {loss_sum / seen:.4f} "
                          f"{seen * world / (time.time() - te):.0f} img/s")
        loss_sum, seen = reduce(loss_sum, seen)
        epoch_secs = time.time() - te
        top1, top5 = evaluate()
        wall = wall_before + time.time() - t0
        metrics = {"train_loss": loss_sum / max(seen, 1), "wall_seconds": wall}
        if top1 is not None:
            metrics.update(val_top1=top1, val_top5=top5)
        log(rank, f"epoch {epoch}: train loss {metrics['train_loss']:.4f}, "
                  f"val top-1 {top1 if top1 is not None else float('nan'):.3f}, "
                  f"top-5 {top5 if top5 is not None else float('nan'):.3f}, {wall:.0f} s "
                  f"({seen / epoch_secs:.1f} img/s)")
        if rank == 0:
            if epoch in args.snapshots or epoch == args.epochs:
                file = f"epoch-{epoch:03d}.safetensors"
                kind = torch.float16 if args.half else torch.float32
                tensors = {n: t.detach().to("cpu", kind).contiguous() for n, t in net.tensors().items()}
                write_atomic(os.path.join(args.out, file), lambda tmp: save_file(tensors, tmp))
                manifest["snapshots"] = sorted([s for s in manifest["snapshots"] if s["epoch"] != epoch] +
                                               [{"epoch": epoch, "file": file, "metrics": metrics}],
                                               key=lambda s: s["epoch"])
            manifest["training"] = {
                "command": command, "trainer": "distributed/train.py", "git_revision": git_rev(),
                "world_size": world, "backend": dist.get_backend() if distributed else None,
                "device": args.device, "batch_per_process": args.batch, "schedule": args.schedule,
                "clip": not args.no_clip, "seed": args.seed, "epochs_done": epoch,
                "train_images": len(aug), "wall_seconds": wall, "torch": torch.__version__,
            }
            write_json(manifest_path, manifest)
            if epoch < args.epochs:
                st = {"model": net.state_dict(), "optimizer": opt.state_dict(),
                      "epoch": epoch, "wall_seconds": wall}
                write_atomic(state_path, lambda tmp: torch.save(st, tmp))
        if distributed:
            dist.barrier()
        if args.stop_after == epoch and epoch < args.epochs:
            log(rank, f"stopping after epoch {epoch}; continue with --resume")
            break
    else:
        if rank == 0 and os.path.exists(state_path):
            os.remove(state_path)
    del loader, val_loader
    # No destroy_process_group(): the last barrier is passed and run() ends
    # the process; tearing gloo down is what deadlocked (see KEEP).


# Objects the process must not free: freeing the DDP model can deadlock
# (seen 1 run in 21 on 2 cores, and in CI, when main() returned or raised):
# the Reducer's destructor holds the GIL while it joins gloo's worker thread,
# which waits for the GIL to free a finished barrier's tensors. They stay
# referenced here until run() ends the process with os._exit.
KEEP = []


def run():
    """main(), then os._exit (see KEEP; and no interpreter teardown waiting
    on loader workers); every file the run writes is closed by then."""
    code = 0
    try:
        main()
    except SystemExit as e:
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            code = 1
        else:
            code = e.code or 0
    except BaseException:  # noqa: BLE001 - printed, then the process ends
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()

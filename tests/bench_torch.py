"""PyTorch peer for `zfvis bench`: the same full-width ZFNet forward (eval,
no grad, same thread count), ms per image at the given batch sizes.
usage: bench_torch.py THREADS ITERS BATCH [BATCH ...]  -> JSON on stdout"""
import json, sys, time
import torch
import torch.nn as nn

threads, iters, batches = int(sys.argv[1]), int(sys.argv[2]), [int(b) for b in sys.argv[3:]]
torch.set_num_threads(threads)
lrn = lambda: nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
net = nn.Sequential(
    nn.Conv2d(3, 96, 7, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1), lrn(),
    nn.Conv2d(96, 256, 5, 2, 0), nn.ReLU(), nn.MaxPool2d(3, 2, 1), lrn(),
    nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(), nn.Conv2d(384, 384, 3, 1, 1), nn.ReLU(),
    nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 0), nn.Flatten(),
    nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
    nn.Linear(4096, 1000)).eval()
out = {}
with torch.no_grad():
    for b in batches:
        x = torch.randn(b, 3, 224, 224)
        for _ in range(2):
            net(x)
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - t)
        times.sort()
        out[str(b)] = times[len(times) // 2] * 1000 / b
print(json.dumps({"forward_ms_per_image": out}))

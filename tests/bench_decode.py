"""PIL peer for `zfvis bench --decode`: images/s of PIL decoding
(Image.open + convert("RGB")) and of decoding + torchvision's
Resize(256) + CenterCrop(224), on the same files, one thread.
usage: bench_decode.py ITERS FILE... -> JSON on stdout
       bench_decode.py filters ITERS FILE -> JSON {filter: ms}: decode FILE,
           Resize(256, filter) + CenterCrop(224) + ToTensor + Normalize,
           median ms per image for each of PIL's six filters"""
import json, sys, time
from PIL import Image
from torchvision import transforms

if sys.argv[1] == "filters":
    import io
    import torch
    from torchvision.transforms import InterpolationMode as M
    torch.set_num_threads(1)
    iters, blob = int(sys.argv[2]), open(sys.argv[3], "rb").read()
    out = {}
    for name in ["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]:
        t = transforms.Compose([transforms.Resize(256, M[name.upper()]), transforms.CenterCrop(224),
                                transforms.ToTensor(),
                                transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
        run = lambda: t(Image.open(io.BytesIO(blob)).convert("RGB"))
        run()
        times = []
        for _ in range(iters):
            s = time.perf_counter()
            run()
            times.append(time.perf_counter() - s)
        times.sort()
        out[name] = times[len(times) // 2] * 1000
    print(json.dumps(out))
    sys.exit(0)

iters, files = int(sys.argv[1]), sys.argv[2:]
blobs = [open(f, "rb").read() for f in files]
crop = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])


def rate(f):
    import io
    f(io)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        f(io)
        times.append(time.perf_counter() - t)
    times.sort()
    return len(blobs) / times[len(times) // 2]


decode = lambda io: [Image.open(io.BytesIO(b)).convert("RGB") for b in blobs]
pipeline = lambda io: [crop(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs]
print(json.dumps({"decode_per_s": rate(decode), "pipeline_per_s": rate(pipeline)}))

"""PIL peer for `zfvis bench --decode`: images/s of PIL decoding
(Image.open + convert("RGB")) and of decoding + torchvision's
Resize(256) + CenterCrop(224), on the same files, one thread.
usage: bench_decode.py ITERS FILE... -> JSON on stdout"""
import json, sys, time
from PIL import Image
from torchvision import transforms

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

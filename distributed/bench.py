#!/usr/bin/env python3
"""Images/s of distributed/train.py (torchrun, 1 and N processes) against
`zfvis train`, same recipe, same images, same run.

usage: bench.py --data DIR [--per-class 32] [--epochs 2]
                [--procs 2] [--zfvis target/release/zfvis]

The recipe is the bundled model's (ZFNet width 0.25, fc 0.125, modern
schedule, global batch 64). Each trainer runs `--epochs` epochs over the
first `--per-class` training images of every class; the figure is the last
epoch's images/s as the trainer reports it (zfvis decodes the images into
memory once before its first epoch; train.py decodes them in DataLoader
workers every epoch, as torchvision's ImageFolder does).
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def subset(src, dst, per_class):
    train = os.path.join(src, "train")
    for c in sorted(os.listdir(train)):
        os.makedirs(os.path.join(dst, "train", c))
        for f in sorted(os.listdir(os.path.join(train, c)))[:per_class]:
            os.symlink(os.path.abspath(os.path.join(train, c, f)), os.path.join(dst, "train", c, f))
    if os.path.exists(os.path.join(src, "classes.json")):
        os.symlink(os.path.abspath(os.path.join(src, "classes.json")), os.path.join(dst, "classes.json"))


def last_rate(log):
    rates = re.findall(r"epoch \d+: train loss .*\(([\d.]+) img/s\)", log)
    if not rates:
        sys.exit("no epoch line in the log:\n" + log[-2000:])
    return float(rates[-1])


def run(cmd, env=None):
    print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return last_rate(r.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True,
                   help="an ImageFolder: train/<class>/*, val/<class>/* (e.g. woofnette, see the README)")
    p.add_argument("--per-class", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--batch", type=int, default=64, help="global batch")
    p.add_argument("--zfvis", default=os.path.join(ROOT, "target", "release", "zfvis"))
    a = p.parse_args()
    cores = os.cpu_count() or 1
    recipe = ["--arch", "zfnet", "--width", "0.25", "--fc-width", "0.125", "--schedule", "modern",
              "--lr", "0.02", "--epochs", str(a.epochs), "--seed", "0"]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        subset(a.data, data, a.per_class)
        n = sum(len(fs) for _, _, fs in os.walk(os.path.join(data, "train")))
        rows = [("zfvis train", 1, cores, run([a.zfvis, "train", *recipe, "--data", data, "--out",
                                                os.path.join(tmp, "zfvis"), "--batch", str(a.batch),
                                                "--threads", str(cores)]))]
        for procs in sorted({1, a.procs}):
            threads = max(1, cores // procs)
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            rate = run([torchrun, "--standalone", "--nproc_per_node", str(procs),
                        os.path.join(HERE, "train.py"), *recipe, "--data", data,
                        "--out", os.path.join(tmp, f"torchrun{procs}"), "--batch", str(a.batch // procs),
                        "--threads", str(threads), "--workers", "2", "--device", "cpu"], env)
            rows.append((f"train.py, torchrun x{procs}", procs, threads, rate))
    base = rows[0][3]
    print(f"{n} training images, {a.epochs} epochs, global batch {a.batch}, {cores} cores; "
          f"images/s of the last epoch")
    print(f"{'trainer':<26} {'procs':>5} {'threads':>7} {'img/s':>8} {'vs zfvis':>8}")
    for name, procs, threads, rate in rows:
        print(f"{name:<26} {procs:>5} {threads:>7} {rate:>8.1f} {rate / base:>8.2f}")


if __name__ == "__main__":
    main()

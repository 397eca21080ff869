#!/usr/bin/python3
"""PyTorch reference for the fnas training-throughput benchmark (issue 4).

Prerequisite: Debian's PyTorch (`apt-get install -y python3-torch`), run with
/usr/bin/python3 (a pyenv/venv python on PATH usually has no torch).

Reads the plan JSON written by
    cargo run --release -p fnas-child --example throughput -- --plan-out plan.json --plan-only
builds the identical network (crates/fnas-child/src/net.rs, /work/notes/child-spec.md:
bias-free convs + BatchNorm, SE with biased 1x1 convs, identity / projection skips, 1x1
head conv + BN + ReLU, global average pool, linear classifier), checks that its trainable
parameter count equals the plan's, and trains it exactly like the fnas example: the first
--images Fashion-MNIST training images in order, one pass, batches of --batch, SGD with
momentum 0.9 (no dampening, no Nesterov, no weight decay), constant lr 0.05,
cross-entropy, the loss read back every step; one warm-up batch before the clock starts.

--procs P trains P independent networks at once in P processes (each --threads threads);
they wait at a barrier after their warm-up, and images_per_s is all their images over the
wall time from the barrier to the last one's end.

Prints one line: `torch images_per_s=... per_proc=... threads=.. procs=.. ...`.
"""

import argparse
import gzip
import json
import os
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--plan", required=True, help="plan JSON from the fnas example's --plan-out")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--mean", type=float, default=0.2860, help="as the fashion-mnist task")
    p.add_argument("--std", type=float, default=0.3530, help="as the fashion-mnist task")
    p.add_argument("--check-only", action="store_true", help="build, compare params, exit")
    return p.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    # Before torch starts its pools: OpenMP / BLAS threads of every process.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def conv_bn(cin, cout, k, stride, groups=1):
    """Bias-free kxk conv (padding k/2) followed by BatchNorm (`conv.*`, `bn.*`)."""
    m = nn.Module()
    m.conv = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False)
    m.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
    return m


def run_conv_bn(m, x):
    return m.bn(m.conv(x))


class SqueezeExcite(nn.Module):
    def __init__(self, channels, reduced):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x):
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(torch.relu(self.reduce(s))))


def op_kind(op):
    """serde form of LayerOp: "conv", "dw_sep", or {"mb_conv": {"expansion": e}}."""
    if isinstance(op, str):
        return op, None
    (name, body), = op.items()
    return name, body.get("expansion")


class Layer(nn.Module):
    """Same parts and order as net.rs `Layer`: expand+ReLU, conv+ReLU, dw+ReLU, SE, pw,
    project, residual."""

    def __init__(self, lp):
        super().__init__()
        kind, e = op_kind(lp["op"])
        cin, cout, k, s = lp["cin"], lp["cout"], lp["kernel"], lp["stride"]
        self.expand = self.conv = self.dw = self.pw = self.project = self.skip = None
        if kind == "conv":
            hidden = cout
            self.conv = conv_bn(cin, cout, k, s)
        elif kind == "dw_sep":
            hidden = cin
            self.dw = conv_bn(cin, cin, k, s, groups=cin)
            self.pw = conv_bn(cin, cout, 1, 1)
        elif kind == "mb_conv":
            hidden = cin * e
            self.expand = conv_bn(cin, hidden, 1, 1)
            self.dw = conv_bn(hidden, hidden, k, s, groups=hidden)
            self.project = conv_bn(hidden, cout, 1, 1)
        else:
            raise ValueError(f"unknown op {lp['op']!r}")
        se = lp.get("se")
        self.se = None
        if se is not None:
            assert se["channels"] == hidden, (se, hidden)
            self.se = SqueezeExcite(se["channels"], se["reduced"])
        if lp["skip"] == "project":
            self.skip = conv_bn(cin, cout, 1, s)
        self.identity = lp["skip"] == "identity"

    def forward(self, x):
        h = x
        for part in (self.expand, self.conv, self.dw):
            if part is not None:
                h = torch.relu(run_conv_bn(part, h))
        if self.se is not None:
            h = self.se(h)
        for part in (self.pw, self.project):
            if part is not None:
                h = run_conv_bn(part, h)
        if self.identity:
            return h + x
        if self.skip is not None:
            return h + run_conv_bn(self.skip, x)
        return h


class ChildNet(nn.Module):
    def __init__(self, plan):
        super().__init__()
        st, hd = plan["stem"], plan["head"]
        self.stem = conv_bn(st["cin"], st["cout"], st["kernel"], st["stride"])
        self.blocks = nn.ModuleList()
        for b in plan["blocks"]:
            blk = nn.Module()
            blk.layers = nn.ModuleList(Layer(lp) for lp in b["layers"])
            self.blocks.append(blk)
        self.head = conv_bn(hd["cin"], hd["cout"], 1, 1)
        self.classifier = nn.Linear(hd["cout"], plan["classes"], bias=True)

    def forward(self, x):
        h = torch.relu(run_conv_bn(self.stem, x))
        for blk in self.blocks:
            for layer in blk.layers:
                h = layer(h)
        h = torch.relu(run_conv_bn(self.head, h))
        return self.classifier(h.mean(dim=(2, 3)))


def read_idx(path):
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_data(args, res):
    def find(stem):
        for name in (f"{stem}-ubyte.gz", f"{stem}-ubyte"):
            p = os.path.join(args.data_dir, name)
            if os.path.exists(p):
                return p
        sys.exit(f"torch_reference: no {stem}-ubyte(.gz) in {args.data_dir}")

    images = read_idx(find("train-images-idx3"))[: args.images]
    labels = read_idx(find("train-labels-idx1"))[: args.images]
    assert images.shape[1:] == (res, res), images.shape
    x = (images.astype(np.float32) / 255.0 - np.float32(args.mean)) / np.float32(args.std)
    x = torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def build(doc):
    model = ChildNet(doc["plan"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return model, trainable


def train_child(doc, args, seed, barrier):
    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    model, _ = build(doc)
    model.train()
    x, y = load_data(args, doc["plan"]["resolution"])
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, dampening=0.0,
                          nesterov=False, weight_decay=0.0)
    loss_fn = nn.CrossEntropyLoss()
    b = args.batch
    steps = args.images // b

    def step(s):
        xb, yb = x[s * b:(s + 1) * b], y[s * b:(s + 1) * b]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        value = loss.item()
        loss.backward()
        opt.step()
        return value

    step(0)  # warm-up
    if barrier is not None:
        barrier.wait()
    start = time.monotonic()
    loss = float("nan")
    for s in range(steps):
        loss = step(s)
    end = time.monotonic()
    return steps * b, start, end, loss


def worker(doc, args, seed, barrier, queue):
    try:
        queue.put(train_child(doc, args, seed, barrier))
    except BaseException as e:  # report, do not hang the parent
        barrier.abort()
        queue.put(e)


def main(args):
    with open(args.plan) as f:
        doc = json.load(f)
    model, trainable = build(doc)
    print(f"params: plan={doc['params']} torch={trainable} "
          f"({'match' if trainable == doc['params'] else 'MISMATCH'})", file=sys.stderr)
    if trainable != doc["params"]:
        sys.exit("torch_reference: parameter count differs from the plan")
    if args.check_only:
        return
    if args.images < args.batch:
        sys.exit("torch_reference: --images is less than one batch")

    if args.procs == 1:
        runs = [train_child(doc, args, 0, None)]
    else:
        import multiprocessing as mp
        ctx = mp.get_context("spawn")
        barrier, queue = ctx.Barrier(args.procs), ctx.Queue()
        procs = [ctx.Process(target=worker, args=(doc, args, p, barrier, queue))
                 for p in range(args.procs)]
        for p in procs:
            p.start()
        runs = [queue.get() for _ in procs]
        for p in procs:
            p.join()
        for r in runs:
            if isinstance(r, BaseException):
                sys.exit(f"torch_reference: a child failed: {r!r}")
    images = sum(r[0] for r in runs)
    wall = max(max(r[2] for r in runs) - min(r[1] for r in runs), 1e-9)
    per_proc = sum(r[0] / max(r[2] - r[1], 1e-9) for r in runs) / len(runs)
    loss = sum(r[3] for r in runs) / len(runs)
    print(f"torch images_per_s={images / wall:.1f} per_proc={per_proc:.1f} "
          f"threads={args.threads} procs={args.procs} batch={args.batch} images={images} "
          f"seconds={wall:.2f} final_loss={loss:.3f} torch={torch.__version__}")


if __name__ == "__main__":
    main(ARGS)

"""Times the layers of examples/bench_layers.rs in PyTorch (1 thread, oneDNN):
`/usr/bin/python3 crates/fnas-kernels/examples/torch_layers.py [threads]`.

Forward is conv2d; backward_input and backward_weight are the two gradients of
conv2d taken through autograd (each alone, from a saved graph), bias=False. Each
figure is the fastest of ~0.25 s of calls, in milliseconds.
"""
import sys
import time

import torch
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
torch.set_num_threads(threads)

def layer(name, cin, cout, hw, k, s, count=1):
    return (name, cin, cout, hw, k, s, count, not name.startswith("stem"))

NETWORKS = [
    ("dense", [
        layer("stem 3x3 1->16 28", 1, 16, 28, 3, 1),
        layer("k7 16->16 28", 16, 16, 28, 7, 1),
        layer("k5 s2 16->24 28", 16, 24, 28, 5, 2),
        layer("k5 24->24 14 (x2)", 24, 24, 14, 5, 1, 2),
        layer("k3 s2 24->48 14", 24, 48, 14, 3, 2),
        layer("k5 48->80 7", 48, 80, 7, 5, 1),
        layer("k5 80->80 7", 80, 80, 7, 5, 1),
        layer("k7 s2 80->96 7", 80, 96, 7, 7, 2),
        layer("head 1x1 96->128 4", 96, 128, 4, 1, 1),
    ]),
    ("mbconv", [
        layer("1x1 24->144 28", 24, 144, 28, 1, 1),
        layer("1x1 144->24 28", 144, 24, 28, 1, 1),
        layer("1x1 40->240 14", 40, 240, 14, 1, 1),
        layer("1x1 240->48 14", 240, 48, 14, 1, 1),
        layer("1x1 96->576 7", 96, 576, 7, 1, 1),
        layer("k7 16->24 28", 16, 24, 28, 7, 1),
        layer("k7 24->24 28", 24, 24, 28, 7, 1),
    ]),
]

def best(f, budget=0.25):
    f()
    f()
    t_best = float("inf")
    start = time.perf_counter()
    rounds = 0
    while rounds < 5 or (time.perf_counter() - start < budget and rounds < 300):
        t = time.perf_counter()
        f()
        t_best = min(t_best, time.perf_counter() - t)
        rounds += 1
    return t_best

print(f"torch {torch.__version__}, {threads} thread(s)")
print(f"{'layer (batch 64)':<20} | {'fwd ms':>8} {'bwd_in':>8} {'bwd_w':>8} | {'train':>8}")
for net, layers in NETWORKS:
    total = 0.0
    for name, cin, cout, hw, k, s, count, need_dx in layers:
        x = torch.randn(64, cin, hw, hw)
        w = torch.randn(cout, cin, k, k)
        pad = k // 2
        with torch.no_grad():
            fwd = best(lambda: F.conv2d(x, w, None, s, pad))
        xg = x.clone().requires_grad_(True)
        wg = w.clone().requires_grad_(True)
        y = F.conv2d(xg, wg, None, s, pad)
        dy = torch.randn_like(y)
        bin_ = best(lambda: torch.autograd.grad(y, xg, dy, retain_graph=True)) if need_dx else 0.0
        bw = best(lambda: torch.autograd.grad(y, wg, dy, retain_graph=True))
        train = fwd + bin_ + bw
        total += train * count
        print(f"{name:<20} | {fwd*1e3:8.3f} {bin_*1e3:8.3f} {bw*1e3:8.3f} | {train*1e3:8.3f}")
    print(f"{'sum ' + net:<20} | {'':>8} {'':>8} {'':>8} | {total*1e3:8.3f}")

"""Prints a neighbour of an mnas-28 architecture: MUTATIONS decisions changed to another choice.

Usage: scripts/mutate_arch.py --seed S --mutations M "b1.op=... b5.layers=..."
The choices are those of `fnas space show mnas-28`; the decisions to change are drawn
without replacement with Python's seeded RNG, so a seed gives the same neighbour.
"""
import argparse
import random

CHOICES = {
    "op": ["conv", "dwsep", "mbconv3", "mbconv6"],
    "kernel": ["3", "5", "7"],
    "se": ["0", "0.25"],
    "skip": ["none", "identity"],
    "width": ["0.75", "1.0", "1.25"],
}
LAYERS = {"b1": ["1", "2"], "b5": ["1", "2"]}


def choices(key):
    block, field = key.split(".")
    if field == "layers":
        return LAYERS.get(block, ["1", "2", "3"])
    return CHOICES[field]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--mutations", type=int, default=1)
    p.add_argument("arch")
    a = p.parse_args()
    pairs = [kv.split("=", 1) for kv in a.arch.split()]
    rng = random.Random(a.seed)
    for i in rng.sample(range(len(pairs)), a.mutations):
        key, value = pairs[i]
        pairs[i][1] = rng.choice([c for c in choices(key) if c != value])
    print(" ".join(f"{k}={v}" for k, v in pairs))


if __name__ == "__main__":
    main()

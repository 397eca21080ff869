#!/usr/bin/env python3
"""Table of scripts/retrain_best.sh: per variant, the search's best proxy validation
accuracy, and the re-trained child's validation and t10k test accuracy, per seed and as a
median [min, max]."""
import json
import statistics
import sys


def med(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{statistics.median(xs):.4f} [{min(xs):.4f}, {max(xs):.4f}]"


def main():
    d, seeds, variants, task = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4]
    print(f"best child of each search (by proxy validation accuracy) re-trained with {task}, tested on t10k")
    print(f"{'variant':<14} {'search best val per seed':<27} {'re-trained val per seed':<27} {'test per seed':<27} {'test median [min, max]'}")
    for v in variants:
        sv, rv, rt = [], [], []
        for s in seeds:
            show = json.load(open(f"{d}/{v}-s{s}.show.json"))
            ev = [t["reward"] for t in show["trials"] if t.get("source") == "evaluated" and t.get("reward") is not None]
            sv.append(max(ev) if ev else None)
            try:
                r = json.load(open(f"{d}/retrain-{v}-s{s}.json"))
            except (OSError, ValueError):
                r = {}
            rv.append(r.get("val_accuracy"))
            rt.append(r.get("test_accuracy"))
        fmt = lambda xs: " ".join("-" if x is None else f"{x:.4f}" for x in xs)
        print(f"{v:<14} {fmt(sv):<27} {fmt(rv):<27} {fmt(rt):<27} {med(rt)}")


if __name__ == "__main__":
    main()

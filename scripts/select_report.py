#!/usr/bin/env python3
"""Headline ratios of fnas-select against regularized evolution from `fnas bench --json`
records: per column, the strategy's median cost over evolution's median cost (not
reached = budget + 1), for the top 0.1% and the top 1%, and the median over columns.
Usage: scripts/select_report.py RECORDS.json [MORE.json ...] [--strategy fnas-select]"""
import json, statistics, sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
strategy = "fnas-select"
if "--strategy" in sys.argv:
    strategy = sys.argv[sys.argv.index("--strategy") + 1]
    args = [a for a in args if a != strategy]
recs = [r for f in args for r in json.load(open(f))]
cols = []
for r in recs:
    if (r["benchmark"], r["dataset"]) not in cols:
        cols.append((r["benchmark"], r["dataset"]))
print(f"{'COLUMN':<28} {'SEEDS':>5} {'TOP0.1% RATIO':>14} {'TOP1% RATIO':>12}")
r01, r1 = [], []
for b, d in cols:
    def med(s, key):
        v = [(r[key] if r[key] is not None else r["budget"] + 1) for r in recs
             if r["benchmark"] == b and r["dataset"] == d and r["strategy"] == s]
        return statistics.median(v), len(v)
    (e01, n), (s01, _) = med("evolution", "cost_to_target"), med(strategy, "cost_to_target")
    (e1, _), (s1, _) = med("evolution", "cost_to_top1"), med(strategy, "cost_to_top1")
    r01.append(s01 / e01); r1.append(s1 / e1)
    print(f"{b + '/' + d:<28} {n:>5} {s01 / e01:>13.2f}x {s1 / e1:>11.2f}x")
print(f"{'median over columns':<28} {'':>5} {statistics.median(r01):>13.2f}x {statistics.median(r1):>11.2f}x")
print(f"{'worst column':<28} {'':>5} {max(r01):>13.2f}x {max(r1):>11.2f}x")

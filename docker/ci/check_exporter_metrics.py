#!/usr/bin/env python3
"""Checks a postgres_exporter /metrics page against the database, for scripts/docker-test.sh.

    check_exporter_metrics.py METRICS_FILE BEFORE_JSON_FILE AFTER_JSON_FILE

METRICS_FILE: the exporter's /metrics page (with sql/postgres_exporter.yml as its queries).
BEFORE_JSON_FILE, AFTER_JSON_FILE: what ingest_status() said just before and just after the
scrape, each one JSON object {"metric name": value, ...} for the events pipeline, where a name
may carry labels, e.g. "ecommerce_ingest_worker_up{state=running}"; null means NaN.
Each metric must be present, with pipeline="events", and lie between its two readings (equal
when nothing moved; lag_seconds and the last trigger's time move with the clock). The two
readings must have the same names (same state).
Prints one line per metric; exits 1 on any difference.
"""
import json
import math
import re
import sys

LINE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """(name, frozenset of labels without pipeline/server) -> value, for the events pipeline."""
    out = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or not m["name"].startswith("ecommerce_ingest"):
            continue
        labels = dict(LABEL.findall(m["labels"] or ""))
        if labels.pop("pipeline", None) != "events":
            continue
        labels.pop("server", None)
        out[(m["name"], frozenset(labels.items()))] = float(m["value"])
    return out


def key(spec):
    """'name{a=b,c=d}' -> (name, frozenset)."""
    name, _, rest = spec.partition("{")
    labels = dict(kv.split("=", 1) for kv in rest.rstrip("}").split(",") if kv)
    return name, frozenset(labels.items())


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        got = parse(f.read())
    with open(sys.argv[2], encoding="utf-8") as f:
        before = json.load(f)
    with open(sys.argv[3], encoding="utf-8") as f:
        after = json.load(f)
    if before.keys() != after.keys():
        print(f"the state changed during the scrape: {sorted(before.keys() ^ after.keys())}")
        return 1
    if not got:
        print("no ecommerce_ingest metric with pipeline=\"events\" on the page: is the queries file loaded?")
        return 1
    bad = 0
    for spec in sorted(before):
        a, b = before[spec], after[spec]
        expected = a if a == b else f"{a} .. {b}"
        k = key(spec)
        if k not in got:
            print(f"MISSING {spec} (database: {expected})")
            bad += 1
            continue
        value = got[k]
        if a is None or b is None:
            ok = a is None and b is None and math.isnan(value)
        else:
            lo, hi = min(float(a), float(b)), max(float(a), float(b))
            ok = lo - 1e-6 <= value <= hi + 1e-6
        print(f"{'ok     ' if ok else 'DIFFERS'} {spec} = {value} (database: {expected})")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

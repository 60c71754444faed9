#!/usr/bin/env python3
"""Checks a postgres_exporter /metrics page against the database, for scripts/docker-test.sh.

    check_exporter_metrics.py METRICS_FILE EXPECTED_JSON_FILE

METRICS_FILE: the exporter's /metrics page (with sql/postgres_exporter.yml as its queries).
EXPECTED_JSON_FILE: what the database said at the same moment (ingestion paused, so nothing
moves), one JSON object: {"metric name": value, ...} for the events pipeline, where a name may
carry labels, e.g. "ecommerce_ingest_worker_up{state=running}"; null means NaN.
Each expected metric must be present, with pipeline="events", and equal (floats within 1e-6).
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
        want = json.load(f)
    if not got:
        print("no ecommerce_ingest metric with pipeline=\"events\" on the page: is the queries file loaded?")
        return 1
    bad = 0
    for spec, expected in sorted(want.items()):
        k = key(spec)
        if k not in got:
            print(f"MISSING {spec} (expected {expected})")
            bad += 1
            continue
        value = got[k]
        if expected is None:
            ok = math.isnan(value)
        else:
            ok = math.isclose(value, float(expected), rel_tol=1e-9, abs_tol=1e-6)
        print(f"{'ok     ' if ok else 'DIFFERS'} {spec} = {value} (database: {expected})")
        bad += not ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

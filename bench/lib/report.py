#!/usr/bin/env python3
"""The report of bench/run: medians over the runs, as markdown tables and JSON.

Reads bench/run's raw files (tab-separated):
  --raw      run target metric seconds ops server-cpu-seconds other-cores services-cpu-seconds file
             (services: moto + PostgreSQL, - with --backend fs; file: oha's JSON for the load
             phases, the tag loader's for tag_put, or -)
  --mem      run target what kib              (what: rss_after_load, hwm_end)
  --clients  run registry client operation seconds note
prints the tables and writes --out (JSON) and the same name with .md (the tables).
"""

import argparse
import collections
import json
import statistics
import sys

TARGETS = ("dist", "berth")
# What each --backend pits against each other.
PAIRS = {
    "fs": "distribution on its filesystem driver against berth on filesystem + SQLite",
    "s3": ("distribution on its s3 driver (redirects disabled) against berth on PostgreSQL + S3, "
           "both on one moto S3 server (a bucket each, fresh every run; berth a fresh database "
           "every run)"),
}
LOADS = [("manifest_get", "manifest GET by tag"), ("manifest_head", "manifest HEAD by tag"),
         ("blob_head", "blob HEAD"), ("tags_list", "tags/list")]


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def main():
    p = argparse.ArgumentParser()
    for name in ("raw", "mem", "clients", "out", "stamp", "machine", "versions", "loadavg"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--backend", choices=sorted(PAIRS), default="fs")
    for name in ("runs", "blob-mib", "chunk-mib", "layers", "layer-kib", "tags", "load-secs",
                 "conns", "quick", "elapsed"):
        p.add_argument(f"--{name}", type=int, required=True)
    a = p.parse_args()

    # (target, metric) -> list of per-run records
    rec = collections.defaultdict(list)
    others = []
    for line in open(a.raw):
        run, target, metric, secs, ops, cpu, other, svc, path = line.rstrip("\n").split("\t")
        r = {"run": int(run), "seconds": float(secs), "ops": int(ops), "cpu": float(cpu),
             "other_cores": float(other)}
        if svc != "-":
            r["services_cpu"] = float(svc)
        if path != "-":
            with open(path) as f:
                detail = json.load(f)
            if metric in dict(LOADS):
                lat = detail["latencyPercentiles"]
                r["p50_ms"] = 1000 * lat["p50"]
                r["p99_ms"] = 1000 * lat["p99"]
                r["oha_summary"] = detail["summary"]
                r["status_codes"] = detail.get("statusCodeDistribution", {})
                r["errors"] = detail.get("errorDistribution", {})
            else:
                r.update(detail)
        rec[(target, metric)].append(r)
        others.append(r["other_cores"])
    mem = collections.defaultdict(list)
    for line in open(a.mem):
        run, target, what, kib = line.rstrip("\n").split("\t")
        mem[(target, what)].append(int(kib))
    cl = collections.defaultdict(list)
    notes = collections.defaultdict(list)
    for line in open(a.clients):
        run, registry, client, op, secs, note = line.rstrip("\n").split("\t")
        cl[(registry, client, op)].append(float(secs))
        if note:
            notes[(registry, client, op)].append(note)

    def med(target, metric, f):
        vals = [f(r) for r in rec.get((target, metric), [])]
        return statistics.median(vals) if vals else None

    gib = a.blob_mib / 1024
    big = f"{a.blob_mib // 1024} GiB" if a.blob_mib % 1024 == 0 else f"{a.blob_mib} MiB"
    rows = []  # (label, dist, berth, higher_is_better)

    def row(label, metric, f, higher):
        rows.append((label, med("dist", metric, f), med("berth", metric, f), higher))

    mibps = lambda r: a.blob_mib / r["seconds"]  # noqa: E731
    row(f"blob push, monolithic: POST + PUT of {big} (MiB/s)", "blob_push_mono", mibps, True)
    row(f"blob push, chunked: PATCH x {a.chunk_mib} MiB (MiB/s)", "blob_push_chunked", mibps, True)
    row("blob pull: GET (MiB/s)", "blob_pull", mibps, True)
    secs = lambda r: r["seconds"]  # noqa: E731
    row(f"skopeo push, {big} image (s)", "skopeo_push_big", secs, False)
    row(f"skopeo pull, {big} image (s)", "skopeo_pull_big", secs, False)
    row(f"skopeo push, {a.layers} x {a.layer_kib} KiB layers (s)", "skopeo_push_many", secs, False)
    row(f"skopeo pull, {a.layers} x {a.layer_kib} KiB layers (s)", "skopeo_pull_many", secs, False)
    row("skopeo push --all, two-platform index (s)", "skopeo_push_index", secs, False)
    row("skopeo pull --all, two-platform index (s)", "skopeo_pull_index", secs, False)
    rate = lambda r: r["ops"] / r["seconds"]  # noqa: E731
    row(f"tag PUTs, {a.tags} sequential on 1 connection (PUTs/s)", "tag_put", rate, True)
    for metric, label in LOADS:
        if metric == "tags_list":
            label = f"tags/list of {a.tags + 1} tags"
        row(f"{label}, {a.conns} connections (req/s)", metric, rate, True)
        row(f"{label}: p50 latency (ms)", metric, lambda r: r["p50_ms"], False)
        row(f"{label}: p99 latency (ms)", metric, lambda r: r["p99_ms"], False)
    # The registry's own CPU; with --backend s3 also that of moto + PostgreSQL meanwhile (the
    # other registry idles then, so it is the CPU the measured one made its backends spend).
    cpu_kinds = [("server CPU", "cpu")]
    if a.backend == "s3":
        cpu_kinds.append(("moto + PostgreSQL CPU", "services_cpu"))
    for who, k in cpu_kinds:
        per_gib = lambda r, k=k: r[k] / gib  # noqa: E731
        per_layer = lambda r, k=k: 1000 * r[k] / a.layers  # noqa: E731
        per_op = lambda r, k=k: 1e6 * r[k] / r["ops"]  # noqa: E731
        row(f"{who}: blob push, monolithic (s per GiB)", "blob_push_mono", per_gib, False)
        row(f"{who}: blob push, chunked (s per GiB)", "blob_push_chunked", per_gib, False)
        row(f"{who}: blob pull (s per GiB)", "blob_pull", per_gib, False)
        row(f"{who}: skopeo push, {big} image (s per GiB)", "skopeo_push_big", per_gib, False)
        row(f"{who}: skopeo push, {a.layers} layers (ms per layer)", "skopeo_push_many",
            per_layer, False)
        row(f"{who}: skopeo pull, {a.layers} layers (ms per layer)", "skopeo_pull_many",
            per_layer, False)
        row(f"{who}: tag PUT (µs per PUT)", "tag_put", per_op, False)
        for metric, label in LOADS:
            row(f"{who}: {label} (µs per request)", metric, per_op, False)
    for what, label in (("hwm_end", "peak RSS, VmHWM at the end of a run (MiB)"),
                        ("rss_after_load", "RSS after the load phases, VmRSS (MiB)")):
        d, b = (statistics.median(mem[(t, what)]) / 1024 if mem[(t, what)] else None for t in TARGETS)
        rows.append((label, d, b, False))

    head = (f"bench/run --backend {a.backend}{' --quick' if a.quick else ''}, {a.runs} run(s), "
            f"medians: {PAIRS[a.backend]}; {a.stamp}; "
            f"{a.machine}; {a.versions}. CPU of other processes during the measurements: "
            f"{min(others):.2f}-{max(others):.2f} cores (median {statistics.median(others):.2f}); "
            f"load average at the end: {a.loadavg}; took {a.elapsed} s.")
    lines = [head, "",
             "| metric | distribution | berth | berth/distribution |" if a.backend == "fs" else
             f"| metric | distribution {a.backend} | berth {a.backend} | berth/distribution |",
             "|---|---:|---:|---:|"]
    for label, d, b, higher in rows:
        ratio = f"{b / d:.2f}" if d and b is not None else "-"
        lines.append(f"| {label} | {fmt(d)} | {fmt(b)} | {ratio} |")
    lines += ["", "MiB/s, req/s and PUTs/s: higher is better; seconds, latency, CPU and RSS: lower "
              "is better.", "",
              f"Clients, the {a.layers} x {a.layer_kib} KiB image (s; pull into an empty store, "
              "push to a new repository of the same registry, nothing mounted):", "",
              "| operation | skopeo | berth client | berth/skopeo |", "|---|---:|---:|---:|"]
    names = {"dist": "distribution", "berth": "berth"}
    for registry in TARGETS:
        for op, word in (("pull", "pull from"), ("push", "push to")):
            s = cl.get((registry, "skopeo", op))
            b = cl.get((registry, "berth", op))
            sm = statistics.median(s) if s else None
            bm = statistics.median(b) if b else None
            ratio = f"{bm / sm:.2f}" if sm and bm is not None else "-"
            lines.append(f"| {word} {names[registry]} | {fmt(sm)} | {fmt(bm)} | {ratio} |")
    table = "\n".join(lines)
    print(table)

    result = {
        "date": a.stamp, "backend": a.backend, "pair": PAIRS[a.backend],
        "machine": a.machine, "versions": a.versions, "quick": bool(a.quick),
        "elapsed_seconds": a.elapsed, "loadavg_at_end": a.loadavg,
        "parameters": {"backend": a.backend, "runs": a.runs, "blob_mib": a.blob_mib, "chunk_mib": a.chunk_mib,
                       "layers": a.layers, "layer_kib": a.layer_kib, "tags": a.tags,
                       "load_seconds": a.load_secs, "connections": a.conns},
        "medians": [{"metric": label, "distribution": d, "berth": b,
                     "berth_over_distribution": (b / d if d and b is not None else None),
                     "higher_is_better": higher} for label, d, b, higher in rows],
        "measurements": {t: {m: rs for (tt, m), rs in rec.items() if tt == t} for t in TARGETS},
        "memory_kib": {t: {w: v for (tt, w), v in mem.items() if tt == t} for t in TARGETS},
        "clients_seconds": {f"{r}/{c}/{o}": v for (r, c, o), v in cl.items()},
        "client_notes": {f"{r}/{c}/{o}": v for (r, c, o), v in notes.items()},
        "table_markdown": table,
    }
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    with open(a.out.removesuffix(".json") + ".md", "w") as f:
        f.write(table + "\n")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Sequential tag PUTs and a tags/list check for bench/run. Standard library only.

  put-tags --base URL --repo R --manifest FILE --count N [--prefix t] --out FILE
      PUTs the manifest FILE (an OCI image manifest whose blobs the repository already holds)
      under the tags <prefix>0000 ... on one keep-alive connection, one after the other, and
      writes {count, seconds, puts_per_second, p50_ms, p99_ms, reconnects} as JSON. Any answer
      but 201 is an error (exit 1).
  check-tags --base URL --repo R --min N
      GETs /v2/R/tags/list once and checks that it lists at least N tags on one page (no Link
      header); prints the number.
"""

import argparse
import http.client
import json
import statistics
import sys
import time
import urllib.parse

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def connect(base):
    url = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=60)


def put_tags(args):
    body = open(args.manifest, "rb").read()
    headers = {"Content-Type": MANIFEST, "Content-Length": str(len(body))}
    conn = connect(args.base)
    reconnects = 0
    latencies = []
    started = time.perf_counter()
    for i in range(args.count):
        path = f"/v2/{args.repo}/manifests/{args.prefix}{i:04d}"
        t0 = time.perf_counter()
        conn.request("PUT", path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        latencies.append(time.perf_counter() - t0)
        if resp.status != 201:
            sys.exit(f"PUT {path}: HTTP {resp.status} {data[:300]!r}")
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = connect(args.base)
            reconnects += 1
    seconds = time.perf_counter() - started
    conn.close()
    latencies.sort()
    result = {"count": args.count, "seconds": seconds, "puts_per_second": args.count / seconds,
              "p50_ms": 1000 * statistics.median(latencies),
              "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
              "reconnects": reconnects}
    with open(args.out, "w") as f:
        json.dump(result, f)


def check_tags(args):
    conn = connect(args.base)
    conn.request("GET", f"/v2/{args.repo}/tags/list")
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        sys.exit(f"tags/list: HTTP {resp.status} {data[:300]!r}")
    tags = json.loads(data).get("tags") or []
    if resp.getheader("Link"):
        sys.exit(f"tags/list: paginated after {len(tags)} tags (Link: {resp.getheader('Link')})")
    if len(tags) < args.min:
        sys.exit(f"tags/list: {len(tags)} tags, expected at least {args.min}")
    print(len(tags))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("put-tags")
    s.add_argument("--base", required=True)
    s.add_argument("--repo", required=True)
    s.add_argument("--manifest", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--prefix", default="t")
    s.add_argument("--out", required=True)
    s = sub.add_parser("check-tags")
    s.add_argument("--base", required=True)
    s.add_argument("--repo", required=True)
    s.add_argument("--min", type=int, required=True)
    args = p.parse_args()
    {"put-tags": put_tags, "check-tags": check_tags}[args.cmd](args)


if __name__ == "__main__":
    main()

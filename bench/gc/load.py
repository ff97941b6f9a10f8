#!/usr/bin/env python3
"""HTTP load for bench/gc/run: populate a registry, push during a collection, check after.

Standard library only (http.client with keep-alive, one connection per thread). Every blob's
bytes are a function of (seed, name, index), so a run is reproducible and no two blobs of a
run share a digest. Subcommands (all take --base http://127.0.0.1:PORT):

  populate --blobs N --out FILE     N blobs: N//20 images of 1 config + 9 layers, tagged (the
                                    live half), and the rest uploaded but never referenced
                                    (the garbage); writes what it pushed as JSON
  push-loop --stop FILE --out FILE  pushes new tagged images (same shape) until FILE exists,
                                    then writes every attempt, with times and refusals
  check --populate FILE --loop FILE checks a sample of the populated images, every image the
                                    loop pushed, and every garbage blob (404); exit 1 on any
                                    failure
"""

import argparse
import hashlib
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.parse

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
LAYERS = 9
REPOS = 16


class Client:
    """One keep-alive connection; reconnects (and repeats the request once) when dropped."""

    def __init__(self, base):
        url = urllib.parse.urlsplit(base)
        self.host, self.port = url.hostname, url.port
        self.conn = None
        self.requests = 0

    def request(self, method, path, body=None, headers=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                self.requests += 1
                if resp.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, resp, data
            except (http.client.HTTPException, ConnectionError, OSError):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise


def blob_bytes(seed, name, i):
    """1-4 KiB of deterministic noise, distinct for every (seed, name, i)."""
    rng = random.Random(f"{seed}/{name}/{i}")
    return rng.randbytes(rng.randint(1024, 4096))


def config_bytes(seed, name, i):
    rng = random.Random(f"{seed}/{name}/config/{i}")
    pad = rng.randbytes(rng.randint(512, 2048)).hex()
    return json.dumps({"architecture": "amd64", "os": "linux",
                       "rootfs": {"type": "layers", "diff_ids": []},
                       "config": {"Labels": {"bench": f"{seed}/{name}/{i}", "pad": pad}}},
                      separators=(",", ":")).encode()


def digest_of(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client, repo, data):
    digest = digest_of(data)
    status, _, body = client.request(
        "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}", body=data,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
    if status != 201:
        raise RuntimeError(f"blob upload {repo}@{digest}: HTTP {status} {body[:300]!r}")
    return digest


def manifest_bytes(config, layers):
    return json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": LAYER_TYPE, "digest": d, "size": s} for d, s in layers],
    }, separators=(",", ":")).encode()


def put_manifest(client, repo, tag, body):
    """Returns (status, error code or None)."""
    status, _, data = client.request(
        "PUT", f"/v2/{repo}/manifests/{tag}", body=body,
        headers={"Content-Type": MANIFEST_TYPE, "Content-Length": str(len(body))})
    if status == 201:
        return status, None
    try:
        code = json.loads(data)["errors"][0]["code"]
    except Exception:
        code = data[:200].decode(errors="replace")
    return status, code


def image_blobs(seed, name, k):
    config = config_bytes(seed, name, k)
    layers = [blob_bytes(seed, f"{name}/layer", k * LAYERS + j) for j in range(LAYERS)]
    return config, layers


def push_image_blobs(client, repo, config, layers):
    c = (push_blob(client, repo, config), len(config))
    ls = [(push_blob(client, repo, data), len(data)) for data in layers]
    return c, ls


def run_threads(n, target):
    errors = []

    def wrap(t):
        try:
            target(t)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(f"thread {t}: {e!r}")

    threads = [threading.Thread(target=wrap, args=(t,)) for t in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        for e in errors:
            print(e, file=sys.stderr)
        sys.exit(1)


def populate(args):
    images = args.blobs // (2 * (LAYERS + 1))  # half the blobs, in images of 10
    garbage = args.blobs - images * (LAYERS + 1)
    # Interleave the work: every thread does images and garbage uploads, in blob proportion.
    work = [("image", k) for k in range(images)] + [("garbage", g) for g in range(garbage)]
    random.Random(args.seed).shuffle(work)
    out_images = [None] * images
    out_garbage = [None] * garbage
    clients = [Client(args.base) for _ in range(args.threads)]

    def worker(t):
        client = clients[t]
        for kind, i in work[t::args.threads]:
            repo = f"gcbench/r{i % REPOS:02d}"
            if kind == "garbage":
                out_garbage[i] = {"repo": repo,
                                  "digest": push_blob(client, repo, blob_bytes(args.seed, "garbage", i))}
                continue
            config, layers = image_blobs(args.seed, "image", i)
            c, ls = push_image_blobs(client, repo, config, layers)
            body = manifest_bytes(c, ls)
            status, code = put_manifest(client, repo, f"t{i}", body)
            if status != 201:
                raise RuntimeError(f"manifest {repo}:t{i}: HTTP {status} {code}")
            out_images[i] = {"repo": repo, "tag": f"t{i}", "manifest": digest_of(body),
                             "blobs": [list(c)] + [list(x) for x in ls]}

    started = time.monotonic()
    run_threads(args.threads, worker)
    seconds = time.monotonic() - started
    result = {"seconds": seconds, "threads": args.threads, "images": out_images,
              "garbage": out_garbage, "requests": sum(c.requests for c in clients),
              "blobs": images * (LAYERS + 1) + garbage}
    with open(args.out, "w") as f:
        json.dump(result, f)
    print(f"populated {images} images ({images * (LAYERS + 1)} blobs) and {garbage} garbage blobs "
          f"in {seconds:.1f} s ({result['requests']} requests, "
          f"{result['requests'] / seconds:.0f}/s, {args.threads} threads)", file=sys.stderr)


def push_loop(args):
    """New images, until the stop file appears; a refused manifest PUT is retried the way a
    client would: upload the blobs again, then PUT again (at most --retries times)."""
    records = [[] for _ in range(args.threads)]
    clients = [Client(args.base) for _ in range(args.threads)]

    def worker(t):
        client = clients[t]
        repo = f"gcbench/during{t}"
        k = 0
        while not os.path.exists(args.stop):
            config, layers = image_blobs(args.seed, f"during{t}", k)
            rec = {"repo": repo, "tag": f"t{k}", "start": time.time(), "refusals": [], "ok": False}
            for _ in range(1 + args.retries):
                c, ls = push_image_blobs(client, repo, config, layers)
                body = manifest_bytes(c, ls)
                put_at = time.time()
                status, code = put_manifest(client, repo, rec["tag"], body)
                if status == 201:
                    rec.update(ok=True, manifest=digest_of(body),
                               blobs=[list(c)] + [list(x) for x in ls])
                    break
                rec["refusals"].append({"at": put_at, "status": status, "code": code})
            rec["end"] = time.time()
            records[t].append(rec)
            k += 1

    run_threads(args.threads, worker)
    flat = [r for rs in records for r in rs]
    with open(args.out, "w") as f:
        json.dump({"threads": args.threads, "images": flat}, f)
    print(f"push loop: {sum(r['ok'] for r in flat)} images pushed, "
          f"{sum(len(r['refusals']) for r in flat)} manifest PUTs refused, "
          f"{sum(not r['ok'] for r in flat)} images given up", file=sys.stderr)


def check(args):
    with open(args.populate) as f:
        pop = json.load(f)
    with open(args.loop) as f:
        loop = json.load(f)
    sample = random.Random(args.seed).sample(pop["images"], min(args.sample, len(pop["images"])))
    during = [r for r in loop["images"] if r["ok"]]
    images = [(img, "populated") for img in sample] + [(img, "during GC") for img in during]
    garbage = pop["garbage"]
    failures = []
    lock = threading.Lock()
    counts = {"manifests": 0, "blobs": 0, "garbage": 0}

    def fail(msg):
        with lock:
            failures.append(msg)

    def worker(t):
        client = Client(args.base)
        for img, origin in images[t::args.threads]:
            status, resp, body = client.request(
                "GET", f"/v2/{img['repo']}/manifests/{img['tag']}", headers={"Accept": MANIFEST_TYPE})
            if status != 200 or digest_of(body) != img["manifest"]:
                fail(f"{origin} image {img['repo']}:{img['tag']}: manifest GET {status}, "
                     f"digest {digest_of(body)}, pushed {img['manifest']}")
                continue
            with lock:
                counts["manifests"] += 1
            for digest, size in img["blobs"]:
                status, _, body = client.request("GET", f"/v2/{img['repo']}/blobs/{digest}")
                if status != 200 or digest_of(body) != digest or len(body) != size:
                    fail(f"{origin} image {img['repo']}:{img['tag']}: blob {digest} GET {status}, "
                         f"{len(body)} bytes hashing to {digest_of(body)}")
                else:
                    with lock:
                        counts["blobs"] += 1
        for g in garbage[t::args.threads]:
            status, _, _ = client.request("HEAD", f"/v2/{g['repo']}/blobs/{g['digest']}")
            if status != 404:
                fail(f"garbage blob {g['repo']}@{g['digest']}: HEAD {status}, not 404")
            else:
                with lock:
                    counts["garbage"] += 1

    run_threads(args.threads, worker)
    # On the filesystem, the garbage's objects themselves: blobs/sha256/<xx>/<hex>-<session>.
    leftover = None
    if args.fs_root:
        names = set()
        root = os.path.join(args.fs_root, "blobs", "sha256")
        for sub in os.listdir(root) if os.path.isdir(root) else []:
            names.update(n.split("-")[0] for n in os.listdir(os.path.join(root, sub)))
        leftover = sum(g["digest"].removeprefix("sha256:") in names for g in garbage)
        if leftover:
            fail(f"{leftover} garbage blobs still have an object under {root}")
    result = {"ok": not failures, "images_checked": len(images), "populated_sampled": len(sample),
              "pushed_during_gc_checked": len(during), "manifests_ok": counts["manifests"],
              "blobs_ok": counts["blobs"], "garbage_checked": len(garbage),
              "garbage_404": counts["garbage"], "garbage_objects_left": leftover,
              "failures": failures[:20], "failure_count": len(failures)}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"check: {counts['manifests']}/{len(images)} manifests and {counts['blobs']} blobs pull "
          f"with the right digest ({len(sample)} populated images sampled, {len(during)} pushed "
          f"during GC); {counts['garbage']}/{len(garbage)} garbage blobs 404"
          + (f"; {leftover} garbage objects left on disk" if leftover is not None else "")
          + (f"; {len(failures)} FAILURES, first: {failures[0]}" if failures else ""), file=sys.stderr)
    sys.exit(0 if not failures else 1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("populate", "push-loop", "check"):
        s = sub.add_parser(name)
        s.add_argument("--base", required=True)
        s.add_argument("--seed", default="berth-gc-bench")
        s.add_argument("--threads", type=int, default=4)
        s.add_argument("--out", required=True)
    sub.choices["populate"].add_argument("--blobs", type=int, required=True)
    sub.choices["push-loop"].add_argument("--stop", required=True)
    sub.choices["push-loop"].add_argument("--retries", type=int, default=3)
    sub.choices["check"].add_argument("--populate", required=True)
    sub.choices["check"].add_argument("--loop", required=True)
    sub.choices["check"].add_argument("--sample", type=int, default=200)
    sub.choices["check"].add_argument("--fs-root", default="")
    args = p.parse_args()
    {"populate": populate, "push-loop": push_loop, "check": check}[args.cmd](args)


if __name__ == "__main__":
    main()

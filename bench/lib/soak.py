#!/usr/bin/env python3
"""The load, the sampler and the report of bench/soak. Standard library only.

  soak.py --base http://127.0.0.1:PORT --pid PID --duration S --out-json F --out-md F
          [--workers N] [--user U --password P --admin-password P | --gc-command CMD...]

Every worker owns two repositories (soak/w<i>/app and soak/w<i>/mirror) and goes round a
weighted mix of operations on one keep-alive connection, so that no worker can make another's
answer change: pushes (monolithic in one request, POST + PUT, chunked PATCHes), pulls (with and
without Range), tags/list and _catalog with pagination, manifest and tag deletes, blob deletes,
cross-repository mounts, referrers, an index, cancelled uploads, health and metrics, and
deliberate bad requests, each with the status (and OCI error code) it must get. Content comes
from a finite pool per worker (6 layers, 4 tags x 4 generations of configs), so the store
stays bounded; a GC thread collects what the deletes leave. Checks: every status, every
pushed digest, the bytes of every pull and range, the tag lists.

One outcome is expected and counted on its own, not as an error: a manifest PUT refused with
MANIFEST_BLOB_UNKNOWN while a garbage collection ran since its blobs were pushed (README:
"A push racing it either keeps its blob or gets MANIFEST_BLOB_UNKNOWN and pushes the blob
again"), for an index too when a child manifest it skipped pushing (HEAD said it was there)
was collected. The worker then pushes again and repeats the PUT. What a worker pushes again,
blob or manifest, is dated again, so the grace period covers it.
"""

import argparse
import base64
import hashlib
import http.client
import json
import math
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter, defaultdict

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
ARTIFACT_TYPES = ("application/vnd.berth.soak.signature.v1", "application/vnd.berth.soak.sbom.v1")
LAYER_SIZES = (2 << 10, 16 << 10, 128 << 10, 512 << 10, 1 << 20, 4 << 20)
SLOTS = 4  # tags t0..t3 per worker
GENERATIONS = 4  # configs per tag, cycled: a finite set of manifests
MAX_MANIFEST_BYTES = 4 << 20  # the server's default max_manifest_bytes


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def now():
    return time.monotonic()


class Blob:
    __slots__ = ("data", "digest", "media_type")

    def __init__(self, data, media_type=OCI_LAYER):
        self.data = data
        self.digest = sha256(data)
        self.media_type = media_type

    def descriptor(self):
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


class Manifest:
    __slots__ = ("body", "digest", "media_type", "blobs", "children")

    def __init__(self, doc, media_type, blobs=(), children=()):
        self.body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        self.digest = sha256(self.body)
        self.media_type = media_type
        self.blobs = list(blobs)
        self.children = list(children)

    def descriptor(self, **extra):
        d = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.body)}
        d.update(extra)
        return d


def image_manifest(config, layers, subject=None, artifact_type=None, annotations=None):
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config.descriptor(),
           "layers": [layer.descriptor() for layer in layers]}
    if subject is not None:
        doc["subject"] = subject.descriptor()
    if artifact_type:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    return Manifest(doc, OCI_MANIFEST, [config, *layers])


class Pool:
    """A worker's finite content: layers, and the images built from them."""

    def __init__(self, worker):
        self.worker = worker
        self.layers = [Blob(random.Random(f"soak/{worker}/layer/{i}").randbytes(size))
                       for i, size in enumerate(LAYER_SIZES)]
        self.empty = Blob(EMPTY_BLOB, OCI_EMPTY)
        self._images = {}

    def config(self, label, os_="linux", arch="amd64"):
        doc = {"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": []},
               "config": {"Labels": {"soak": f"{self.worker}/{label}"}}}
        return Blob(json.dumps(doc, separators=(",", ":")).encode(), OCI_CONFIG)

    def image(self, slot, gen):
        key = (slot, gen)
        if key not in self._images:
            rng = random.Random(f"soak/{self.worker}/image/{slot}/{gen}")
            layers = rng.sample(self.layers, rng.randint(1, 3))
            self._images[key] = image_manifest(self.config(f"t{slot}/g{gen}"), layers)
        return self._images[key]

    def referrer(self, subject, variant):
        sig = Blob(hashlib.sha256(f"{subject.digest}/{variant}".encode()).digest() * 8)
        return image_manifest(self.empty, [sig], subject=subject,
                              artifact_type=ARTIFACT_TYPES[variant % len(ARTIFACT_TYPES)],
                              annotations={"org.opencontainers.image.created": "2026-01-01T00:00:00Z"})

    def index(self, variant):
        children = [image_manifest(self.config(f"multi/{variant}/{arch}", arch=arch), [self.layers[i]])
                    for i, arch in ((0, "amd64"), (1, "arm64"))]
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX,
               "manifests": [c.descriptor(platform={"os": "linux", "architecture": arch})
                             for c, arch in zip(children, ("amd64", "arm64"))]}
        return Manifest(doc, OCI_INDEX, children=children)


class GcClock:
    """When garbage collections ran, to tell a documented race from an error."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running_since = None
        self.runs = []  # (start, end)

    def start(self):
        with self.lock:
            self.running_since = now()

    def end(self):
        with self.lock:
            self.runs.append((self.running_since, now()))
            self.running_since = None

    def overlapped(self, t0, t1):
        with self.lock:
            if self.running_since is not None and self.running_since <= t1:
                return True
            return any(s <= t1 and e >= t0 for s, e in self.runs[-4:])


class Stats:
    def __init__(self):
        self.latency = defaultdict(list)  # label -> seconds
        self.errors = Counter()  # kind -> count
        self.examples = []  # first errors, in words
        self.bad = defaultdict(lambda: [0, 0])  # kind -> [sent, as expected]
        self.bad_expected = {}  # kind -> "400 NAME_INVALID"
        self.races = Counter()
        # Kept-alive connections the server closed after an answer that did not say
        # `Connection: close`, by the request that answer was for.
        self.silent_closes = Counter()
        self.requests = 0

    def error(self, kind, detail):
        self.errors[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{time.strftime('%H:%M:%S')} {kind}: {detail}")

    def merge(self, other):
        for k, v in other.latency.items():
            self.latency[k].extend(v)
        self.errors.update(other.errors)
        self.examples.extend(other.examples[: max(0, 40 - len(self.examples))])
        for k, (s, ok) in other.bad.items():
            self.bad[k][0] += s
            self.bad[k][1] += ok
        self.bad_expected.update(other.bad_expected)
        self.races.update(other.races)
        self.silent_closes.update(other.silent_closes)
        self.requests += other.requests


class Failed(Exception):
    """The operation cannot go on: its error is recorded already."""


def error_code(data):
    try:
        return json.loads(data)["errors"][0]["code"]
    except Exception:
        return None


class Client:
    """One keep-alive connection, with a Bearer token (auth on) that it renews."""

    def __init__(self, args, stats, scopes=()):
        url = urllib.parse.urlsplit(args.base)
        self.host, self.port = url.hostname, url.port
        self.args = args
        self.stats = stats
        self.conn = None
        self.previous = None  # the last request answered on this connection
        # Whether that answer refused a request that had a body: the server may then close
        # the connection (it did not read the body) without saying so.
        self.previous_refused_body = False
        self.scopes = list(scopes)
        self.token = None
        self.token_at = 0.0

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.previous = None
        self.previous_refused_body = False

    def closed_by_server(self, wait=0.0):
        """Whether the server has closed the kept-alive connection (EOF waiting on it, or
        arriving within `wait` seconds)."""
        sock = self.conn.sock if self.conn is not None else None
        if sock is None:
            return False
        try:
            if wait and not select.select([sock], [], [], wait)[0]:
                return False
            sock.setblocking(False)
            try:
                return sock.recv(1, socket.MSG_PEEK) == b""
            finally:
                sock.setblocking(True)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def silently_closed(self):
        self.stats.silent_closes[self.previous or "?"] += 1
        self.close()

    def auth_header(self):
        if not self.args.user:
            return {}
        if self.token is None or now() - self.token_at > self.args.token_refresh:
            query = urllib.parse.urlencode([("service", "berth")] + [("scope", s) for s in self.scopes])
            basic = base64.b64encode(f"{self.args.user}:{self.args.password}".encode()).decode()
            _, _, data = self.call("token GET", "GET", f"/auth/token?{query}",
                                   headers={"Authorization": f"Basic {basic}"}, auth=False)
            self.token = json.loads(data)["token"]
            self.token_at = now()
        return {"Authorization": f"Bearer {self.token}"}

    def send(self, method, path, body=None, headers=None, chunked=False, label=None):
        """(status, headers in lower case, body, seconds); raises on a transport error.

        A kept-alive connection that the server closed after its previous answer, although
        that answer did not say `Connection: close`, is counted (by that previous request) and
        replaced: found closed before sending, or failing as closed while sending (the request
        never reached a handler, so sending it again on a new connection is safe)."""
        if self.conn is not None and self.closed_by_server():
            self.silently_closed()
        for attempt in (1, 2):
            reused = self.conn is not None
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            t0 = time.perf_counter()
            try:
                self.conn.request(method, path, body=body, headers=headers or {},
                                  encode_chunked=chunked)
            except (BrokenPipeError, ConnectionResetError):
                if reused and attempt == 1:
                    self.silently_closed()
                    continue
                self.close()
                raise
            except (http.client.HTTPException, OSError):
                self.close()
                raise
            try:
                resp = self.conn.getresponse()
                data = resp.read()
            except http.client.RemoteDisconnected:
                if reused and attempt == 1 and (method in ("GET", "HEAD") or self.previous_refused_body):
                    self.silently_closed()
                    continue
                self.close()
                raise
            except (http.client.HTTPException, OSError):
                self.close()
                raise
            break
        seconds = time.perf_counter() - t0
        self.stats.requests += 1
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        self.previous = f"{label or method} -> {resp.status}"
        self.previous_refused_body = resp.status >= 400 and bool(body)
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        elif self.previous_refused_body and self.closed_by_server(wait=0.05):
            # Refused before its body was read: the server closes the connection right after
            # answering; wait a moment for that rather than race it with the next request.
            self.silently_closed()
        return resp.status, hdrs, data, seconds

    def call(self, label, method, path, body=None, headers=None, want=(200,), auth=True,
             chunked=False):
        """A request that must get a status in `want`; anything else is an error."""
        h = dict(self.auth_header() if auth else {})
        h.update(headers or {})
        try:
            status, hdrs, data, seconds = self.send(method, path, body, h, chunked, label)
        except (http.client.HTTPException, OSError) as e:
            self.stats.error(f"{label}: {type(e).__name__}", f"{method} {path}: {e}")
            raise Failed() from e
        self.stats.latency[label].append(seconds)
        if status not in want:
            code = error_code(data) or ""
            self.stats.error(f"{label}: HTTP {status} {code}".rstrip(),
                             f"{method} {path[:160]} wanted {want}: {data[:200]!r}")
            raise Failed()
        return status, hdrs, data

    def check(self, ok, kind, detail):
        if not ok:
            self.stats.error(kind, detail)
            raise Failed()


def location_path(loc):
    """The path and query of a Location header (absolute or not)."""
    u = urllib.parse.urlsplit(loc)
    return u.path + (f"?{u.query}" if u.query else "")


def with_query(path, **params):
    sep = "&" if "?" in path else "?"
    return path + sep + urllib.parse.urlencode(params)


class Worker(threading.Thread):
    def __init__(self, index, args, gc, stop):
        super().__init__(name=f"worker-{index}", daemon=True)
        self.index = index
        self.args = args
        self.gc = gc
        self.stop = stop
        self.stats = Stats()
        self.rng = random.Random(f"soak/worker/{index}/{args.seed}")
        self.pool = Pool(index)
        self.app = f"soak/w{index}/app"
        self.mirror = f"soak/w{index}/mirror"
        self.other = f"soak/w{(index + 1) % args.workers}/app"
        scopes = [f"repository:{r}:pull,push,delete" for r in (self.app, self.mirror)]
        self.client = Client(args, self.stats, scopes)
        self.tags = [None] * SLOTS  # what each tag t<slot> of app names now
        self.gens = [0] * SLOTS
        self.mirror_tags = [None] * SLOTS
        self.index_manifest = None
        self.index_variant = 0
        self.ops = [
            (30, self.op_pull), (12, self.op_push), (8, self.op_tags), (3, self.op_catalog),
            (4, self.op_delete_manifest), (3, self.op_delete_tag), (5, self.op_mount),
            (6, self.op_referrers), (4, self.op_index), (5, self.op_blob_delete),
            (3, self.op_upload_cancel), (3, self.op_misc), (10, self.op_bad),
        ]
        self.weights = [w for w, _ in self.ops]

    def run(self):
        while not self.stop.is_set():
            op = self.rng.choices(self.ops, weights=self.weights)[0][1]
            try:
                op()
            except Failed:
                pass
            except Exception as e:  # a bug of this script, or an answer it could not read
                self.stats.error(f"{op.__name__}: {type(e).__name__}", repr(e)[:300])
        self.client.close()

    # --- building blocks ----------------------------------------------------------------
    def push_blob(self, repo, blob, may_skip):
        c = self.client
        base = f"/v2/{repo}/blobs"
        if may_skip:
            status, _, _ = c.call("blob HEAD", "HEAD", f"{base}/{blob.digest}", want=(200, 404))
            if status == 200:
                return
        size = len(blob.data)
        how = self.rng.random()
        if size <= (1 << 20) and how < 0.35:
            _, h, _ = c.call("blob push, one request (POST ?digest=)", "POST",
                             with_query(f"{base}/uploads/", digest=blob.digest), body=blob.data,
                             headers={"Content-Type": "application/octet-stream"}, want=(201,))
        elif size < (16 << 10) or how < 0.6:
            _, h, _ = c.call("upload POST", "POST", f"{base}/uploads/",
                             headers={"Content-Length": "0"}, want=(202,))
            _, h, _ = c.call("blob push, monolithic PUT", "PUT",
                             with_query(location_path(h["location"]), digest=blob.digest),
                             body=blob.data, headers={"Content-Type": "application/octet-stream"},
                             want=(201,))
        else:
            _, h, _ = c.call("upload POST", "POST", f"{base}/uploads/",
                             headers={"Content-Length": "0"}, want=(202,))
            loc = location_path(h["location"])
            parts = self.rng.randint(2, 4)
            cuts = sorted(self.rng.sample(range(1, size), parts - 1))
            bounds = list(zip([0, *cuts], [*cuts, size]))
            last_in_put = self.rng.random() < 0.5
            patches = bounds[:-1] if last_in_put else bounds
            for a, b in patches:
                _, h, _ = c.call("upload PATCH (chunk)", "PATCH", loc, body=blob.data[a:b],
                                 headers={"Content-Type": "application/octet-stream",
                                          "Content-Range": f"{a}-{b - 1}"}, want=(202,))
                c.check(h.get("range") == f"0-{b - 1}", "upload PATCH: wrong Range",
                        f"{h.get('range')} after {a}-{b - 1}")
                loc = location_path(h["location"])
            if last_in_put:
                a, b = bounds[-1]
                _, h, _ = c.call("upload PUT (last chunk)", "PUT", with_query(loc, digest=blob.digest),
                                 body=blob.data[a:b],
                                 headers={"Content-Type": "application/octet-stream",
                                          "Content-Range": f"{a}-{b - 1}"}, want=(201,))
            else:
                _, h, _ = c.call("upload PUT (no body)", "PUT", with_query(loc, digest=blob.digest),
                                 headers={"Content-Length": "0"}, want=(201,))
        c.check(h.get("docker-content-digest") == blob.digest, "blob push: wrong digest",
                f"{h.get('docker-content-digest')} for {blob.digest}")

    def put_manifest(self, repo, ref, manifest, prepare):
        """PUT, after `prepare()` pushed what it needs; a MANIFEST_BLOB_UNKNOWN while a GC ran
        since then is the documented race: push again and repeat (at most 3 times)."""
        for attempt in range(4):
            t0 = now()
            prepare(may_skip=attempt == 0)
            status, h, data = self.client.call(
                "manifest PUT", "PUT", f"/v2/{repo}/manifests/{ref}", body=manifest.body,
                headers={"Content-Type": manifest.media_type}, want=(201, 400))
            if status == 201:
                self.client.check(h.get("docker-content-digest") == manifest.digest,
                                  "manifest PUT: wrong digest", f"{h.get('docker-content-digest')}")
                return h
            code = error_code(data)
            if (status, code) == (400, "MANIFEST_BLOB_UNKNOWN") and self.gc.overlapped(t0, now()) \
                    and attempt < 3:
                self.stats.races["manifest PUT: 400 MANIFEST_BLOB_UNKNOWN while GC ran"] += 1
                continue
            self.stats.error(f"manifest PUT: HTTP {status} {code}", f"{repo}:{ref}: {data[:200]!r}")
            raise Failed()
        raise Failed()

    def push_image(self, repo, img, ref):
        def prepare(may_skip):
            skip = may_skip and self.rng.random() < 0.5
            for b in img.blobs:
                self.push_blob(repo, b, skip)
        return self.put_manifest(repo, ref, img, prepare)

    def get_blob(self, repo, blob):
        c = self.client
        path = f"/v2/{repo}/blobs/{blob.digest}"
        size = len(blob.data)
        if self.rng.random() < 0.35 and size > 1:
            start = self.rng.randrange(size)
            end = self.rng.randrange(start, size)
            form = self.rng.random()
            if form < 0.6:
                spec, want = f"{start}-{end}", (start, end)
            elif form < 0.8:
                spec, want = f"{start}-", (start, size - 1)
            else:
                n = end - start + 1
                spec, want = f"-{n}", (size - n, size - 1)
            _, h, data = c.call("blob GET Range", "GET", path, headers={"Range": f"bytes={spec}"},
                                want=(206,))
            c.check(h.get("content-range") == f"bytes {want[0]}-{want[1]}/{size}",
                    "blob GET Range: wrong Content-Range", f"{h.get('content-range')} for {spec}")
            c.check(data == blob.data[want[0]:want[1] + 1], "blob GET Range: wrong bytes", spec)
        else:
            _, _, data = c.call("blob GET", "GET", path, want=(200,))
            c.check(sha256(data) == blob.digest, "blob GET: wrong bytes", blob.digest)

    # --- operations -----------------------------------------------------------------------
    def op_push(self):
        slot = self.rng.randrange(SLOTS)
        self.gens[slot] = (self.gens[slot] + 1) % GENERATIONS
        img = self.pool.image(slot, self.gens[slot])
        self.push_image(self.app, img, f"t{slot}")
        self.tags[slot] = img

    def some_slot(self, tags):
        live = [i for i, m in enumerate(tags) if m is not None]
        return self.rng.choice(live) if live else None

    def op_pull(self):
        slot = self.some_slot(self.tags)
        if slot is None:
            return self.op_push()
        img, c = self.tags[slot], self.client
        path = f"/v2/{self.app}/manifests"
        _, h, data = c.call("manifest GET", "GET", f"{path}/t{slot}",
                            headers={"Accept": f"{OCI_MANIFEST}, {OCI_INDEX}"})
        c.check(data == img.body and h.get("docker-content-digest") == img.digest,
                "manifest GET: wrong manifest", f"t{slot}: {h.get('docker-content-digest')}")
        _, h, _ = c.call("manifest HEAD", "HEAD", f"{path}/{img.digest}",
                         headers={"Accept": OCI_MANIFEST})
        c.check(h.get("content-length") == str(len(img.body)), "manifest HEAD: wrong length",
                h.get("content-length"))
        for b in img.blobs:
            if self.rng.random() < 0.2:
                _, h, _ = c.call("blob HEAD", "HEAD", f"/v2/{self.app}/blobs/{b.digest}")
                c.check(h.get("content-length") == str(len(b.data)), "blob HEAD: wrong length",
                        h.get("content-length"))
            else:
                self.get_blob(self.app, b)

    def op_tags(self):
        c = self.client
        want = sorted([f"t{i}" for i, m in enumerate(self.tags) if m is not None]
                      + (["multi"] if self.index_manifest else []))
        status, _, data = c.call("tags/list", "GET", f"/v2/{self.app}/tags/list", want=(200, 404))
        if status == 404:
            c.check(not want and error_code(data) == "NAME_UNKNOWN", "tags/list: 404", data[:200])
            return
        c.check(sorted(json.loads(data).get("tags") or []) == want, "tags/list: wrong tags",
                f"{data[:200]!r}, wanted {want}")
        # Paginated, 2 at a time, following Link.
        got, path = [], f"/v2/{self.app}/tags/list?n=2"
        for _ in range(10):
            _, h, data = c.call("tags/list ?n=2", "GET", path)
            got += json.loads(data).get("tags") or []
            link = h.get("link")
            if not link:
                break
            path = link.split(";")[0].strip().strip("<>")
        c.check(got == want, "tags/list ?n=2: wrong pages", f"{got}, wanted {want}")

    def op_catalog(self):
        c = self.client
        path, names = "/v2/_catalog?n=10", []
        for _ in range(20):
            _, h, data = c.call("_catalog ?n=10", "GET", path)
            page = json.loads(data)["repositories"]
            c.check(len(page) <= 10, "_catalog: page too long", str(len(page)))
            names += page
            link = h.get("link")
            if not link:
                break
            path = link.split(";")[0].strip().strip("<>")
        c.check(names == sorted(set(names)), "_catalog: pages not in order", str(names[:20]))

    def op_delete_manifest(self):
        slot = self.some_slot(self.tags)
        if slot is None:
            return self.op_push()
        img, c = self.tags[slot], self.client
        c.call("manifest DELETE (digest)", "DELETE", f"/v2/{self.app}/manifests/{img.digest}",
               want=(202,))
        self.tags[slot] = None
        _, _, data = c.call("manifest GET (deleted)", "GET", f"/v2/{self.app}/manifests/t{slot}",
                            headers={"Accept": OCI_MANIFEST}, want=(404,))
        c.check(error_code(data) == "MANIFEST_UNKNOWN", "manifest GET (deleted): wrong code", data[:200])

    def op_delete_tag(self):
        slot = self.some_slot(self.tags)
        if slot is None:
            return self.op_push()
        c = self.client
        c.call("manifest DELETE (tag)", "DELETE", f"/v2/{self.app}/manifests/t{slot}", want=(202,))
        self.tags[slot] = None
        c.call("manifest HEAD (deleted)", "HEAD", f"/v2/{self.app}/manifests/t{slot}",
               headers={"Accept": OCI_MANIFEST}, want=(404,))

    def op_mount(self):
        """Mount an app image's blobs into mirror (from= app), tag it there, read it back."""
        slot = self.some_slot(self.tags)
        if slot is None:
            return self.op_push()
        img, c = self.tags[slot], self.client

        def prepare(may_skip):
            for b in img.blobs:
                _, h, _ = c.call("blob mount (POST ?mount=&from=)", "POST",
                                 with_query(f"/v2/{self.mirror}/blobs/uploads/", mount=b.digest,
                                            **{"from": self.app}),
                                 headers={"Content-Length": "0"}, want=(201,))
                c.check(h.get("docker-content-digest") == b.digest, "blob mount: wrong digest",
                        h.get("docker-content-digest"))
        self.put_manifest(self.mirror, f"t{slot}", img, prepare)
        self.mirror_tags[slot] = img
        _, _, data = c.call("manifest GET", "GET", f"/v2/{self.mirror}/manifests/t{slot}",
                            headers={"Accept": OCI_MANIFEST})
        c.check(data == img.body, "manifest GET (mirror): wrong manifest", f"t{slot}")
        if self.rng.random() < 0.5:
            c.call("manifest DELETE (digest)", "DELETE", f"/v2/{self.mirror}/manifests/{img.digest}",
                   want=(202,))
            for i, m in enumerate(self.mirror_tags):
                if m is not None and m.digest == img.digest:
                    self.mirror_tags[i] = None

    def op_referrers(self):
        slot = self.some_slot(self.tags)
        if slot is None:
            return self.op_push()
        img, c = self.tags[slot], self.client
        variant = self.rng.randrange(len(ARTIFACT_TYPES))
        ref = self.pool.referrer(img, variant)
        h = self.push_image(self.app, ref, ref.digest)
        c.check(h.get("oci-subject") == img.digest, "manifest PUT: no OCI-Subject", h.get("oci-subject"))
        path = f"/v2/{self.app}/referrers/{img.digest}"
        if self.rng.random() < 0.5:
            path = with_query(path, artifactType=ARTIFACT_TYPES[variant])
        _, h, data = c.call("referrers GET", "GET", path)
        listed = json.loads(data)["manifests"]
        c.check(any(m["digest"] == ref.digest for m in listed), "referrers: pushed one missing",
                f"{ref.digest} not in {data[:300]!r}")
        if "artifactType" in path:
            c.check(h.get("oci-filters-applied") == "artifactType" and
                    all(m.get("artifactType") == ARTIFACT_TYPES[variant] for m in listed),
                    "referrers: filter not applied", data[:300])

    def op_index(self):
        c = self.client
        if self.index_manifest is not None and self.rng.random() < 0.3:
            c.call("manifest DELETE (digest)", "DELETE",
                   f"/v2/{self.app}/manifests/{self.index_manifest.digest}", want=(202,))
            self.index_manifest = None
            return
        self.index_variant = (self.index_variant + 1) % 3
        idx = self.pool.index(self.index_variant)

        def prepare(may_skip):
            for child in idx.children:
                def blobs(may_skip, child=child):
                    for b in child.blobs:
                        self.push_blob(self.app, b, may_skip)
                self.put_manifest(self.app, child.digest, child, blobs)
        self.put_manifest(self.app, "multi", idx, prepare)
        self.index_manifest = idx
        _, h, data = c.call("manifest GET", "GET", f"/v2/{self.app}/manifests/multi",
                            headers={"Accept": OCI_INDEX})
        c.check(data == idx.body and h.get("content-type") == OCI_INDEX, "index GET: wrong index",
                h.get("content-type"))

    def op_blob_delete(self):
        """A blob of fresh bytes: push, read, delete, and see it gone."""
        blob = Blob(self.rng.randbytes(self.rng.randint(1 << 10, 64 << 10)))
        self.push_blob(self.app, blob, False)
        self.get_blob(self.app, blob)
        c = self.client
        c.call("blob DELETE", "DELETE", f"/v2/{self.app}/blobs/{blob.digest}", want=(202,))
        c.call("blob HEAD (deleted)", "HEAD", f"/v2/{self.app}/blobs/{blob.digest}", want=(404,))

    def op_upload_cancel(self):
        c = self.client
        _, h, _ = c.call("upload POST", "POST", f"/v2/{self.app}/blobs/uploads/",
                         headers={"Content-Length": "0"}, want=(202,))
        loc = location_path(h["location"])
        data = self.rng.randbytes(10 << 10)
        _, h, _ = c.call("upload PATCH (stream)", "PATCH", loc, body=data,
                         headers={"Content-Type": "application/octet-stream"}, want=(202,))
        loc = location_path(h["location"])
        _, h, _ = c.call("upload GET (status)", "GET", loc, want=(204,))
        c.check(h.get("range") == f"0-{len(data) - 1}", "upload GET: wrong Range", h.get("range"))
        c.call("upload DELETE", "DELETE", loc, want=(204,))
        _, _, body = c.call("upload GET (cancelled)", "GET", loc, want=(404,))
        c.check(error_code(body) == "BLOB_UPLOAD_UNKNOWN", "upload GET (cancelled): wrong code", body[:200])

    def op_misc(self):
        c = self.client
        c.call("GET /v2/", "GET", "/v2/")
        c.call("GET /healthz", "GET", "/healthz", auth=False)
        c.call("GET /readyz", "GET", "/readyz", auth=False)
        c.call("GET /metrics", "GET", "/metrics", auth=False)

    # --- deliberate bad requests ------------------------------------------------------------
    def bad(self, kind, want_status, want_code, method, path, body=None, headers=None,
            auth=True, chunked=False):
        """A request that must fail with `want_status` (and OCI `want_code`, when given)."""
        c = self.client
        expected = f"{want_status} {want_code or ''}".strip()
        self.stats.bad_expected[kind] = expected
        h = dict(c.auth_header() if auth else {})
        h.update(headers or {})
        try:
            status, hdrs, data, seconds = c.send(method, path, body, h, chunked, f"bad: {kind}")
        except (http.client.HTTPException, OSError) as e:
            self.stats.bad[kind][0] += 1
            self.stats.error(f"bad request {kind}: {type(e).__name__}", f"{method} {path[:160]}: {e}")
            raise Failed() from e
        self.stats.latency[f"bad: {kind}"].append(seconds)
        self.stats.bad[kind][0] += 1
        code = error_code(data) if method != "HEAD" else None
        if status == want_status and (want_code is None or code == want_code):
            self.stats.bad[kind][1] += 1
        else:
            self.stats.error(f"bad request {kind}: HTTP {status} {code or ''}".rstrip(),
                             f"{method} {path[:160]} wanted {expected}: {data[:200]!r}")
        return status, hdrs, data

    def op_bad(self):
        kinds = [
            self.bad_name, self.bad_traversal, self.bad_traversal_encoded, self.bad_digest,
            self.bad_digest_mismatch, self.bad_content_range, self.bad_chunk_order,
            self.bad_manifest_too_large, self.bad_manifest_too_large_chunked,
            self.bad_manifest_invalid, self.bad_manifest_blob_unknown,
            self.bad_manifest_digest_mismatch, self.bad_tag, self.bad_blob_unknown,
            self.bad_manifest_unknown, self.bad_upload_unknown, self.bad_range,
            self.bad_method, self.bad_route, self.bad_n,
        ]
        if self.args.user:
            kinds += [self.bad_token, self.bad_scope, self.bad_anonymous]
        else:
            kinds += [self.bad_name_unknown]
        self.rng.choice(kinds)()

    def bad_name(self):
        self.bad("invalid name (upper case)", 400, "NAME_INVALID", "GET", "/v2/soak/Upper_Case/tags/list")

    def bad_traversal(self):
        self.bad("path traversal (..)", 400, "NAME_INVALID", "GET",
                 f"/v2/soak/../../etc/blobs/{self.pool.layers[0].digest}")

    def bad_traversal_encoded(self):
        self.bad("path traversal (%2e%2e)", 400, "NAME_INVALID", "GET",
                 "/v2/soak/%2e%2e/%2e%2e/meta.db/tags/list")

    def bad_digest(self):
        self.bad("invalid digest", 400, "DIGEST_INVALID", "GET", f"/v2/{self.app}/blobs/sha256:1234abc")

    def bad_digest_mismatch(self):
        data = self.rng.randbytes(1024)
        self.bad("blob digest mismatch", 400, "DIGEST_INVALID", "POST",
                 with_query(f"/v2/{self.app}/blobs/uploads/", digest=sha256(data + b"x")), body=data,
                 headers={"Content-Type": "application/octet-stream"})

    def session(self):
        _, h, _ = self.client.call("upload POST", "POST", f"/v2/{self.app}/blobs/uploads/",
                                   headers={"Content-Length": "0"}, want=(202,))
        return location_path(h["location"])

    def bad_patch(self, kind, content_range):
        """A PATCH of 100 bytes with `content_range` into a new session, which must answer
        416 BLOB_UPLOAD_INVALID; the session is cancelled after."""
        loc = self.session()
        try:
            self.bad(kind, 416, "BLOB_UPLOAD_INVALID", "PATCH", loc, body=b"x" * 100,
                     headers={"Content-Range": content_range})
        finally:
            self.client.call("upload DELETE", "DELETE", loc, want=(204,))

    def bad_content_range(self):
        self.bad_patch("malformed Content-Range", "bytes=zero-ninety-nine")

    def bad_chunk_order(self):
        self.bad_patch("chunk out of order", "100-199")

    def big_manifest(self):
        pad = "x" * (MAX_MANIFEST_BYTES + 1 - 200)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "annotations": {"pad": pad}}).encode()
        return body + b" " * max(0, MAX_MANIFEST_BYTES + 1 - len(body))

    def bad_manifest_too_large(self):
        self.bad("manifest over 4 MiB (Content-Length)", 413, "SIZE_INVALID", "PUT",
                 f"/v2/{self.app}/manifests/big", body=self.big_manifest(),
                 headers={"Content-Type": OCI_MANIFEST})

    def bad_manifest_too_large_chunked(self):
        body = self.big_manifest()
        chunks = [body[i:i + (256 << 10)] for i in range(0, len(body), 256 << 10)]
        self.bad("manifest over 4 MiB (chunked)", 413, "SIZE_INVALID", "PUT",
                 f"/v2/{self.app}/manifests/big", body=chunks,
                 headers={"Content-Type": OCI_MANIFEST, "Transfer-Encoding": "chunked"}, chunked=True)

    def bad_manifest_invalid(self):
        self.bad("manifest not JSON", 400, "MANIFEST_INVALID", "PUT", f"/v2/{self.app}/manifests/broken",
                 body=b'{"schemaVersion": 2, "layers": [', headers={"Content-Type": OCI_MANIFEST})

    def bad_manifest_blob_unknown(self):
        ghost = Blob(self.rng.randbytes(64))
        m = image_manifest(self.pool.config("ghost"), [ghost])
        self.bad("manifest with unknown blobs", 400, "MANIFEST_BLOB_UNKNOWN", "PUT",
                 f"/v2/{self.app}/manifests/ghost", body=m.body, headers={"Content-Type": OCI_MANIFEST})

    def bad_manifest_digest_mismatch(self):
        img = self.pool.image(0, 0)
        self.bad("manifest PUT under another digest", 400, "DIGEST_INVALID", "PUT",
                 f"/v2/{self.app}/manifests/{sha256(img.body + b' ')}", body=img.body,
                 headers={"Content-Type": OCI_MANIFEST})

    def bad_tag(self):
        img = self.pool.image(0, 0)
        self.bad("invalid tag", 400, "TAG_INVALID", "PUT", f"/v2/{self.app}/manifests/-no.{'x' * 130}",
                 body=img.body, headers={"Content-Type": OCI_MANIFEST})

    def bad_blob_unknown(self):
        self.bad("unknown blob", 404, "BLOB_UNKNOWN", "GET",
                 f"/v2/{self.app}/blobs/{sha256(self.rng.randbytes(16))}")

    def bad_manifest_unknown(self):
        self.bad("unknown manifest", 404, "MANIFEST_UNKNOWN", "GET", f"/v2/{self.app}/manifests/no-such-tag",
                 headers={"Accept": OCI_MANIFEST})

    def bad_upload_unknown(self):
        self.bad("unknown upload session", 404, "BLOB_UPLOAD_UNKNOWN", "GET",
                 f"/v2/{self.app}/blobs/uploads/{uuid.uuid4()}")

    def bad_range(self):
        blob = self.pool.layers[0]
        status, _, _ = self.client.call("blob HEAD", "HEAD", f"/v2/{self.app}/blobs/{blob.digest}",
                                        want=(200, 404))
        if status == 404:
            return
        _, h, _ = self.bad("Range past the end", 416, "SIZE_INVALID", "GET",
                           f"/v2/{self.app}/blobs/{blob.digest}",
                           headers={"Range": f"bytes={len(blob.data) + 10}-"})

    def bad_method(self):
        self.bad("method not allowed", 405, "UNSUPPORTED", "POST", f"/v2/{self.app}/tags/list",
                 headers={"Content-Length": "0"})

    def bad_route(self):
        self.bad("unknown route", 404, "UNSUPPORTED", "GET", f"/v2/{self.app}/nothing/here")

    def bad_n(self):
        self.bad("tags/list ?n= not a number", 400, "UNSUPPORTED", "GET",
                 f"/v2/{self.app}/tags/list?n=many")

    def bad_token(self):
        self.bad("forged Bearer token", 401, "UNAUTHORIZED", "GET", f"/v2/{self.app}/tags/list",
                 headers={"Authorization": "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.AAAA"},
                 auth=False)

    def bad_scope(self):
        _, h, _ = self.bad("token without the scope (another worker's repository)", 401, "UNAUTHORIZED",
                           "GET", f"/v2/{self.other}/tags/list")
        if "insufficient_scope" not in h.get("www-authenticate", ""):
            self.stats.error("bad request token scope: no insufficient_scope",
                             h.get("www-authenticate", "no WWW-Authenticate"))

    def bad_anonymous(self):
        self.bad("anonymous on a private repository", 401, "UNAUTHORIZED", "GET",
                 f"/v2/{self.app}/tags/list", auth=False)

    def bad_name_unknown(self):
        self.bad("unknown repository", 404, "NAME_UNKNOWN", "GET", "/v2/soak/no-such/tags/list")


class Collector(threading.Thread):
    """Garbage collection every --gc-interval seconds: POST /api/v1/gc as the administrator
    (auth on) or `--gc-command` (auth off)."""

    def __init__(self, args, gc, stop):
        super().__init__(name="gc", daemon=True)
        self.args, self.gc, self.stop = args, gc, stop
        self.stats = Stats()
        self.reports = []

    def run(self):
        while not self.stop.wait(self.args.gc_interval):
            self.gc.start()
            t0 = time.perf_counter()
            try:
                report = self.collect()
            except Exception as e:
                self.stats.error(f"gc: {type(e).__name__}", repr(e)[:300])
                report = None
            finally:
                self.gc.end()
            seconds = time.perf_counter() - t0
            self.stats.latency["garbage collection"].append(seconds)
            if report is not None:
                self.reports.append({"seconds": seconds, "manifests": len(report.get("manifests", [])),
                                     "links_removed": report.get("links_removed", 0),
                                     "blobs_deleted": report.get("blobs_deleted", 0),
                                     "bytes_freed": report.get("bytes_freed", 0),
                                     "kept_in_use": report.get("kept_in_use", 0)})

    def collect(self):
        if self.args.gc_command:
            cmd = json.loads(self.args.gc_command) + ["--grace", f"{self.args.gc_grace}s",
                                                     "--delete-untagged", "--json"]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            self.stats.requests += 1
            if r.returncode != 0:
                self.stats.error(f"gc: exit {r.returncode}", r.stderr[-300:])
                return None
            return json.loads(r.stdout)
        client = Client(self.args, self.stats)
        basic = base64.b64encode(f"admin:{self.args.admin_password}".encode()).decode()
        body = json.dumps({"grace_secs": self.args.gc_grace, "delete_untagged": True}).encode()
        try:
            status, _, data, _ = client.send("POST", "/api/v1/gc", body,
                                             {"Authorization": f"Basic {basic}",
                                              "Content-Type": "application/json"})
        finally:
            client.close()
        if status != 200:
            self.stats.error(f"gc: HTTP {status} {error_code(data) or ''}".rstrip(), data[:300])
            return None
        return json.loads(data)


class Sampler(threading.Thread):
    """The server's RSS, open descriptors, threads, CPU and data directory every few seconds."""

    def __init__(self, args, stop, t0):
        super().__init__(name="sampler", daemon=True)
        self.args, self.stop, self.t0 = args, stop, t0
        self.samples = []
        self.hz = os.sysconf("SC_CLK_TCK")

    def sample(self, phase):
        pid = self.args.pid
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                status[k] = v.split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / self.hz
        data = self.args.data_dir
        s = {"t": round(now() - self.t0, 3), "phase": phase,
             "rss_kib": int(status["VmRSS"][0]), "hwm_kib": int(status["VmHWM"][0]),
             # VmRSS = RssAnon (heap, arenas, stacks) + RssFile + RssShmem (SQLite's -shm).
             "rss_anon_kib": int(status["RssAnon"][0]), "rss_file_kib": int(status["RssFile"][0]),
             "rss_shmem_kib": int(status["RssShmem"][0]),
             "threads": int(status["Threads"][0]), "fds": fds, "cpu_s": cpu,
             "data_bytes": dir_bytes(data) if data else None,
             "meta_db_bytes": sum(file_bytes(os.path.join(data, f"meta.db{x}")) for x in ("", "-wal", "-shm"))
             if data else None}
        self.samples.append(s)
        return s

    def run(self):
        while not self.stop.wait(self.args.sample_interval):
            try:
                self.sample("load")
            except OSError:
                return  # the server is gone: the main thread reports it


def file_bytes(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def percentile(sorted_values, q):
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i]


def slope_per_minute(points):
    """Least-squares slope of (seconds, value) pairs, per minute."""
    n = len(points)
    if n < 3:
        return None
    mx = sum(p[0] for p in points) / n
    my = sum(p[1] for p in points) / n
    sxx = sum((p[0] - mx) ** 2 for p in points)
    if sxx == 0:
        return None
    return 60 * sum((p[0] - mx) * (p[1] - my) for p in points) / sxx


def setup(args):
    """Auth on: the project `soak` and the member account the workers use."""
    if not args.user:
        return
    client = Client(args, Stats())
    basic = base64.b64encode(f"admin:{args.admin_password}".encode()).decode()
    h = {"Authorization": f"Basic {basic}", "Content-Type": "application/json"}
    for method, path, body, want in (
            ("POST", "/api/v1/projects", {"name": "soak", "public": False}, 201),
            ("POST", "/api/v1/users", {"name": args.user, "password": args.password}, 201),
            ("PUT", f"/api/v1/projects/soak/members/{args.user}", {"role": "maintainer"}, 200)):
        status, _, data, _ = client.send(method, path, json.dumps(body).encode(), h)
        if status != want:
            sys.exit(f"soak setup: {method} {path}: HTTP {status} {data[:300]!r}")
    client.close()


def server_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def uploads_in_progress(args):
    client = Client(args, Stats())
    try:
        _, _, data, _ = client.send("GET", "/metrics")
    finally:
        client.close()
    for line in data.decode().splitlines():
        if line.startswith("berth_uploads_in_progress "):
            return int(float(line.split()[1]))
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--duration", type=float, required=True)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--seed", default="1")
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--admin-password", default="")
    p.add_argument("--gc-command", default="", help="JSON list: the `berth gc --config ...` command (auth off)")
    p.add_argument("--gc-interval", type=float, default=60)
    p.add_argument("--gc-grace", type=int, default=30)
    p.add_argument("--token-refresh", type=float, default=120)
    p.add_argument("--sample-interval", type=float, default=5)
    p.add_argument("--warmup", type=float, default=60)
    p.add_argument("--fd-slack", type=int, default=16)
    p.add_argument("--rss-slope-max", type=float, default=0.5)
    p.add_argument("--data-dir", default="")
    p.add_argument("--server-log", default="")
    p.add_argument("--meta", default="{}", help="JSON object copied into the report (machine, versions)")
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-md", required=True)
    args = p.parse_args()

    setup(args)
    stop = threading.Event()
    t0 = now()
    sampler = Sampler(args, stop, t0)
    start_sample = sampler.sample("start")
    gc = GcClock()
    workers = [Worker(i, args, gc, stop) for i in range(args.workers)]
    collector = Collector(args, gc, stop)
    for t in (sampler, collector, *workers):
        t.start()
    interrupted = False
    try:
        while now() - t0 < args.duration and server_alive(args.pid):
            time.sleep(min(1.0, max(0.0, args.duration - (now() - t0))))
    except KeyboardInterrupt:
        interrupted = True
    stop.set()
    load_seconds = now() - t0
    for w in workers:
        w.join(timeout=180)
    collector.join(timeout=600)
    sampler.join(timeout=30)
    alive = server_alive(args.pid)
    end_sample = None
    in_progress = None
    if alive:
        time.sleep(2)  # closed connections leave the server's descriptor table
        end_sample = sampler.sample("end")
        in_progress = uploads_in_progress(args)

    stats = Stats()
    for w in workers:
        stats.merge(w.stats)
    stats.merge(collector.stats)
    report = build_report(args, stats, sampler.samples, start_sample, end_sample, collector.reports,
                          load_seconds, alive, interrupted, in_progress)
    with open(args.out_json, "w") as f:
        json.dump(report, f, indent=1)
    md = render(report)
    with open(args.out_md, "w") as f:
        f.write(md)
    print(md)
    sys.exit(130 if interrupted else (0 if report["verdict"]["pass"] else 1))


def server_log_problems(path):
    if not path or not os.path.exists(path):
        return 0, []
    count, first = 0, []
    with open(path, errors="replace") as f:
        for line in f:
            if " WARN " in line or " ERROR " in line:
                count += 1
                if len(first) < 10:
                    first.append(line.strip()[:400])
    return count, first


def build_report(args, stats, samples, start, end, gc_reports, load_seconds, alive, interrupted,
                 in_progress):
    mib = 1 / 1024
    warmup = min(args.warmup, load_seconds / 4)
    after = [s for s in samples if s["t"] >= warmup and s["phase"] == "load"]
    warm = after[0] if after else start
    load_samples = [s for s in samples if s["phase"] in ("start", "load")]
    rss_slope = slope_per_minute([(s["t"], s["rss_kib"] * mib) for s in after])
    fd_slope = slope_per_minute([(s["t"], s["fds"]) for s in after])
    latency = {}
    for label, values in sorted(stats.latency.items()):
        v = sorted(values)
        latency[label] = {"count": len(v), "p50_ms": 1000 * percentile(v, 0.5),
                          "p90_ms": 1000 * percentile(v, 0.9), "p99_ms": 1000 * percentile(v, 0.99),
                          "max_ms": 1000 * v[-1]}
    bad = {k: {"expected": stats.bad_expected.get(k, "?"), "sent": s, "as_expected": ok}
           for k, (s, ok) in sorted(stats.bad.items())}
    errors = sum(stats.errors.values())
    log_count, log_first = server_log_problems(args.server_log)
    last = end or (samples[-1] if samples else start)
    fd_ok = end is not None and end["fds"] <= start["fds"] + args.fd_slack
    slope_ok = rss_slope is not None and rss_slope < args.rss_slope_max
    reasons = []
    if interrupted:
        reasons.append("interrupted")
    if not alive:
        reasons.append("the server exited")
    if errors:
        reasons.append(f"{errors} errors")
    if not fd_ok:
        reasons.append(f"open descriptors {start['fds']} -> {end['fds'] if end else '?'} "
                       f"(allowed +{args.fd_slack})")
    if not slope_ok:
        reasons.append("RSS slope " + ("unknown (run too short)" if rss_slope is None
                                       else f"{rss_slope:.3f} MiB/min >= {args.rss_slope_max}"))
    cpu = (last["cpu_s"] - start["cpu_s"])
    data_sizes = [s["data_bytes"] for s in samples if s.get("data_bytes") is not None]
    meta_sizes = [s["meta_db_bytes"] for s in samples if s.get("meta_db_bytes") is not None]
    return {
        "meta": json.loads(args.meta),
        "settings": {"duration_s": args.duration, "workers": args.workers, "auth": bool(args.user),
                     "gc_interval_s": args.gc_interval, "gc_grace_s": args.gc_grace,
                     "sample_interval_s": args.sample_interval, "warmup_s": warmup,
                     "fd_slack": args.fd_slack, "rss_slope_max_mib_per_min": args.rss_slope_max},
        "load_seconds": load_seconds,
        "requests": stats.requests,
        "requests_per_second": stats.requests / load_seconds if load_seconds else 0,
        "errors": errors,
        "errors_by_kind": dict(stats.errors.most_common()),
        "error_examples": stats.examples,
        "bad_requests": bad,
        "bad_requests_sent": sum(b["sent"] for b in bad.values()),
        "bad_requests_as_expected": sum(b["as_expected"] for b in bad.values()),
        "documented_races": dict(stats.races),
        "silent_closes": dict(stats.silent_closes.most_common()),
        "gc_runs": gc_reports,
        "latency": latency,
        "memory": {"rss_start_mib": start["rss_kib"] * mib, "rss_warm_mib": warm["rss_kib"] * mib,
                   "rss_end_mib": last["rss_kib"] * mib,
                   "rss_max_mib": max(s["rss_kib"] for s in samples) * mib,
                   "hwm_end_mib": last["hwm_kib"] * mib,
                   "rss_slope_mib_per_min": rss_slope},
        "fds": {"start": start["fds"], "warm": warm["fds"], "end": end["fds"] if end else None,
                "max": max(s["fds"] for s in samples), "slope_per_min": fd_slope},
        "threads": {"start": start["threads"], "end": last["threads"],
                    "max": max(s["threads"] for s in samples)},
        "server_cpu_s": cpu,
        "data_dir_bytes": {"start": data_sizes[0], "end": data_sizes[-1], "max": max(data_sizes)}
        if data_sizes else None,
        "meta_db_bytes": {"start": meta_sizes[0], "end": meta_sizes[-1], "max": max(meta_sizes)}
        if meta_sizes else None,
        "rss_parts_end_mib": {k: last[f"rss_{k}_kib"] * mib for k in ("anon", "file", "shmem")},
        "rss_anon_slope_mib_per_min": slope_per_minute([(s["t"], s["rss_anon_kib"] * mib) for s in after]),
        "uploads_in_progress_end": in_progress,
        "server_log_warnings": log_count,
        "server_log_first": log_first,
        "samples": samples,
        "load_samples": len(load_samples),
        "verdict": {"pass": not reasons, "reasons": reasons},
    }


def render(r):
    s, m, f = r["settings"], r["memory"], r["fds"]
    meta = r["meta"]
    gc = r["gc_runs"]
    fmt = lambda v, d=1: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    lines = [f"# berth soak, {meta.get('stamp', '')}", ""]
    if meta:
        lines += [f"{meta.get('machine', '')}; {meta.get('versions', '')}; backend "
                  f"{meta.get('backend', '?')}, auth {'on' if s['auth'] else 'off'}, {s['workers']} workers, "
                  f"GC every {s['gc_interval_s']:.0f} s (grace {s['gc_grace_s']} s, untagged too), "
                  f"a sample every {s['sample_interval_s']:.0f} s.", ""]
    bad_ok = r["bad_requests_as_expected"] == r["bad_requests_sent"]
    data = r["data_dir_bytes"]
    rows = [
        ("duration", f"{r['load_seconds']:.0f} s"),
        ("requests", f"{r['requests']}"),
        ("requests per second", f"{r['requests_per_second']:.0f}"),
        ("errors (unexpected answers)", f"{r['errors']}" + (
            "" if not r["errors"] else " (" + ", ".join(f"{k}: {v}" for k, v in r["errors_by_kind"].items()) + ")")),
        ("deliberate bad requests", f"{r['bad_requests_sent']} in {len(r['bad_requests'])} kinds, "
         + ("all answered as expected" if bad_ok else
            f"{r['bad_requests_sent'] - r['bad_requests_as_expected']} NOT as expected")),
        ("pushes refused while GC ran, pushed again (README: MANIFEST_BLOB_UNKNOWN)",
         ", ".join(f"{k.split(' while')[0]}: {v}" for k, v in r["documented_races"].items()) or "0"),
        ("connections closed by the server without `Connection: close`",
         f"{sum(r['silent_closes'].values())}"),
        ("garbage collections", f"{len(gc)}: {sum(g['manifests'] for g in gc)} manifests, "
         f"{sum(g['blobs_deleted'] for g in gc)} blobs, {sum(g['bytes_freed'] for g in gc) / 2**20:.0f} MiB freed"),
        ("RSS start / after warm-up / end / max (MiB)",
         f"{m['rss_start_mib']:.1f} / {m['rss_warm_mib']:.1f} / {m['rss_end_mib']:.1f} / {m['rss_max_mib']:.1f}"),
        (f"RSS trend after {s['warmup_s']:.0f} s (MiB/min)", fmt(m["rss_slope_mib_per_min"], 3)),
        ("RSS at the end: anonymous / file / shared (MiB)",
         " / ".join(f"{r['rss_parts_end_mib'][k]:.1f}" for k in ("anon", "file", "shmem"))),
        ("open fds start / after warm-up / end / max",
         f"{f['start']} / {f['warm']} / {f['end'] if f['end'] is not None else 'n/a'} / {f['max']}"),
        (f"fd trend after {s['warmup_s']:.0f} s (per min)", fmt(f["slope_per_min"], 3)),
        ("threads start / end / max", f"{r['threads']['start']} / {r['threads']['end']} / {r['threads']['max']}"),
        ("server CPU", f"{r['server_cpu_s']:.0f} s ({r['server_cpu_s'] / max(r['load_seconds'], 1):.2f} cores)"),
    ]
    if data:
        rows.append(("data directory start / end / max (MiB)",
                     f"{data['start'] / 2**20:.1f} / {data['end'] / 2**20:.1f} / {data['max'] / 2**20:.1f}"))
    if r.get("meta_db_bytes"):
        mdb = r["meta_db_bytes"]
        rows.append(("of which meta.db with its WAL, start / end (MiB)",
                     f"{mdb['start'] / 2**20:.1f} / {mdb['end'] / 2**20:.1f}"))
    rows += [
        ("upload sessions open at the end", f"{r['uploads_in_progress_end']}"),
        ("server log lines at WARN or ERROR", f"{r['server_log_warnings']}"),
    ]
    v = r["verdict"]
    lines += ["| figure | value |", "|---|---:|"] + [f"| {a} | {b} |" for a, b in rows]
    lines += ["", f"**{'PASS' if v['pass'] else 'FAIL'}**" + ("" if v["pass"] else ": " + "; ".join(v["reasons"]))
              + f" (errors = 0, fds at the end <= start + {s['fd_slack']}, RSS trend < "
              f"{s['rss_slope_max_mib_per_min']} MiB/min)", ""]
    lines += ["Latency per operation (ms):", "", "| operation | requests | p50 | p90 | p99 | max |",
              "|---|---:|---:|---:|---:|---:|"]
    for label, l in r["latency"].items():
        if label.startswith("bad: "):
            continue
        lines.append(f"| {label} | {l['count']} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} | "
                     f"{l['p99_ms']:.2f} | {l['max_ms']:.1f} |")
    lines += ["", "Deliberate bad requests:", "", "| request | expected | sent | as expected | p99 ms |",
              "|---|---|---:|---:|---:|"]
    for kind, b in r["bad_requests"].items():
        l = r["latency"].get(f"bad: {kind}")
        lines.append(f"| {kind} | {b['expected']} | {b['sent']} | {b['as_expected']} | "
                     f"{l['p99_ms']:.2f} |" if l else f"| {kind} | {b['expected']} | {b['sent']} | {b['as_expected']} | |")
    if r["silent_closes"]:
        lines += ["", "Kept-alive connections the server closed after answering, without `Connection: close` "
                  "(found closed, or failing as closed, when the next request was sent; that request went on "
                  "a new connection). By the request answered last:", "",
                  "| answered last | closes |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in r["silent_closes"].items()]
    if r["error_examples"]:
        lines += ["", "First errors:", ""] + [f"- `{e}`" for e in r["error_examples"][:20]]
    if r["server_log_first"]:
        lines += ["", "First server log warnings:", ""] + [f"- `{e}`" for e in r["server_log_first"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

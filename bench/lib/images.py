#!/usr/bin/env python3
"""Deterministic test images for bench/run, written as OCI image layouts (skopeo's `oci:DIR:TAG`).

Every byte is a function of the arguments: the same command writes the same digests on any
machine. Layers are uncompressed tars (`application/vnd.oci.image.layer.v1.tar`, so a layer's
diff_id is its digest) holding one file of pseudo-random, incompressible data, sized so that the
whole tar is exactly the requested size. Large data comes from AES-128-CTR over zeros with a
fixed key (`openssl enc`, about 1-2 GB/s); small layers from Python's seeded `random`.

Usage: images.py OUT_DIR --big-mib N --layers N --layer-kib N
writes, each with the tag `1`:
  OUT_DIR/big     one layer of N MiB
  OUT_DIR/many    N layers of --layer-kib KiB each
  OUT_DIR/small   one 4 KiB layer
  OUT_DIR/multi   an image index of two platforms (linux/amd64, linux/arm64), one 64 KiB
                  layer each
and OUT_DIR/images.json: what it wrote (digests and sizes of manifests and layers).
"""

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
CREATED = "2026-01-01T00:00:00Z"
CHUNK = 1 << 20


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)

    def add_bytes(self, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(self._blob_path(digest), "wb") as f:
            f.write(data)
        return digest, len(data)

    def add_stream(self, chunks):
        """Writes the byte chunks to a blob, hashing them on the way."""
        h = hashlib.sha256()
        tmp = os.path.join(self.path, "blobs", "tmp")
        size = 0
        with open(tmp, "wb") as f:
            for chunk in chunks:
                h.update(chunk)
                f.write(chunk)
                size += len(chunk)
        digest = "sha256:" + h.hexdigest()
        os.replace(tmp, self._blob_path(digest))
        return digest, size

    def _blob_path(self, digest):
        return os.path.join(self.path, "blobs", "sha256", digest.removeprefix("sha256:"))

    def write_index(self, media_type, digest, size, tag):
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
                {"mediaType": media_type, "digest": digest, "size": size,
                 "annotations": {"org.opencontainers.image.ref.name": tag}}]}, f)


def tar_chunks(name, size, data_chunks):
    """A tar of exactly `size` bytes (a multiple of 512, at least 2048): one header, one file of
    size - 1536 bytes taken from data_chunks, the two closing zero blocks."""
    if size % 512 or size < 2048:
        raise ValueError(f"layer size {size} is not a multiple of 512 of at least 2048")
    info = tarfile.TarInfo(name)
    info.size = size - 1536
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = "root"
    yield info.tobuf(format=tarfile.USTAR_FORMAT)
    left = info.size
    for chunk in data_chunks:
        if len(chunk) > left:
            chunk = chunk[:left]
        yield chunk
        left -= len(chunk)
        if left == 0:
            break
    if left:
        raise RuntimeError(f"data source ended {left} bytes early")
    yield bytes(1024)


def openssl_noise(key_text):
    """An endless stream of AES-128-CTR keystream chunks, keyed by key_text."""
    key = hashlib.sha256(key_text.encode()).hexdigest()
    proc = subprocess.Popen(
        ["openssl", "enc", "-aes-128-ctr", "-nosalt", "-K", key[:32], "-iv", key[32:64],
         "-in", "/dev/zero"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        while True:
            chunk = proc.stdout.read(CHUNK)
            if not chunk:
                raise RuntimeError("openssl enc ended")
            yield chunk
    finally:
        proc.kill()
        proc.wait()


def seeded_noise(seed):
    rng = random.Random(seed)
    while True:
        yield rng.randbytes(64 << 10)


def config_bytes(diff_ids, arch="amd64", label=""):
    return json.dumps({
        "created": CREATED, "architecture": arch, "os": "linux",
        "config": {"Labels": {"bench": label}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": CREATED, "created_by": "bench/lib/images.py"}] * len(diff_ids),
    }, separators=(",", ":"), sort_keys=True).encode()


def manifest_bytes(config, layers):
    return json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config[0], "size": config[1]},
        "layers": [{"mediaType": LAYER, "digest": d, "size": s} for d, s in layers],
    }, separators=(",", ":")).encode()


def image(layout, name, layer_specs, arch="amd64"):
    """layer_specs: (size, chunk source) per layer. Returns (manifest digest, size, layers)."""
    layers = [layout.add_stream(tar_chunks(f"{name}-{i}.bin", size, src))
              for i, (size, src) in enumerate(layer_specs)]
    config = layout.add_bytes(config_bytes([d for d, _ in layers], arch, name))
    digest, size = layout.add_bytes(manifest_bytes(config, layers))
    return digest, size, layers


def single(out, name, layer_specs):
    layout = Layout(os.path.join(out, name))
    digest, size, layers = image(layout, name, layer_specs)
    layout.write_index(MANIFEST, digest, size, "1")
    return {"manifest": digest, "manifest_size": size, "layers": [[d, s] for d, s in layers],
            "bytes": sum(s for _, s in layers)}


def multi(out):
    layout = Layout(os.path.join(out, "multi"))
    children, info = [], []
    for arch in ("amd64", "arm64"):
        digest, size, layers = image(layout, f"multi-{arch}",
                                     [(64 << 10, seeded_noise(f"multi/{arch}"))], arch)
        children.append({"mediaType": MANIFEST, "digest": digest, "size": size,
                         "platform": {"architecture": arch, "os": "linux"}})
        info.append({"platform": f"linux/{arch}", "manifest": digest,
                     "layers": [[d, s] for d, s in layers]})
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": children},
                       separators=(",", ":")).encode()
    digest, size = layout.add_bytes(index)
    layout.write_index(INDEX, digest, size, "1")
    return {"index": digest, "index_size": size, "children": info}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--big-mib", type=int, required=True)
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--layer-kib", type=int, default=256)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    result = {
        "big": single(args.out, "big", [(args.big_mib << 20, openssl_noise("bench/big"))]),
        "many": single(args.out, "many", [(args.layer_kib << 10, seeded_noise(f"many/{i}"))
                                          for i in range(args.layers)]),
        "small": single(args.out, "small", [(4 << 10, seeded_noise("small"))]),
        "multi": multi(args.out),
    }
    with open(os.path.join(args.out, "images.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"images: big {result['big']['manifest']}, many {result['many']['manifest']} "
          f"({args.layers} layers), small {result['small']['manifest']}, multi "
          f"{result['multi']['index']}", file=sys.stderr)


if __name__ == "__main__":
    main()

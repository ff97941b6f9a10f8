"""Push an artifact to a registry with the oras Python SDK, pull it back, compare.

Usage: oras_roundtrip.py HOST:PORT REPOSITORY (run in an empty working directory).
"""
import hashlib
import os
import sys

import oras.client

host, repo = sys.argv[1], sys.argv[2]
client = oras.client.OrasClient(hostname=host, insecure=True)

payload = os.urandom(3 * 1024 * 1024 + 17)
with open("artifact.bin", "wb") as f:
    f.write(payload)
with open("notes.txt", "w") as f:
    f.write("berth interop\n")

# Monolithic upload, then chunked (oras-py PATCHes with Content-Range).
client.push(files=["artifact.bin", "notes.txt"], target=f"{host}/{repo}:v1")
client.push(files=["artifact.bin"], target=f"{host}/{repo}:chunked", do_chunked=True, chunk_size=1024 * 1024)

for tag in ("v1", "chunked"):
    out = os.path.join("pulled", tag)
    files = client.pull(target=f"{host}/{repo}:{tag}", outdir=out)
    got = {os.path.basename(p): open(p, "rb").read() for p in files}
    assert got["artifact.bin"] == payload, f"{tag}: artifact.bin differs"
    if tag == "v1":
        assert got["notes.txt"] == b"berth interop\n", "notes.txt differs"
    print(tag, "ok", hashlib.sha256(got["artifact.bin"]).hexdigest())

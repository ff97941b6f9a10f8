"""Push an artifact to a registry with the oras Python SDK, pull it back, compare.

Usage: oras_roundtrip.py HOST:PORT REPOSITORY [PULL_HOST:PORT] (run in an empty working
directory). Pulls from PULL_HOST:PORT when given (another replica of the same registry), else
from HOST:PORT. With ORAS_USER and ORAS_PASS set, sends them as Basic credentials on every
request: oras-py's token backend (0.2.x) answers a 401 by retrying with the token it holds and
fetches a new one only on a 403, so it cannot trade the pull token of a push's first HEAD for a
push token (the registry says 401 insufficient_scope, as distribution does).
"""
import hashlib
import os
import sys

import oras.client

host, repo = sys.argv[1], sys.argv[2]
pull_host = sys.argv[3] if len(sys.argv) > 3 else host
backend = "basic" if os.environ.get("ORAS_USER") else "token"
client = oras.client.OrasClient(hostname=host, insecure=True, auth_backend=backend)

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
    files = client.pull(target=f"{pull_host}/{repo}:{tag}", outdir=out)
    got = {os.path.basename(p): open(p, "rb").read() for p in files}
    assert got["artifact.bin"] == payload, f"{tag}: artifact.bin differs"
    if tag == "v1":
        assert got["notes.txt"] == b"berth interop\n", "notes.txt differs"
    print(tag, "ok", hashlib.sha256(got["artifact.bin"]).hexdigest())

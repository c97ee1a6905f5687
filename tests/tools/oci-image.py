#!/usr/bin/env python3
"""Write a single-layer OCI image archive, for images that need no registry and no builder.

    oci-image.py OUT.tar NAME --entrypoint /agnhost --file /agnhost=PATH [--file ...] [--user U]

The archive (an OCI image layout in a tar) holds one uncompressed layer with the given files
(mode 0755, owned by root) and the directories they need, plus an empty /tmp (1777). It names
the image NAME through the `io.containerd.image.name` annotation, so that
`ctr -n k8s.io images import OUT.tar` registers it under NAME for the kubelet.
The output is reproducible: the same inputs give the same digests.
"""

import argparse
import hashlib
import io
import json
import os
import tarfile


def layer_bytes(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = {"tmp"}
        for dest, _ in files:
            parts = dest.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for dest, src in sorted(files):
            info = tarfile.TarInfo(dest.strip("/"))
            info.size = os.path.getsize(src)
            info.mode = 0o755
            with open(src, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("name", help="image reference, e.g. registry.k8s.io/pause:3.10.2")
    p.add_argument("--entrypoint", action="append", default=[], required=True)
    p.add_argument("--file", action="append", default=[], required=True,
                   help="DEST=SRC: put the file SRC at DEST in the image")
    p.add_argument("--user", default="")
    args = p.parse_args()

    files = []
    for spec in args.file:
        dest, sep, src = spec.partition("=")
        if not sep or not dest.startswith("/"):
            p.error(f"--file {spec}: want /DEST=SRC")
        if not os.path.isfile(src):
            p.error(f"--file {spec}: {src} is not a file")
        files.append((dest, src))

    blobs = {}

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer = layer_bytes(files)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": args.entrypoint, "User": args.user,
                   "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"]},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **blob(json.dumps(config, sort_keys=True).encode())},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob(layer)}],
    }
    tag = args.name.rsplit(":", 1)[1] if ":" in args.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **blob(json.dumps(manifest, sort_keys=True).encode()),
            "annotations": {"io.containerd.image.name": args.name,
                            "org.opencontainers.image.ref.name": tag},
        }],
    }

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in sorted(blobs.items()):
            add("blobs/sha256/" + digest.split(":", 1)[1], data)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()

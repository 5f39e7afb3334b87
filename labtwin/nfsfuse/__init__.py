"""NFS mounts in the twin's hosts without a kernel NFS client: a userspace NFSv3 client (PyPI
nfs-rs) served to the kernel through FUSE (PyPI fusepy over Debian's libfuse2).

- `fs.NfsFuse`: the FUSE filesystem; every operation is an NFSv3 call to the server.
- `mount`: the `mount.nfs` helper util-linux mount runs for `mount -t nfs server:/path dir`
  (what the kubelet's in-tree nfs volume plugin does); it starts the FUSE daemon (`daemon`),
  which outlives it and exits when the mount is unmounted.
"""

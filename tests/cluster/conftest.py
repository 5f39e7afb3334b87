"""A real kubeadm cluster on the twin (issue 7): upstream Kubernetes built from its Go modules,
containerd 2.x, made inside the twin's kubeadm-ready hosts by labkit's `invoke setup-cluster`.

Each module gets its own fresh cluster twin (env LABTWIN_CLUSTER_NAME, default `ltk8s`, on the
first free /24 from 10.213.49.0/24) and takes it down at its end. Checks read the cluster with
the built kubectl on master through nsenter (`Cluster.sh`), never through labkit.
"""
from __future__ import annotations

import os

import pytest

from clusterkit import FIRST_SUBNET, Cluster, cluster_config, invoke


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.fail("the cluster tests need root (the twin uses namespaces, mounts, cgroups)")
    from labtwin.hosts import lab, network

    lab.down(cluster_config())
    cfg = cluster_config(subnet=network.free_subnet(FIRST_SUBNET))
    try:
        lab.up(cfg)
        c = Cluster(cfg)
        invoke(c, "setup-cluster")  # the cluster, made as a user makes it
        yield c
    finally:
        lab.down(cfg)

"""A real kubeadm cluster on the twin (issue 7): upstream Kubernetes built from its Go modules,
containerd 2.x, `kubeadm init`/`join` inside the twin's hosts.

Each module gets its own fresh cluster twin (env LABTWIN_CLUSTER_NAME, default `ltk8s`, on the
first free /24 from 10.213.49.0/24) and takes it down at its end. Checks read the cluster with
the built kubectl on master through nsenter (`Cluster.sh`), never through labkit.
"""
from __future__ import annotations

import os

import pytest

from clusterkit import FIRST_SUBNET, Cluster, cluster_config


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.fail("the cluster tests need root (the twin uses namespaces, mounts, cgroups)")
    from labtwin.hosts import lab, network

    lab.down(cluster_config())
    cfg = cluster_config(subnet=network.free_subnet(FIRST_SUBNET))
    try:
        lab.up(cfg)
        yield Cluster(cfg)
    finally:
        lab.down(cfg)

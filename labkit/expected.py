"""What each StatefulSet ordinal should run and serve (pure).

A RollingUpdate with ``partition: P`` moves only ordinals >= P to the update revision; ordinals
below P keep the current revision (and its image tag) — also pods created later by a scale-up
at an ordinal >= P start at the update revision. The content a pod serves follows its tag:
``Version: --<tag>``.
"""
from __future__ import annotations

from dataclasses import dataclass

from labkit.errors import OperationError


@dataclass(frozen=True)
class Expected:
    ordinal: int
    tag: str
    content: str
    revision: str | None = None  # controller-revision-hash, when the StatefulSet status is known


def content_for(tag: str) -> str:
    """The index.html content for a tag (the seed's ``Version: --v1``), newline-terminated."""
    return f"Version: --{tag}\n"


def tag_for(ordinal: int, partition: int, old_tag: str, new_tag: str) -> str:
    """The image tag of ``ordinal`` once a rollout from old_tag to new_tag with ``partition`` happened."""
    if ordinal < 0:
        raise OperationError(f"ordinal must be >= 0, got {ordinal}")
    return new_tag if ordinal >= partition else old_tag


def expectations(replicas: int, partition: int, old_tag: str, new_tag: str,
                 current_revision: str | None = None, update_revision: str | None = None) -> list[Expected]:
    """One ``Expected`` per ordinal 0..replicas-1.

    With ``old_tag == new_tag`` (no rollout yet) every ordinal has that tag, whatever the partition.
    Revisions: ordinals >= partition are at ``update_revision``, the others at ``current_revision``.
    """
    if replicas < 0 or partition < 0:
        raise OperationError(f"replicas and partition must be >= 0, got {replicas} and {partition}")
    out = []
    for i in range(replicas):
        tag = tag_for(i, partition, old_tag, new_tag)
        revision = update_revision if i >= partition else current_revision
        out.append(Expected(ordinal=i, tag=tag, content=content_for(tag), revision=revision))
    return out


def from_statefulset(sts, base_tag: str) -> list[Expected]:
    """Expectations from the live StatefulSet (``facts.kube.StatefulSetState``).

    ``base_tag`` is the tag the set was deployed with (inventory ``statefulset.image_tag``): the
    pods below the partition keep it. The new tag is the one in the set's template now.
    """
    if sts is None:
        return []
    if sts.tag is None:
        raise OperationError(f"the StatefulSet's image {sts.image!r} has no tag: cannot tell which version pods should serve")
    return expectations(sts.replicas, sts.partition, base_tag, sts.tag,
                        sts.current_revision, sts.update_revision)


def content_plan(replicas: int, partition: int, old_tag: str, new_tag: str,
                 only_rolled: bool = False) -> dict[int, str]:
    """ordinal -> index.html content to write. ``only_rolled``: just the ordinals >= partition
    (the seed's "write v2 for index > 3" step)."""
    return {e.ordinal: e.content for e in expectations(replicas, partition, old_tag, new_tag)
            if not only_rolled or e.ordinal >= partition}

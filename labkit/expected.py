"""What each StatefulSet ordinal should run and serve (pure).

A RollingUpdate with ``partition: P`` moves only ordinals >= P to the update revision; a pod
below P keeps the revision it has (a partition never rolls a pod back) and one made again there
gets the current revision (``from_revisions``, which verify uses; each ControllerRevision names
its image). The content labkit writes follows the tag, ``Version: --<tag>`` (``content_plan``);
verify expects what labkit last wrote to each PV.
"""
from __future__ import annotations

from dataclasses import dataclass

from labkit import validate
from labkit.errors import OperationError
from labkit.facts.kube import image_tag


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
    try:
        replicas, partition = validate.replicas(replicas), validate.partition(partition)
    except ValueError as exc:
        raise OperationError(str(exc)) from None
    out = []
    for i in range(replicas):
        tag = tag_for(i, partition, old_tag, new_tag)
        revision = update_revision if i >= partition else current_revision
        out.append(Expected(ordinal=i, tag=tag, content=content_for(tag), revision=revision))
    return out


def from_revisions(sts, pods, revisions: dict[str, str | None]) -> list[Expected]:
    """Expectations as the StatefulSet controller decides them (``sts``: ``facts.kube.StatefulSetState``,
    ``revisions``: ``facts.kube.ControllerRevisions``): an ordinal at or above the partition runs the
    update revision; one below it keeps the revision its pod has (a partition never rolls a pod back)
    and a pod made again there gets the current revision. Each revision's template names the image.
    Content follows the image's tag (``content_for``); verify prefers what labkit last wrote."""
    if sts is None:
        return []
    if not sts.update_revision or sts.update_revision not in revisions:
        raise OperationError(f"the StatefulSet's update revision {sts.update_revision!r} is not among its "
                             f"ControllerRevisions ({', '.join(sorted(revisions)) or 'none'}): cannot tell "
                             "which image each pod should run")
    by_ordinal = {p.ordinal: p for p in pods if p.ordinal is not None}
    out = []
    for i in range(sts.replicas):
        pod = by_ordinal.get(i)
        if i >= sts.partition:
            revision = sts.update_revision
        elif pod is not None and pod.revision in revisions:
            revision = pod.revision
        else:
            revision = sts.current_revision if sts.current_revision in revisions else sts.update_revision
        tag = image_tag(revisions[revision])
        if tag is None:
            raise OperationError(f"revision {revision}'s image {revisions[revision]!r} has no tag: cannot tell "
                                 "which version its pods should serve")
        out.append(Expected(ordinal=i, tag=tag, content=content_for(tag), revision=revision))
    return out


def content_plan(replicas: int, partition: int, old_tag: str, new_tag: str,
                 only_rolled: bool = False) -> dict[int, str]:
    """ordinal -> index.html content to write. ``only_rolled``: just the ordinals >= partition
    (the seed's "write v2 for index > 3" step)."""
    return {e.ordinal: e.content for e in expectations(replicas, partition, old_tag, new_tag)
            if not only_rolled or e.ordinal >= partition}

"""What each StatefulSet ordinal should run and serve (pure).

A RollingUpdate with ``partition: P`` moves only ordinals >= P to the update revision; a pod
below P keeps the revision it has (a partition never rolls a pod back) and one made again there
gets the current revision (``from_revisions``, which verify uses; each ControllerRevision names
its image). The page labkit writes follows the tag, ``Version: --<tag>`` (``pages``); verify
expects what labkit last wrote to each PV.
"""
from __future__ import annotations

from dataclasses import dataclass

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


def pages(sts, pods, revisions: dict[str, str | None], *, only_rolled: bool = False) -> dict[int, str]:
    """ordinal -> the index.html labkit writes for it: its revision's version (``from_revisions``).
    ``only_rolled``: just the ordinals at or above the partition (the seed's "write v2 for index > 3")."""
    return {e.ordinal: e.content for e in from_revisions(sts, pods, revisions)
            if not only_rolled or e.ordinal >= sts.partition}

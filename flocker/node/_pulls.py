"""
The container agent's image pulls: in the background, one per image,
retried with backoff, never holding up anything else.

An application whose image the engine lacks cannot start (creating never
pulls).  The container deployer asks for the image with `PullImage`; the
node's `ImagePulls` first asks the engine whether it has it (most images
are already there) and otherwise pulls it from its registry — with the
credentials ``agent.yml`` gives for that registry, which are never logged —
while the convergence loop goes on with everything else; the pull's
progress (layers and bytes) goes to the agent's log every half second
(``flocker:node:container:pull_progress`` in the ``pull`` action).  When
the pull ends, the loop is poked: the application starts at once.  A failed pull
is remembered with the registry's message (`PullState`, reported in the
node's state) and tried again after a delay that doubles each time, up to
`BACKOFF`'s longest, for as long as an application here wants the image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attr
from eliot import Action, start_action
from eliot.twisted import DeferredContext
from pyrsistent import PClass, PMap, field, pmap
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from flocker.control import ImagePull
from flocker.runtime import (
    IContainerRuntime,
    ImagePullFailed,
    PullProgress,
    RegistryCredentials,
)

from ._deploy import IStateChange

__all__ = [
    "BACKOFF",
    "ImagePulls",
    "PullImage",
    "PullState",
    "registry_of",
]

#: Seconds before the first retry of a failed pull, the factor, the longest.
BACKOFF = (2.0, 2.0, 300.0)

#: The registry of images that name none.
DEFAULT_REGISTRY = "docker.io"


def registry_of(image: str) -> str:
    """
    The registry an image reference names: its first component when that
    looks like a host (has a ``.`` or a ``:``, or is ``localhost``), else
    Docker Hub (`DEFAULT_REGISTRY`).
    """
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return DEFAULT_REGISTRY


class PullState(PClass):
    """
    What the node knows of an image it lacks: being pulled, or failed.

    :ivar image: The image reference.
    :ivar pulling: Whether a pull runs now (else the last one failed).
    :ivar progress: The running pull's progress (``None`` before any).
    :ivar reason: The last failure's message, or ``None``.
    :ivar attempts: How many pulls failed in a row.
    :ivar since: When the first of them started (POSIX time).
    :ivar retry_at: When the next pull may start (POSIX time).
    """

    image = field(type=str, mandatory=True)
    pulling = field(type=bool, initial=False)
    progress = field(type=(PullProgress, type(None)), initial=None)
    reason = field(type=(str, type(None)), initial=None)
    attempts = field(type=int, initial=0)
    since = field(type=float, initial=0.0)
    retry_at = field(type=float, initial=0.0)

    def reported(self, application: str) -> ImagePull:
        """The pull as the node reports it for ``application``."""
        progress = self.progress or PullProgress()
        return ImagePull(
            application=application,
            image=self.image,
            pulling=self.pulling,
            reason=self.reason,
            attempts=self.attempts,
            since=self.since,
            layers_done=progress.layers_done,
            layers_total=progress.layers_total,
            bytes_done=progress.bytes_done,
            bytes_total=progress.bytes_total,
        )


@attr.s(eq=False)
class ImagePulls:
    """
    The node's image pulls.

    :ivar runtime: Pulls, and says which images the engine has.
    :ivar clock: For the retry delays.
    :ivar credentials: Registry (``host[:port]``) → its credentials.
    :ivar poke: Wakes the convergence loop when a pull ends.
    """

    runtime: IContainerRuntime = attr.ib()
    clock: IReactorTime = attr.ib()
    credentials: Mapping[str, RegistryCredentials] = attr.ib(factory=dict)
    poke: Callable[[], None] = attr.ib(default=lambda: None)
    _present: set[str] = attr.ib(factory=set, init=False)
    _states: dict[str, PullState] = attr.ib(factory=dict, init=False)

    def present(self, image: str) -> bool:
        """Whether the engine is known to have ``image``."""
        return image in self._present

    def seen(self, images: Any) -> None:
        """The engine has these images (its containers run them)."""
        self._present.update(images)

    def forget(self, image: str) -> None:
        """The engine turned out not to have ``image`` (a creation said so)."""
        self._present.discard(image)

    def due(self, image: str) -> bool:
        """Whether a pull of ``image`` should start now."""
        if image in self._present:
            return False
        state = self._states.get(image)
        return state is None or (
            not state.pulling and self.clock.seconds() >= state.retry_at
        )

    def states(self) -> PMap[str, PullState]:
        """Image → what is known of the pulls of images the engine lacks."""
        return pmap(self._states)

    def known(self) -> frozenset[str]:
        """The images the engine is known to have."""
        return frozenset(self._present)

    def waiting(self) -> frozenset[str]:
        """The images being got now, or whose retry is not due yet."""
        return frozenset(image for image in self._states if not self.due(image))

    def keep_only(self, images: frozenset[str]) -> None:
        """
        Forget the failed pulls of images no longer wanted (not in
        ``images``): an update rolled back because its image could not be
        got starts counting afresh when it is tried again, instead of
        being rolled back at once on the failures of the last try.  A pull
        running now goes on (it ends by itself), its earlier failures
        forgotten too.
        """
        for image, state in list(self._states.items()):
            if image in images:
                continue
            if state.pulling:
                self._states[image] = state.set(
                    attempts=0, reason=None, since=float(self.clock.seconds())
                )
            else:
                del self._states[image]

    def start(self, image: str) -> None:
        """Get ``image`` in the background (unless it is already being got)."""
        if not self.due(image):
            return
        previous = self._states.get(image)
        now = float(self.clock.seconds())
        self._states[image] = PullState(
            image=image,
            pulling=True,
            reason=None if previous is None else previous.reason,
            attempts=0 if previous is None else previous.attempts,
            since=now if previous is None else previous.since,
        )
        registry = registry_of(image)
        credentials = self.credentials.get(registry)
        action = start_action(
            action_type="flocker:node:container:pull",
            image=image,
            registry=registry,
            authenticated=credentials is not None,
        )
        with action.context():
            got = DeferredContext(
                Deferred.fromCoroutine(self._get(image, credentials, action))
            )
            got.addActionFinish()
        got.result.addErrback(lambda failure: None)  # logged by the action

    async def _get(
        self, image: str, credentials: RegistryCredentials | None, action: Action
    ) -> None:
        try:
            if not await self.runtime.image_exists(image):

                def progress(done: PullProgress) -> None:
                    action.log(
                        message_type="flocker:node:container:pull_progress",
                        layers_done=done.layers_done,
                        layers_total=done.layers_total,
                        bytes_done=done.bytes_done,
                        bytes_total=done.bytes_total,
                    )
                    state = self._states.get(image)
                    if state is not None:
                        self._states[image] = state.set(progress=done)

                await self.runtime.pull_image(image, credentials, progress)
        except Exception as error:
            self._failed(image, error)
            raise
        else:
            self._states.pop(image, None)
            self._present.add(image)
        finally:
            self.poke()

    def _failed(self, image: str, error: Exception) -> None:
        state = self._states[image]
        attempts = state.attempts + 1
        initial, factor, longest = BACKOFF
        delay = min(initial * factor ** (attempts - 1), longest)
        reason = error.reason if isinstance(error, ImagePullFailed) else str(error)
        self._states[image] = state.set(
            pulling=False,
            progress=None,
            reason=reason or type(error).__name__,
            attempts=attempts,
            retry_at=float(self.clock.seconds()) + delay,
        )


class _Pulling(Protocol):
    """A deployer that gets images (the container deployer)."""

    @property
    def pulls(self) -> ImagePulls | None:
        """The node's pulls."""
        ...


@implementer(IStateChange)
class PullImage(PClass):
    """Get an image the node lacks, in the background."""

    image = field(type=str, mandatory=True)
    action_type = "flocker:node:container:get_image"

    def log_fields(self) -> dict[str, Any]:
        """The image."""
        return {"image": self.image}

    def run(self, deployer: _Pulling) -> Deferred[None]:
        """Start getting it; returns at once."""
        if deployer.pulls is not None:
            deployer.pulls.start(self.image)
        return succeed(None)

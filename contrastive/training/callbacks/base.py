"""The callback contract: a side concern of fit, and the list that calls them in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class Callback:
    """A side concern of fit (detectron2's HookBase, Lightning's Callback); every method is optional."""

    def on_fit_start(self, run) -> None: ...

    def on_step_end(self, run, result) -> None: ...

    def on_epoch_end(self, run) -> None: ...

    def on_fit_end(self, run) -> None: ...

    def on_preempted(self, run) -> None:
        """A preemption signal stopped the loop after a step: save what must survive."""

    def teardown(self, run) -> None: ...


class CallbackList:
    """Callbacks called in the order given (teardown: in reverse, each one even if another failed)."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_fit_start(self, run) -> None:
        for callback in self.callbacks:
            callback.on_fit_start(run)

    def on_step_end(self, run, result) -> None:
        for callback in self.callbacks:
            callback.on_step_end(run, result)

    def on_epoch_end(self, run) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(run)

    def on_fit_end(self, run) -> None:
        for callback in self.callbacks:
            callback.on_fit_end(run)

    def on_preempted(self, run) -> None:
        for callback in self.callbacks:
            callback.on_preempted(run)

    def teardown(self, run) -> None:
        errors: list[BaseException] = []
        for callback in reversed(self.callbacks):
            try:
                callback.teardown(run)
            except Exception as exc:  # noqa: BLE001  the others still close their files
                errors.append(exc)
        if errors:
            raise errors[0]

    def __getitem__(self, kind: type) -> Any:
        """The callback of class ``kind``."""
        return next(c for c in self.callbacks if isinstance(c, kind))

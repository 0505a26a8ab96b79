"""The callback contract: a side concern of fit, and the list that calls them in order.

A callback is any object with some of the hooks `HOOKS` (every one optional) and,
for state that must survive a resume, ``state_dict() -> dict`` / ``load_state_dict(dict)``
(JSON values: numbers, strings, lists, mappings); a built-in callback with state also has a
``state_key``, its entry in a checkpoint's callback states.  The built-in callbacks receive the internal
`Run`; callbacks named in the recipe's ``callbacks:`` receive
the documented [`RunView`][contrastive.training.callbacks.view.RunView].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contrastive.errors import ContrastiveError
from contrastive.storage.run_dir import RunDir

if TYPE_CHECKING:
    from contrastive.training.build import Run

#: The hooks of a callback, in the order a run reaches them (``teardown``: always, last).
HOOKS = ("on_fit_start", "on_step_end", "on_epoch_end", "on_fit_end", "on_preempted", "teardown")


class CallbackError(ContrastiveError):
    """A callback named in the recipe raised: the run stops (exit 2) with its checkpoints intact."""


class Callback:
    """A side concern of fit (detectron2's HookBase, Lightning's Callback); every method is optional."""

    def on_fit_start(self, run: Run) -> None: ...

    def on_step_end(self, run: Run, result) -> None: ...

    def on_epoch_end(self, run: Run) -> None: ...

    def on_fit_end(self, run: Run) -> None: ...

    def on_preempted(self, run: Run) -> None:
        """A preemption signal stopped the loop after a step: save what must survive."""

    def teardown(self, run: Run) -> None: ...


@dataclass
class UserCallback:
    """A callback named in the recipe: its recipe name, the plugin that registered it, the object."""

    name: str
    source: str
    callback: Any
    key: str  # its entry in a checkpoint's callback states (the name; name#2, name#3 for repeats)

    @property
    def label(self) -> str:
        return f"callback '{self.name}' (from {self.source})"


class CallbackList:
    """Callbacks called in the order given, then the recipe's ``user`` callbacks in recipe order.

    Built-ins are called with the run, user callbacks with ``view``.  An exception in a user
    callback becomes a [`CallbackError`][contrastive.training.callbacks.base.CallbackError] naming it and its plugin.  ``teardown`` runs for
    every callback, in reverse order, each one even if another failed.
    """

    def __init__(self, callbacks: Sequence[Callback], user: Sequence[UserCallback] = (), view: Any = None) -> None:
        self.callbacks = list(callbacks)
        self.user = list(user)
        self.view = view

    def _call(self, hook: str, run: Run, *args, teardown: bool = False) -> list[BaseException]:
        errors: list[BaseException] = []
        builtins = [(getattr(c, hook), run, None) for c in self.callbacks]
        users = [(getattr(u.callback, hook, None), self.view, u) for u in self.user]
        calls = users[::-1] + builtins[::-1] if teardown else builtins + users
        for function, target, user in calls:
            if function is None:
                continue
            try:
                function(target, *args)
            except Exception as exc:
                if teardown:  # the others still close their files
                    errors.append(exc if user is None else self._failed(user, hook, exc))
                    continue
                if user is None:
                    raise
                raise self._failed(user, hook, exc) from exc
        return errors

    def _failed(self, user: UserCallback, hook: str, exc: BaseException) -> CallbackError:
        message = " ".join(str(exc).split()) or "(no message)"
        where = f" at step {self.view.step}" if self.view is not None else ""
        saved = f"; the newest checkpoint in {RunDir(self.view.out).checkpoints} is intact" if self.view is not None else ""
        return CallbackError(f"{user.label} failed in {hook}{where}: {type(exc).__name__}: {message}{saved}; "
                             f"fix or remove it from the recipe's callbacks, then continue with --trainer.resume true")

    def on_fit_start(self, run: Run) -> None:
        self._call("on_fit_start", run)

    def on_step_end(self, run: Run, result) -> None:
        self._call("on_step_end", run, result)

    def on_epoch_end(self, run: Run) -> None:
        self._call("on_epoch_end", run)

    def on_fit_end(self, run: Run) -> None:
        self._call("on_fit_end", run)

    def on_preempted(self, run: Run) -> None:
        self._call("on_preempted", run)

    def teardown(self, run: Run) -> None:
        errors = self._call("teardown", run, teardown=True)
        if errors:
            raise errors[0]

    def state_dict(self) -> dict[str, Any]:
        """``{key: state}`` of every built-in callback with a ``state_key`` and a non-empty state
        (the online linear probe's), then of every user callback with a ``state_dict`` (checked to be JSON)."""
        states = {c.state_key: state for c in self.callbacks if hasattr(c, "state_key") and (state := c.state_dict())}
        for user in self.user:
            if not hasattr(user.callback, "state_dict"):
                continue
            try:
                state = user.callback.state_dict()
                json.dumps(state, allow_nan=True)
            except Exception as exc:  # noqa: BLE001  named, as any failure of a user callback
                raise self._failed(user, "state_dict", exc) from exc
            states[user.key] = state
        return states

    def load_state_dict(self, states: dict[str, Any]) -> None:
        """Give each callback its state from a checkpoint (one absent there starts fresh)."""
        for builtin in self.callbacks:
            if hasattr(builtin, "state_key") and builtin.state_key in states:
                builtin.load_state_dict(states[builtin.state_key])
        for user in self.user:
            if user.key in states and hasattr(user.callback, "load_state_dict"):
                try:
                    user.callback.load_state_dict(states[user.key])
                except Exception as exc:  # noqa: BLE001
                    raise self._failed(user, "load_state_dict", exc) from exc

    def __getitem__(self, kind: type) -> Any:
        """The built-in callback of class ``kind``."""
        return next(c for c in self.callbacks if isinstance(c, kind))

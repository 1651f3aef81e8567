"""The served model, swappable without a restart: after a retrain promotes a new student, the server
loads it beside the old one and switches when it is ready.

- A request takes the current model when it starts (`ModelSlot.use`) and finishes on it, whatever
  happens meanwhile.
- `ModelSlot.reload(loader)` loads the new model in a background thread while the old one keeps
  serving; the switch is one assignment. The old model is closed when its last request ends.
- A failed load leaves the old model in place; the error is kept in `status()` (and logged).
- `watch_pointer` polls the promoted student's pointer file and reloads when it names another folder
  (`summ-assets serve` without --model does this every 10 s); ``POST /reload`` asks for it at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ModelSlot:
    """The current model (anything with `path` and `close()`), its users, and reloads."""

    def __init__(self, model: Any) -> None:
        self._current = model
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}
        self._retired: dict[int, Any] = {}
        self._loading: threading.Thread | None = None
        self.reloads = 0
        self.last_error: str | None = None

    @property
    def current(self) -> Any:
        return self._current

    @contextlib.contextmanager
    def use(self) -> Iterator[Any]:
        """The current model for one request; it stays open until the request ends."""
        with self._lock:
            model = self._current
            self._users[id(model)] = self._users.get(id(model), 0) + 1
        try:
            yield model
        finally:
            close = None
            with self._lock:
                self._users[id(model)] -= 1
                if self._users[id(model)] == 0 and id(model) in self._retired:
                    close = self._retired.pop(id(model))
                    del self._users[id(model)]
            if close is not None:
                close.close()

    def swap(self, model: Any) -> None:
        """Serve `model` from now on; the old one closes when its last request ends."""
        with self._lock:
            old, self._current = self._current, model
            self.reloads += 1
            close = old if self._users.get(id(old), 0) == 0 else None
            if close is None:
                self._retired[id(old)] = old
        if close is not None:
            close.close()
        log.info("now serving %s (was %s)", getattr(model, "path", model), getattr(old, "path", old))

    def reload(self, loader: Callable[[], Any], wait: bool = False) -> bool:
        """Load a model with `loader` in the background and swap it in when ready. False when a reload
        is already running. `wait`: block until it is done (tests, the watcher)."""
        with self._lock:
            if self._loading is not None and self._loading.is_alive():
                return False

            def run() -> None:
                try:
                    model = loader()
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.error("reload failed; still serving %s: %s", getattr(self._current, "path", "?"), exc)
                    return
                self.last_error = None
                self.swap(model)

            self._loading = threading.Thread(target=run, name="summ-reload", daemon=True)
            self._loading.start()
            thread = self._loading
        if wait:
            thread.join()
        return True

    def status(self) -> dict[str, Any]:
        loading = self._loading is not None and self._loading.is_alive()
        return {"reloads": self.reloads, "reloading": loading, "reload_error": self.last_error}


def pointer_target(pointer: Path) -> str | None:
    """The folder the promoted-student pointer names (None: missing, unreadable or empty)."""
    try:
        data = json.loads(Path(pointer).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = data.get("path") if isinstance(data, dict) else None
    return str(path) if path else None


def watch_pointer(
    slot: ModelSlot, pointer: Path, loader: Callable[[str], Any], every_s: float, stop: threading.Event
) -> threading.Thread:
    """A daemon thread that reloads `slot` with `loader(path)` whenever `pointer` names a folder other
    than the one served."""

    def run() -> None:
        while not stop.wait(every_s):
            target = pointer_target(pointer)
            served = str(getattr(slot.current, "path", ""))
            if target and Path(target).resolve() != Path(served).resolve():
                log.info("the promoted student changed: %s -> %s; loading it", served, target)
                slot.reload(lambda t=target: loader(t), wait=True)

    thread = threading.Thread(target=run, name="summ-watch-promoted", daemon=True)
    thread.start()
    return thread

"""Handlers: what happens to a fetched result.

Built in: the console summary (always) and the results folder (when RESULTS_DIR is set). Your own
handlers live in a module named in HANDLER_MODULES that defines `register(handlers)`; see the
README's "Writing a handler" and handlers/registry.py for the contract.
"""

import importlib

from config import Settings
from errors import ConfigError
from event_types import Event
from handlers import console
from handlers.registry import Handler, Registry
from handlers.results_folder import ResultsFolder

__all__ = ["Event", "Handler", "Registry", "ResultsFolder", "build_registry"]


def build_registry(settings: Settings) -> Registry:
    registry = Registry()
    registry.subscribe("*", console.summarize)
    if settings.results_dir is not None:
        registry.subscribe("*", ResultsFolder(settings.results_dir))
    for name in settings.handler_modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"HANDLER_MODULES names {name!r}, which cannot be imported: {exc}") from None
        register = getattr(module, "register", None)
        if not callable(register):
            raise ConfigError(f"HANDLER_MODULES names {name!r}, which has no register(handlers) function")
        try:
            register(registry)
        except ValueError as exc:  # a bad pattern
            raise ConfigError(f"HANDLER_MODULES: {name}.register failed: {exc}") from None
    return registry

"""The operator console at ``/ui/`` (wall, events, event review, cameras) and the review API, served by
the ingress of the Serve app (same port, same bearer tokens for machines, sessions for people)."""

from serve.console.routes import ConsoleRoutes, console_router

__all__ = ["ConsoleRoutes", "console_router"]

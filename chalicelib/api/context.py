"""Where a Chalice app keeps its engine: set by local mode and tests, else built once."""

from __future__ import annotations

from typing import Any

from chalicelib.bootstrap import Engine

_ATTRIBUTE = "cme_engine"


def set_engine(app: Any, engine: Engine) -> None:
    setattr(app, _ATTRIBUTE, engine)


def engine_of(app: Any) -> Engine:
    """The app's engine; a deployed Lambda builds its AWS engine on the first request."""
    engine = getattr(app, _ATTRIBUTE, None)
    if engine is None:
        from chalicelib.bootstrap import build_aws_engine
        from chalicelib.settings import Settings

        engine = build_aws_engine(Settings.from_env())
        set_engine(app, engine)
    return engine

"""How each backend is opened: one factory per backend, fed by its own settings section.

A factory opens the backend's connections (no connection is opened at import time), checks the
backend answers, prepares it (indexes, topics) and hands out the adapters it can back. It raises
:class:`~connector_core.errors.Unavailable` when the backend does not answer and
:class:`~connector_core.errors.ValidationError` (the section field in ``errors``) for a value
the backend refuses; what it opened before failing is closed again.

The settings sections (:mod:`adapters.factories.sections`) import no driver, so the settings can
be read without the optional extras; a factory module imports its driver and is only imported
when its backend is chosen.
"""

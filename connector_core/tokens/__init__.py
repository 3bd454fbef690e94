"""Token sets and their lifecycle, sans-I/O.

:class:`TokenLifecycle` decides (is it due? how long to back off? re-authorize? what becomes of
a refresh that finished late?) and :class:`TokenRecord` applies the decision and records the
token event; the application service performs the I/O. Secret fields are ``repr=False``.

Who may change a token's status, and what a refresh that finishes late may do:

* A **person** pauses (connector disabled), resumes (enabled), revokes and re-authorizes.
* The **provider** decides that a grant is dead (NEEDS_REAUTHENTICATION).
* A **refresh** only ever brings new material. It is judged against the record as stored when
  its result is committed (:meth:`TokenLifecycle.fate_of_refresh`): the record is gone or
  REVOKED → the new tokens are neither stored nor served, but revoked at the provider; the
  record holds another refresh token (re-authorized meanwhile) → dropped; else stored. A stored
  late success keeps a status set meanwhile (:meth:`TokenRecord.apply_refresh`): PAUSED stays
  paused and NEEDS_REAUTHENTICATION stays until a person authorizes again — the material is
  kept anyway, because the provider has already retired the refresh token that was used.

Refresh-token lineages (:mod:`~connector_core.tokens.refresh_deadline`): an authorization
begins one, a refresh continues it; the catalog's limits say when it dies, and TOKEN_EXPIRING
warns ahead of that, once per lineage and threshold.
"""

from connector_core.tokens.lifecycle import RefreshFate, RefreshPolicy, TokenLifecycle, TokenStatus
from connector_core.tokens.provider_errors import REAUTH_ERROR_CODES, classify_token_error
from connector_core.tokens.record import TokenRecord
from connector_core.tokens.refresh_deadline import (
    WARN_BEFORE,
    ExpiryBasis,
    RefreshDeadline,
    RefreshTokenLimits,
    RefreshWarning,
)
from connector_core.tokens.summary import CensusTally, TokenCensus, TokenState, TokenSummary, token_state
from connector_core.tokens.token_set import TokenSet

__all__ = [
    "REAUTH_ERROR_CODES",
    "WARN_BEFORE",
    "CensusTally",
    "ExpiryBasis",
    "RefreshDeadline",
    "RefreshFate",
    "RefreshPolicy",
    "RefreshTokenLimits",
    "RefreshWarning",
    "TokenCensus",
    "TokenLifecycle",
    "TokenRecord",
    "TokenSet",
    "TokenState",
    "TokenStatus",
    "TokenSummary",
    "classify_token_error",
    "token_state",
]

"""Credentials: configuration apart from runtime state, outcomes, selection and failover."""

from gemgate.pool.credential import Credential, CredentialState
from gemgate.pool.outcome import Failure, UpstreamFailed
from gemgate.pool.pool import Pool

__all__ = ["Credential", "CredentialState", "Failure", "Pool", "UpstreamFailed"]

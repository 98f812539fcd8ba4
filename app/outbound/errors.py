"""The two ways an outbound call does not happen or does not succeed."""


class OutboundRefused(Exception):
    """The URL may not be called: ambiguous, not http(s), or an address the deployment does not
    allow. Raised before any connection is made."""


class OutboundFailed(Exception):
    """The other server could not be resolved or reached, was too slow, or answered too much."""

"""Suite-wide fixtures: the real peers (oidc-provider, httpbin, a recording listener)."""

pytest_plugins = ["tests.peers.fixtures"]

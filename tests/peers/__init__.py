"""Real third-party peers (oidc-provider, httpbin, a request recorder) for the tests."""

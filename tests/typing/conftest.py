"""The seed world (the sandbox as Google, the identity provider) for running the examples."""

from tests.seeds.conftest import mockidp, seed

__all__ = ["mockidp", "seed"]

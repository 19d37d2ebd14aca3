"""The seed world (the sandbox as Google, the identity provider) for running the examples."""

from tests.seeds.conftest import seed
from tests.server.conftest import mockidp

__all__ = ["mockidp", "seed"]

"""A served domain builds its routes' request handling while it starts, not in the first answer."""

from __future__ import annotations

from fednb.demo import data
from fednb.domain.api.app import create_app
from fednb.domain.api.eager_routes import build_routes
from tests.conftest import make_domain


def test_every_included_router_of_the_domain_app_is_built_at_start(tmp_path, alice_token):
    domain = make_domain(tmp_path, "eager", data.hospital("hospital-a"), token=alice_token)
    try:
        app = create_app(domain)
        included = [r for r in app.router.routes if hasattr(r, "effective_candidates")]
        assert included, "FastAPI no longer includes routers lazily: eager_routes has nothing to do; remove it"
        assert all(r._effective_candidates_version is None for r in included)  # nothing built yet
        assert build_routes(app) > len(included)
        assert all(r._effective_candidates_version is not None for r in included)  # each one built
    finally:
        domain.close()

"""Who is calling: bearer API keys (`api_keys`) and JWTs (`jwt_claims`) checked by `authenticator`, and signed
content links (`link_signing`, issued and read by `content_links`)."""

"""Development tooling, never used by a running worker: embedded broker and S3 server (`embedded`), `vidgen demo`
(`demo`) and the README's generated settings table (`docs`, `make docs`)."""

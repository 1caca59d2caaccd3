"""Development tooling, never used by a running worker: embedded broker and S3 server (`embedded`), `vidgen demo`
(`demo`, `console_demo`) and the docs site's generated parts (`reference_docs`, `settings_reference`,
`cli_reference`, `acl_docs`; `make docs`)."""

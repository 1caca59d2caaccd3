"""Start images: where they come from (`sources`: the tenant's upload folder, image buckets, or HTTPS through
`https_download`), and how an untrusted one is decoded (`decoding`, inside the `sandbox` child process)."""

"""One job's life, from a parsed request to its answer: `runner` (its span, memory admission, retries and where a
failure goes: retry topic or DLQ), `pipeline` (start image, cache lookup, render, encode, upload), `start_image` and
`https_download` (where start images come from, and the SSRF-safe HTTPS download), `image_decoding` and
`image_sandbox` (decoding untrusted images in a limited child process), `video_encoding` (H.264 and the poster).
Which job runs when is the scheduler's (`scheduler`).

Importing this package imports nothing else: the image sandbox's child process imports `image_decoding` alone."""

"""Device memory: estimate a render's peak, pick a memory mode and admit work only while it fits.

Pure: `modes` (the modes and which devices run them), `profile` (what a model weighs), `estimate` (a render's peak
per mode) and `admission` (admit, wait or reject), unit-tested without a GPU. The edges: `probe` reads the device
and `gate` makes jobs wait, with fetching paused, until their render fits.
"""

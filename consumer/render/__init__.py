"""Rendering: loading the EasyAnimate pipeline and running it off the event loop."""

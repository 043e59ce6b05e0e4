"""Animate engines: a clip from a still (camera moves, diffusers image-to-video, Veo).

Each engine writes both renditions through :mod:`.encode`, so every clip is H.264/MP4
(yuv420p, faststart) plus VP9/WebM whatever made its frames.
"""

"""Upscale engines: a whole picture in, the same picture larger out (a new image revision).

``resample`` (Lanczos + mild sharpening, CPU, no weights) is the default; ``spandrel`` runs
any super-resolution weights file an admin lists (architecture detected by spandrel);
``refine`` would add a low-denoise diffusion pass. Every engine returns exactly the size
asked for, keeps the source's colour, and resamples alpha, never invents it.
"""

"""Hosted edit engines: vendors' image models behind their official SDKs.

``gemini`` (google-genai) and ``openai`` (openai) share one path (engine.py): the crop is
framed for the model, sent with words saying what to change and what to keep, and the
answer is aligned back (align.py) and matched in colour and grain (match.py) before
compositing keeps only the mask. Calls have a timeout and retries (calls.py). The SDKs are
imported only when an engine calls them (``pip install proofroom[hosted]``).
"""

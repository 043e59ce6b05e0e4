"""The review workflow: sessions and invites (pins, fixes and decisions build on these)."""

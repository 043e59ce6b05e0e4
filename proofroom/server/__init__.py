"""Everything that runs in the Proofroom server process."""

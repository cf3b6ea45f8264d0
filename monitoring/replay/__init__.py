"""``newsflow replay``: simulated days of a scripted feed through the real stack, scored
against the script (:mod:`monitoring.replay.run`)."""

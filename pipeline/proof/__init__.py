"""Proof tools, kept apart from the stream path: the benchmark (`newsflow bench`), fault
injection and the soak (`newsflow faults`, `newsflow soak`), hostile input and fuzzing
(`badinput`), synthetic article sources, and the stored-stream counters they share."""

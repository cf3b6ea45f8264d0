"""Base encoders: name resolution (:mod:`.resolve`), the all-mpnet-base-v2 installer
(:mod:`.mpnet`) and tiny random encoders for tests (:mod:`.tiny`)."""

"""Open-world topics: discover what the model has no topic for, onboard it with few labels."""

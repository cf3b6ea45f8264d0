"""Analysis tools run by hand over training runs' outputs (learning curves, calibration
studies); nothing in the training flow imports them."""

"""Loss functions of the generators and critics, on raw network outputs."""

"""Seed 003's lung-ultrasound GANs: one model per severity score, relativistic losses, PACGAN critic."""

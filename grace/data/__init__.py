"""Demonstration data: trajectories and their file formats, rollouts, the labelled dataset."""

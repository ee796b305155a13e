"""Stereo visual odometry, stereo terrain mapping and state estimation (later issues)."""

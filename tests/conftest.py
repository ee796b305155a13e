"""Suite-wide settings.

Under CI (``CI`` set) hypothesis runs derandomized, so a submission's result does not depend on
which random examples a run happened to draw; locally it explores new examples every run.
"""
import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

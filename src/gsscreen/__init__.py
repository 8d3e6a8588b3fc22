"""gsscreen: screening children's frontal face photos for genetic syndromes (GS).

Pipeline (one module per stage; each hands the next a plain, typed value)::

    cohort -> faces -> models -> training -> evaluation -> explain -> report / screening

A research tool. Not a medical device.
"""

__version__ = "0.1.0"

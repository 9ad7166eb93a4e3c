"""Settings for benchmark servers: the product's settings plus a bare view to compare with."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"

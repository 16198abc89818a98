"""Settings for the test suite: the real settings plus a throwaway key and fast hashing."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-production")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

from config.settings import *  # noqa: F403
from config.settings import DATABASES

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405

# One test database per pytest process, so parallel runs on one machine do not
# destroy each other's database.
_suffix = os.environ.get("TEST_DB_SUFFIX") or str(os.getpid())
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: end-to-end tests start servers in other processes that
    # must see the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / f".test-db-{_suffix}.sqlite3")}  # noqa: F405
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_routing_{_suffix}"}

# Serve static files from the apps (no collectstatic before tests).
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True

# Tests create and revoke tokens at will: look them up every time, except in the
# tests of the cache itself (tests/api/test_token_cache.py). Servers started by
# the e2e suite read the environment and keep the production default.
KAMAILIO_TOKEN_CACHE_SECONDS = 0

# Tests flush the outcome aggregator themselves, inside their transaction.
OUTCOMES_FLUSH_SECONDS = 0.0

# The decision log samples nothing unless a test asks for it (the `settings` fixture,
# before the log is first used): its writer thread would otherwise race the flush of
# the test database between tests. Servers started by the e2e suite keep the default.
ROUTING_DECISION_SAMPLE_PERCENT = 0.0

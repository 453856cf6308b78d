import os
import tempfile

# keep the event cache of the test session away from the user's cache
os.environ.setdefault("ASPEN_CACHE_DIR", tempfile.mkdtemp(prefix="aspen-test-cache-"))

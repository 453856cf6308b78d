import os
import tempfile

import numpy as np
import pytest

# keep the event cache of the test session away from the user's cache
os.environ.setdefault("ASPEN_CACHE_DIR", tempfile.mkdtemp(prefix="aspen-test-cache-"))


@pytest.fixture(scope="session")
def small_event_data():
    """``make(n_train, n_val, n_test, t_steps)``: the synthetic `EventData` cut to that many windows per
    split (evenly spaced) of ``t_steps`` steps from step 100 (short windows keep model tests fast)."""
    from data_prep.pipeline import EventData, EventWindows, prepare_events

    full = prepare_events("synthetic")

    def cut(w, n, t_steps):
        idx = np.linspace(0, len(w.y) - 1, n).astype(int)
        return EventWindows(np.ascontiguousarray(w.x[idx, 100:100 + t_steps]), w.y[idx])

    def make(n_train, n_val, n_test, t_steps):
        return EventData(cut(full.train, n_train, t_steps), cut(full.val, n_val, t_steps),
                         cut(full.test, n_test, t_steps), full.class_names, full.frontend, full.spec)

    return make

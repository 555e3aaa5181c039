"""Every test runs on one intra-op thread (restored afterwards), as dictlab's runs do by default.

Most tests run thousands of tiny operations, which intra-op threads only slow down: on a busy 2-core machine
each small LAPACK call or parallel region waits for a descheduled thread (a (90, 20) SVD: 0.24 ms on one
thread, 23 ms on two; SAE steps 10–70× slower). A test about threads sets its own count.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

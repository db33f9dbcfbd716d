"""The ``intnn`` entry point's process set-up."""

from __future__ import annotations

import platform
import sys

from torch_intnn.cli import keep_freed_memory


def test_keep_freed_memory_takes_effect_on_glibc():
    """mallopt accepts the three settings wherever glibc is the C library, and nothing is attempted elsewhere."""
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expected


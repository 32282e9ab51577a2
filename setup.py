"""Builds the optional CPU kernel (ael/core/_native.c); everything else is in pyproject.toml.

The kernel is a plain C shared library loaded with ctypes (no Python headers). It is optional:
without a C compiler the build skips it with a warning and ael uses its PyTorch implementation
of the same reductions (slower on a CPU, identical results).
"""

import sys

from setuptools import Extension, setup

# -fno-fast-math: the NaN checks (x != x) must survive a user's CFLAGS. -fno-trapping-math: nothing
# reads floating-point exception flags, and without it GCC will not vectorise a loop that selects
# between a computed value and its input (the log of the log-sum-exp).
compile_args = [] if sys.platform == "win32" else ["-O3", "-std=gnu11", "-pthread", "-fno-fast-math",
                                                   "-fno-trapping-math"]
link_args = [] if sys.platform == "win32" else ["-pthread"]

setup(
    ext_modules=[
        Extension(
            "ael.core._native_lib",
            sources=["ael/core/_native.c"],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
            optional=True,
        )
    ]
)

"""Build hook: the optional compiled batch walker (plain C, loaded with ctypes).

Everything else is in pyproject.toml. ``optional=True`` lets the install succeed without a C
compiler; pagewalk then uses its numpy path (see ``pagewalk.fast``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pagewalk.fast._walk",
            sources=["src/pagewalk/fast/_walk.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)

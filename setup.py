"""Only what pyproject.toml cannot say: the cffi extension built from native/ (see its docstring)."""
from setuptools import setup

setup(cffi_modules=["native/build_nvme.py:ffibuilder"])

"""The five seed kernels as profiles, one module each (see ``shared/seeds/``)."""

from __future__ import annotations

from pagewalk.errors import ConfigError
from pagewalk.kernel.profile import Profile


def profile_names() -> list[str]:
    """Every profile name, the default first."""
    return ["powernex", "redox", "comus", "sel4-aarch64", "atos"]


def get_profile(name: str) -> Profile:
    """The profile called ``name``."""
    key = name.lower().replace("_", "-")
    if key == "powernex":
        from pagewalk.kernel.profiles.powernex import PowerNexProfile

        return PowerNexProfile()
    if key == "redox":
        from pagewalk.kernel.profiles.redox import RedoxProfile

        return RedoxProfile()
    if key == "comus":
        from pagewalk.kernel.profiles.comus import ComusProfile

        return ComusProfile()
    if key in ("sel4-aarch64", "sel4"):
        from pagewalk.kernel.profiles.sel4 import Sel4Profile

        return Sel4Profile()
    if key in ("atos", "atos-rt"):
        from pagewalk.kernel.profiles.atos import AtosProfile

        return AtosProfile()
    raise ConfigError(f"unknown profile {name!r} (known: {', '.join(profile_names())})")

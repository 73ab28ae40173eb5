"""The CPU side: translation registers, access checks, faults and the TLB model."""

from pagewalk.mmu.cpu import CPU

__all__ = ["CPU"]

"""The event engine: simpy owns simulated time and decides who acts when.

Nothing here imports torch: the engine hands integer index sets to the kernels through callbacks.
"""

from .sync import RoundTiming, SyncEngine

__all__ = ["RoundTiming", "SyncEngine"]

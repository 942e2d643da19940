"""The demo: real handwritten digits, a small CNN, and every foxcem method on it.

:func:`load_demo_networks` gives the demo's trained networks and digits to your own code (the
tutorials use it).
"""

from foxcem.demo.networks import DemoNetworks, load_demo_networks

__all__ = ["DemoNetworks", "load_demo_networks"]

"""The demo: real handwritten digits, a small CNN, and every foxcem method on it."""

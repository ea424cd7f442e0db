//! Loom models of the ring protocol (run with `--cfg loom`).

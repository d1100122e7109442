"""Development-only tooling: `make run`'s supervisor (devrun), the embedded broker it
starts, and the helpers the tests and benches share. Not imported by any service."""

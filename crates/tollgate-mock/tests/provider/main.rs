//! Behaviour of the mock provider, driven on tokio's paused clock.

mod answers;
mod config;
mod determinism;
mod headers;
mod invariants;
mod limits;
mod pinned;
mod support;

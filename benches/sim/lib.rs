//! Nothing: this package holds the simulator's speed bench (`sim.rs`), kept apart from the layer's
//! benches so that tokio's `test-util` feature, which the simulator needs, stays out of them.

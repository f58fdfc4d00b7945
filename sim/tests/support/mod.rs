//! What the simulator's tests share: running the `sim` binary.
#![allow(dead_code)] // each test target uses part of it

use std::process::Command;

/// Runs `sim` with `args`: its exit code (-1 when a signal ended it), stdout and stderr.
pub(crate) fn sim(args: &[&str]) -> (i32, String, String) {
    outcome(Command::new(env!("CARGO_BIN_EXE_sim")).args(args))
}

/// Runs `sim` with `args` within 1 GiB of address space and 20 s of CPU time: a `sim` that
/// built or ran anything the size of what it was asked for would be ended by a signal (or abort
/// on a failed allocation) instead of exiting with code 2. The limits guard the test against
/// hanging; they assert nothing about speed.
pub(crate) fn sim_guarded(args: &[&str]) -> (i32, String, String) {
    outcome(
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 1048576 && ulimit -t 20 && exec \"$@\"")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_sim"))
            .args(args),
    )
}

fn outcome(command: &mut Command) -> (i32, String, String) {
    let out = command.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

//! `sim`: see `sim --help`.
fn main() {
    std::process::exit(tollgate_sim::cli::main());
}

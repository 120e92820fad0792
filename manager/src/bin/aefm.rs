//! `aefm`: the experiment manager's command line (all logic lives in the library).

fn main() -> std::process::ExitCode {
    aefm::cli::main()
}

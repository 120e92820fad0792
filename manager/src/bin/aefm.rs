//! `aefm`: the experiment manager's command line (all logic lives in the library).

/// mimalloc rather than glibc's malloc: the in-process load generator's Lua scripts allocate
/// several strings per request, and mimalloc makes scripted load about 7 % cheaper (see
/// `aefm-load`, which uses it for the same reason).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    aefm::cli::main()
}

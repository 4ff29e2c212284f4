//! The `gateway` binary: everything lives in the library.

/// mimalloc returns memory freed after a burst of work to the system; with
/// glibc's allocator the resident size of a replica keeping 100 000
/// credentials warm stayed ~15 % higher for good (docs/benchmarks.md, Scale).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}

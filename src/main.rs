// jemalloc returns freed memory to the system where glibc's per-thread arenas keep it:
// the server's resident set stays near what it uses.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    tracegraph::cli::main()
}

// jemalloc returns freed memory to the system where glibc's per-thread arenas keep it:
// the server's resident set stays near what it uses.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// One arena instead of four per core: the threads' caches absorb the contention, and
// freed memory is reused by any thread instead of sitting in another thread's arena.
// Freed pages go back to the system after a second rather than ten, so a burst (a
// large ingest batch) does not leave its peak resident. Together they cut the
// dashboard workload's peak resident set from 107 MB to about 61 MB. A background
// thread does that returning on time: without it, jemalloc only returns pages when
// the allocator is next used, so a server that went quiet after an ingest kept it
// resident (63-65 MB when the benchmark's W2 began, 31 MB with the thread). The
// environment variable `_RJEM_MALLOC_CONF` still overrides them.
#[cfg(not(target_env = "msvc"))]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static JEMALLOC_CONF: &[u8; 70] = b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true\0";

fn main() -> std::process::ExitCode {
    tracegraph::cli::main()
}

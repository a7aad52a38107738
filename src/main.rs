//! The `canaryd` binary: everything is in the library; this only hands over to the CLI, and
//! picks the allocator (mimalloc: the request path allocates and frees a few kilobytes per
//! request, where glibc's malloc spends its time consolidating and unlinking chunks; measured in
//! BENCHMARKS.md). `--features system-allocator` builds with the system allocator instead, for
//! comparing the two and for heap profilers that only see malloc (valgrind's dhat and massif).

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    canaryd::cli::main()
}

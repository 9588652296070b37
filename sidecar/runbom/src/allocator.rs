//! The allocator: mimalloc, and the settings that keep what runbom holds at rest small.
//!
//! Start-up allocates and frees far more than runbom keeps: loading the probes parses the
//! kernel's BTF (about 25 MiB at the peak), the first OpenSSL scan reads every process's maps.
//! mimalloc returns freed memory to the system only after `purge_delay`, and then only when a
//! later free or allocation gets round to it, which a process at rest rarely does: without help
//! that memory stays resident for good. So memory freed during start-up is returned at once;
//! once runbom is running ([`started`]) the default delay applies again, so that the busy path
//! keeps reusing what it frees instead of paying a system call for each page it empties, and
//! [`purge_expired`] returns what has stayed free for that delay every [`PURGE_EVERY`].

/// A thread-caching allocator: the pipeline allocates and frees many small buffers per request
/// on several runtime threads; glibc's malloc spent ~70% of the cycles in the benchmarks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option numbers (`mimalloc.h`, `mi_option_e`, version 3; the bindings name only
/// some of them).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc's default `purge_delay` (milliseconds), restored once start-up is over.
const PURGE_DELAY_RUNNING_MS: libc::c_long = 1000;

/// How often [`purge_expired`] looks for memory free for longer than the purge delay.
pub const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Lets the allocator return what start-up frees. By default mimalloc commits its 1 GiB arena
/// eagerly on Linux and then never returns its freed pages; committed on demand, freed pages
/// are purged, here at once until [`started`]. It must run before the first allocation reserves
/// the arena, and the Rust runtime allocates before `main`: so it runs as a constructor, with
/// the program's other initialisers.
#[used]
#[unsafe(link_section = ".init_array")]
static COMMIT_ON_DEMAND: extern "C" fn() = {
    extern "C" fn commit_on_demand() {
        // SAFETY: `mi_option_set` has no preconditions (mimalloc initialises itself first).
        unsafe {
            libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
    commit_on_demand
};

/// Start-up is over: what it freed and the allocator still holds goes back to the system, and
/// freed pages are purged after mimalloc's default delay from now on.
pub fn started() {
    // SAFETY: as above; options may be changed while other threads allocate.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_RUNNING_MS) };
    release_freed_memory();
}

/// Returns the memory the allocator holds freed to the system (the `memory_limiter` calls it
/// above its soft limit, where the Collector would force a garbage collection).
pub fn release_freed_memory() {
    // SAFETY: `mi_collect` has no preconditions; it may be called from any thread.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

/// Returns to the system what has been free for longer than the purge delay (mimalloc does
/// this itself only when a later free or allocation gets round to it); cheap when there is
/// nothing to return.
pub fn purge_expired() {
    // SAFETY: as `release_freed_memory`; not forced, so only memory past its delay is purged.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

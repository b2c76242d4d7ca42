//! The server's allocator: mimalloc (decision 12), told to give freed memory back to the
//! system at once (decision 28).
//!
//! By default mimalloc purges a freed page a second after it empties and keeps two empty pages
//! per size class in every thread's heap. The server's blocking threads (SQLite's reads, the
//! runners) each hold such pages, so its resident memory at 100,000 widgets was 468 MiB for
//! 256 MiB of caches. With both set to zero it measured 388 MiB (BENCHMARKS.md, issue 28).
//!
//! An operator's own `MIMALLOC_PURGE_DELAY` or `MIMALLOC_PAGE_FULL_RETAIN` is kept.

pub use mimalloc::MiMalloc;

/// mimalloc's option numbers (`mi_option_e` in mimalloc.h, version 3): the test below checks
/// them against the built library's defaults.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
const PAGE_FULL_RETAIN: libmimalloc_sys::mi_option_t = 36;

/// Sets the server's allocator options. Call once, first thing in `main`.
pub fn return_freed_memory_at_once() {
    for (option, env) in [
        (PURGE_DELAY, "MIMALLOC_PURGE_DELAY"),
        (PAGE_FULL_RETAIN, "MIMALLOC_PAGE_FULL_RETAIN"),
    ] {
        if std::env::var_os(env).is_none() {
            set(option, 0);
        }
    }
}

#[allow(unsafe_code)]
fn set(option: libmimalloc_sys::mi_option_t, value: i64) {
    // SAFETY: `mi_option_set` takes a plain option number and value; an option number out of
    // range is ignored by mimalloc (it asserts only in debug builds of the C library).
    unsafe { libmimalloc_sys::mi_option_set(option, value as _) }
}

#[cfg(test)]
#[allow(unsafe_code)]
fn get(option: libmimalloc_sys::mi_option_t) -> i64 {
    // SAFETY: as `set`.
    unsafe { libmimalloc_sys::mi_option_get(option) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers name the options meant: their defaults in mimalloc 3 are 1,000 ms and 2
    /// pages (another library version renumbering them fails here, not silently in the server).
    #[test]
    fn the_option_numbers_are_mimallocs() {
        assert_eq!(get(PURGE_DELAY), 1000);
        assert_eq!(get(PAGE_FULL_RETAIN), 2);
        // The neighbours are not the same defaults, so an off-by-one cannot pass.
        assert_ne!(get(PURGE_DELAY - 1), 1000);
        assert_ne!(get(PAGE_FULL_RETAIN - 1), 2);
        return_freed_memory_at_once();
        assert_eq!((get(PURGE_DELAY), get(PAGE_FULL_RETAIN)), (0, 0));
    }
}

//! The C allocator's settings for a daemon that allocates a buffer per frame.
//!
//! glibc's malloc starts by serving any block over 128 KiB from a fresh `mmap`, and later
//! hands the top of its heap back to the kernel whenever more than about twice the largest
//! freed block lies free there. A stream of frames then maps, faults in, zeroes and unmaps
//! pages for most frames. In the ingest benchmark (1x200KB, native) that page churn made the
//! daemon's CPU per GB swing by a third with nothing but the order of its allocations changed.
//!
//! [`tune`] keeps freed frame buffers in the heap for the next frames instead, and
//! [`release_free`] gives free memory back once traffic pauses, so that an idle gateway's
//! resident size still falls after a burst. On other C libraries both do nothing.

/// Blocks up to this size come from the heap, not from a mapping of their own: every frame a
/// default `max_frame_bytes` allows. It is glibc's largest allowed value on 64-bit systems.
pub const MMAP_THRESHOLD: usize = 32 * 1024 * 1024;

/// Free memory at the top of the heap is kept up to this much while frames flow. Queues are
/// bounded, so this is a bound on what stays resident between bursts, not a growth.
pub const TRIM_THRESHOLD: usize = 64 * 1024 * 1024;

/// Applies [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`] to the process's allocator. Call it
/// once, early. Returns false if the allocator refused a setting (the daemon works either way,
/// only with more page faults).
pub fn tune() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes the allocator's parameters; the values are in range
        // (glibc rejects, with 0, what is not).
        unsafe {
            let mmap = libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
            let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
            mmap == 1 && trim == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        true
    }
}

/// Gives free heap memory back to the kernel (`malloc_trim`): for when no frame is in flight.
/// Returns true if some was given back.
pub fn release_free() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases memory the allocator holds free.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_takes_the_settings_and_free_memory_goes_back_after_a_burst() {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            return;
        }
        assert!(tune(), "mallopt refused a setting");
        // A burst of frame-sized buffers, all freed: with the trim threshold raised, the
        // heap keeps them until release_free hands them back.
        let burst: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 200_000]).collect();
        assert_eq!(burst.iter().map(Vec::len).sum::<usize>(), 64 * 200_000);
        drop(burst);
        assert!(
            release_free(),
            "malloc_trim released nothing after a 12.8 MB burst"
        );
    }
}

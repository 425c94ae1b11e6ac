//! The filesystem calls the log, its spare segments and housekeeping share: the free space of
//! the data directory's filesystem, a directory's sync (so a file created, renamed or removed
//! there stays so after a power cut), and writing one range of a file out to the disk. A leaf
//! module: it imports nothing of the store.

use std::fs::File;
use std::path::Path;

/// Sync the directory `dir` itself: its entries, not the files in it.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes an unprivileged writer may still use on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| (st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Write the dirty pages of `len` bytes at `off` in `f` out to the disk and wait for them,
/// without the file's metadata or a cache flush (`sync_file_range`). A later `fsync` then has
/// only those left to do. Elsewhere than Linux this does nothing, and that `fsync` writes all.
pub fn write_out(f: &File, off: u64, len: u64) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        // SAFETY: a plain system call on an open descriptor; no memory is passed.
        let rc = unsafe { libc::sync_file_range(f.as_raw_fd(), off as i64, len as i64, flags) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (f, off, len);
    Ok(())
}

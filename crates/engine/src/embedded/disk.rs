//! The filesystem calls the log, its spare segments and housekeeping share: the free space of
//! the data directory's filesystem, and a directory's sync (so a file created, renamed or
//! removed there stays so after a power cut). A leaf module: it imports nothing of the store.

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

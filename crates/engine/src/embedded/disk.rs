//! The filesystem calls the log, its spare segments and housekeeping share: the free space of
//! the data directory's filesystem, a directory's sync (so a file created, renamed or removed
//! there stays so after a power cut), writing one range of a file out to the disk, and
//! dropping a file's pages from the page cache or reading them into it. A leaf module: it
//! imports nothing of the store.

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

/// Drop the cached pages of the file at `path` (`posix_fadvise(DONTNEED)`): reads of it go to
/// the disk again, and the memory serves what is written next. Only pages already on disk are
/// dropped. A missing file is not an error. Elsewhere than Linux this does nothing.
pub fn drop_cache(path: &Path) -> std::io::Result<()> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a plain system call on an open descriptor; no memory is passed.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = f;
    Ok(())
}

/// Read the whole file at `path` once, so that its pages are in the page cache. A missing file
/// is not an error.
pub fn read_through(path: &Path) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; 1 << 20];
    while f.read(&mut buf)? > 0 {}
    Ok(())
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Pages of `path` in the page cache (`mincore` over a mapping of the file).
    pub fn cached_pages(path: &Path) -> usize {
        use std::os::unix::io::AsRawFd;
        let f = File::open(path).unwrap();
        let len = f.metadata().unwrap().len() as usize;
        let page = 4096;
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: a read-only shared mapping of a file we keep open, unmapped before returning;
        // mincore writes one byte per page into `vec`, which has that many.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
            libc::munmap(addr, len);
        }
        vec.iter().filter(|b| **b & 1 == 1).count()
    }

    /// True when `dir` is on tmpfs, whose pages are the files themselves: nothing to drop.
    pub fn on_tmpfs(dir: &Path) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: statfs writes into the zeroed struct we pass; the path is a valid C string.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statfs(path.as_ptr(), &mut st) };
        let tmpfs = rc == 0 && st.f_type == libc::TMPFS_MAGIC;
        if tmpfs {
            eprintln!("skipped: {} is on tmpfs", dir.display());
        }
        tmpfs
    }

    /// `drop_cache` empties a synced file's pages from the cache, `read_through` fills them
    /// again; the file is the same either way. A missing file is no error for either.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_file_leaves_the_page_cache_and_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        if on_tmpfs(dir.path()) {
            return;
        }
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        File::open(&path).unwrap().sync_all().unwrap();
        assert!(cached_pages(&path) > 0);
        drop_cache(&path).unwrap();
        assert_eq!(cached_pages(&path), 0);
        read_through(&path).unwrap();
        assert_eq!(cached_pages(&path), 256);
        assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 1 << 20]);
        drop_cache(&dir.path().join("missing")).unwrap();
        read_through(&dir.path().join("missing")).unwrap();
    }
}

//! The store file as redb sees it: redb's own file backend, except that
//! space the file grows by is written with zeros at once.
//!
//! redb grows its file with `set_len`, which leaves a hole. The first write
//! into a hole allocates disk blocks, and on ext4 (and XFS) an `fdatasync`
//! after such a write must also commit the filesystem's journal: on a cloud
//! disk that is about twice the flush alone (see docs/benchmarks.md). Zeros
//! written when the file grows make every later commit an overwrite of
//! blocks the disk already has, whose `fdatasync` is one flush. redb makes
//! the grown file durable right after growing it, so the zeros reach the
//! disk in that fsync, once, not in a turn's.

use std::fs::File;
use std::ops::Bound;
use std::os::unix::fs::FileExt;

use redb::StorageBackend;
use redb::backends::FileBackend;

/// The most one growth writes zeros over; the rest of a larger growth
/// (redb grows by up to a 4 GiB region at a time) stays a hole, so no
/// growth stalls the writer for more than a few milliseconds.
const FILL_MAX: u64 = 16 << 20;

/// The zeros written at a time.
const CHUNK: usize = 1 << 20;

/// redb's file backend, with grown space written out (module docs).
#[derive(Debug)]
pub(super) struct GrownFile {
    inner: FileBackend,
    /// The same open file, for the zero writes.
    file: File,
}

impl GrownFile {
    /// Wraps an open, readable and writable `file`.
    pub(super) fn new(file: File) -> std::io::Result<Self> {
        let writer = file.try_clone()?;
        let inner = FileBackend::new(file).map_err(std::io::Error::other)?;
        Ok(Self {
            inner,
            file: writer,
        })
    }
}

impl StorageBackend for GrownFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let old = self.inner.len()?;
        self.inner.set_len(len)?;
        // Everything redb wrote lies below the old length (a write past the
        // end extends the file), so the grown range holds nothing of its yet.
        let end = len.min(old.saturating_add(FILL_MAX));
        if old < end {
            let zeros = vec![0u8; CHUNK];
            let mut at = old;
            while at < end {
                let n = usize::try_from(end - at).map_or(CHUNK, |left| left.min(CHUNK));
                self.file.write_all_at(&zeros[..n], at)?;
                at += n as u64;
            }
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Bytes of `file` the filesystem has blocks for.
    fn allocated(file: &File) -> u64 {
        file.metadata().unwrap().blocks() * 512
    }

    #[test]
    fn grown_space_is_written_and_reads_as_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .unwrap()
        };
        let grown = GrownFile::new(open()).unwrap();
        grown.write(0, b"kept").unwrap();
        grown.set_len(3 << 20).unwrap();
        // A bare set_len leaves a hole: the check can fail.
        assert!(allocated(&open()) >= 3 << 20, "the grown range is a hole");
        let mut head = [0u8; 4];
        grown.read(0, &mut head).unwrap();
        assert_eq!(&head, b"kept");
        let mut tail = vec![1u8; 4096];
        grown.read((3 << 20) - 4096, &mut tail).unwrap();
        assert!(tail.iter().all(|b| *b == 0));
        // Shrinking writes nothing; growing past FILL_MAX fills only that much.
        grown.set_len(1 << 20).unwrap();
        assert_eq!(grown.len().unwrap(), 1 << 20);
        grown.set_len(FILL_MAX * 4).unwrap();
        let blocks = allocated(&open());
        assert!((FILL_MAX..FILL_MAX * 2).contains(&blocks), "{blocks}");
    }
}

//! Read offsets that survive restarts: a small JSON file, replaced atomically.
//!
//! Files are known by (device, inode), as a rename keeps both. Because a deleted file's
//! inode is soon reused, each entry also carries a fingerprint of the file's first bytes
//! (at most [`Fingerprint::MAX_BYTES`], and never past the stored offset, so they are bytes
//! that were already there): a new file that happens to get an old inode does not match and
//! is read from its start instead of from someone else's offset.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Version of the file format, bumped on incompatible changes.
const FORMAT_VERSION: u32 = 1;

/// A file's identity: stable across renames, unlike its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct FileId {
    pub(super) dev: u64,
    pub(super) inode: u64,
}

impl FileId {
    pub(super) fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            inode: meta.ino(),
        }
    }
}

/// FNV-1a of a file's first bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Fingerprint {
    /// How many leading bytes were hashed (0: nothing to compare yet, matches any file).
    pub(super) len: u64,
    /// Their FNV-1a 64 hash.
    pub(super) hash: u64,
}

impl Fingerprint {
    /// Enough to tell two log files apart (their first lines carry timestamps), small
    /// enough to re-read on every growth check.
    pub(super) const MAX_BYTES: u64 = 1024;

    pub(super) fn of(bytes: &[u8]) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &byte in bytes {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Self {
            len: bytes.len() as u64,
            hash,
        }
    }

    /// The fingerprint of the first `min(limit, MAX_BYTES)` bytes of `file`.
    pub(super) fn read(file: &File, limit: u64) -> io::Result<Self> {
        let head = read_head(file, limit.min(Self::MAX_BYTES))?;
        Ok(Self::of(&head))
    }

    /// Whether `file` still starts with the bytes this fingerprint was taken from.
    pub(super) fn matches(&self, file: &File) -> io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        let head = read_head(file, self.len)?;
        Ok(head.len() as u64 == self.len && Self::of(&head) == *self)
    }
}

/// Up to `len` bytes from the start of `file` (fewer if it is shorter).
fn read_head(file: &File, len: u64) -> io::Result<Vec<u8>> {
    let mut head = vec![0; len as usize];
    let mut filled = 0;
    while filled < head.len() {
        match file.read_at(&mut head[filled..], filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    head.truncate(filled);
    Ok(head)
}

/// One followed file, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Entry {
    pub(super) dev: u64,
    pub(super) inode: u64,
    /// Where the file was last seen (informative, and used to prune entries of files that
    /// are gone).
    pub(super) path: PathBuf,
    /// End of the last line the pipeline accepted: reading resumes here.
    pub(super) offset: u64,
    pub(super) fingerprint: Fingerprint,
}

impl Entry {
    pub(super) fn id(&self) -> FileId {
        FileId {
            dev: self.dev,
            inode: self.inode,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    version: u32,
    files: Vec<Entry>,
}

/// A checkpoint file that could not be read or written.
#[derive(Debug, thiserror::Error)]
pub(super) enum CheckpointError {
    /// Reading failed.
    #[error("cannot read checkpoint {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The content is not a checkpoint this version understands.
    #[error("checkpoint {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// Writing, syncing or renaming the replacement failed.
    #[error("cannot write checkpoint {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Reads the checkpoint at `path`; `None` when there is none yet.
pub(super) fn load(path: &Path) -> Result<Option<Vec<Entry>>, CheckpointError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let file: CheckpointFile =
        serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Parse {
            path: path.to_owned(),
            source,
        })?;
    if file.version != FORMAT_VERSION {
        let message = format!("unsupported version {}", file.version);
        let source = serde_json::Error::io(io::Error::new(io::ErrorKind::InvalidData, message));
        return Err(CheckpointError::Parse {
            path: path.to_owned(),
            source,
        });
    }
    Ok(Some(file.files))
}

/// Replaces the checkpoint at `path` atomically: a crash leaves the old or the new one,
/// never a torn file (write a sibling, fsync it, rename over, fsync the directory).
pub(super) fn store(path: &Path, entries: &[Entry]) -> Result<(), CheckpointError> {
    let write_error = |source| CheckpointError::Write {
        path: path.to_owned(),
        source,
    };
    let file = CheckpointFile {
        version: FORMAT_VERSION,
        files: entries.to_vec(),
    };
    let json =
        serde_json::to_vec_pretty(&file).map_err(|error| write_error(io::Error::other(error)))?;
    let tmp = tmp_path(path);
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(write_error)?;
    }
    let mut out = File::create(&tmp).map_err(write_error)?;
    out.write_all(&json)
        .and_then(|()| out.sync_all())
        .map_err(write_error)?;
    drop(out);
    fs::rename(&tmp, path).map_err(write_error)?;
    // Makes the rename itself durable; not every filesystem lets a directory be synced.
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        let _ = File::open(dir).and_then(|dir| dir.sync_all());
    }
    Ok(())
}

/// The sibling the next checkpoint is written to before it is renamed over `path`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

/// `path`'s directory, resolved (`None` when it cannot be).
fn resolved_dir(path: &Path) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.canonicalize().ok()
}

/// How a file newly found by a scan relates to the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Claim {
    /// The same file as before: resume at this offset.
    Resume(u64),
    /// Its inode is in the checkpoint, but its first bytes differ: a new file.
    Reused,
    /// Never seen.
    Unknown,
}

/// The checkpoint state: entries of files not currently followed (loaded at start and not
/// yet found, or dropped while their path still exists), and what was last written.
#[derive(Debug)]
pub(super) struct Checkpoints {
    path: PathBuf,
    dormant: HashMap<FileId, Entry>,
    last_written: Option<Vec<Entry>>,
    last_write: Option<Instant>,
    /// The last write failed (and was logged).
    failing: bool,
}

impl Checkpoints {
    /// Loads the checkpoint at `path`. An unreadable one is logged and ignored (files are
    /// then treated as never seen) rather than stopping the source.
    pub(super) fn load(path: PathBuf) -> Self {
        let entries = match load(&path) {
            Ok(entries) => entries.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "ignoring the file source checkpoint");
                Vec::new()
            }
        };
        let dormant = entries
            .into_iter()
            .map(|entry| (entry.id(), entry))
            .collect();
        Self {
            path,
            dormant,
            last_written: None,
            last_write: None,
            failing: false,
        }
    }

    /// Takes the entry of a file a scan has just found and opened.
    pub(super) fn claim(&mut self, id: FileId, file: &File) -> Claim {
        let Some(entry) = self.dormant.remove(&id) else {
            return Claim::Unknown;
        };
        match entry.fingerprint.matches(file) {
            Ok(true) => Claim::Resume(entry.offset),
            Ok(false) => Claim::Reused,
            Err(error) => {
                tracing::warn!(path = %entry.path.display(), %error, "cannot check the file's fingerprint; reading it from the start");
                Claim::Reused
            }
        }
    }

    /// Keeps the entry of a file no longer followed, until its path no longer leads to it.
    pub(super) fn keep_dormant(&mut self, entry: Entry) {
        self.dormant.insert(entry.id(), entry);
    }

    /// Whether `every` has passed since the last write.
    pub(super) fn due(&self, every: Duration) -> bool {
        self.last_write.is_none_or(|at| at.elapsed() >= every)
    }

    /// Writes `live` plus the dormant entries whose files still exist, if that differs
    /// from what was last written. Failures are logged; the next call retries.
    pub(super) fn save(&mut self, mut live: Vec<Entry>) {
        self.last_write = Some(Instant::now());
        self.dormant.retain(|id, entry| {
            fs::metadata(&entry.path).is_ok_and(|meta| FileId::of(&meta) == *id)
        });
        live.extend(self.dormant.values().cloned());
        live.sort_by_key(Entry::id);
        if self.last_written.as_ref() == Some(&live) {
            return;
        }
        match store(&self.path, &live) {
            Ok(()) => {
                if std::mem::take(&mut self.failing) {
                    tracing::info!(path = %self.path.display(), "file source checkpoint saved again");
                }
                self.last_written = Some(live);
            }
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::warn!(%error, "file source checkpoint not saved; retrying every second");
            }
            Err(error) => tracing::debug!(%error, "file source checkpoint still not saved"),
        }
    }

    /// Whether `path` is the checkpoint file or its temporary sibling, so that a glob broad
    /// enough to match them does not make the source tail its own state.
    pub(super) fn is_own_file(&self, path: &Path) -> bool {
        let name = path.file_name();
        let own = name.is_some()
            && (name == self.path.file_name() || name == tmp_path(&self.path).file_name());
        // Names rarely match, so the directories are only resolved when they do.
        own && resolved_dir(path).is_some_and(|dir| Some(dir) == resolved_dir(&self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &Path, offset: u64, fingerprint: Fingerprint) -> Entry {
        let id = FileId::of(&fs::metadata(path).unwrap());
        Entry {
            dev: id.dev,
            inode: id.inode,
            path: path.to_owned(),
            offset,
            fingerprint,
        }
    }

    #[test]
    fn store_then_load_round_trips_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        fs::write(&log, "hello\n").unwrap();
        let path = dir.path().join("state/checkpoint.json");
        let entries = vec![entry(&log, 6, Fingerprint::of(b"hello\n"))];
        store(&path, &entries).unwrap();
        assert_eq!(load(&path).unwrap(), Some(entries));
        assert!(!dir.path().join("state/checkpoint.json.tmp").exists());
        assert_eq!(load(&dir.path().join("missing.json")).unwrap(), None);
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(load(&path), Err(CheckpointError::Parse { .. })));
        let checkpoints = Checkpoints::load(dir.path().join("state/../state/cp.json"));
        assert!(checkpoints.is_own_file(&dir.path().join("state/cp.json")));
        assert!(checkpoints.is_own_file(&dir.path().join("state/cp.json.tmp")));
        assert!(!checkpoints.is_own_file(&dir.path().join("cp.json")));
    }

    #[test]
    fn a_reused_inode_with_other_first_bytes_is_not_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        fs::write(&log, "2024-01-01 first file\n").unwrap();
        let mut checkpoints = Checkpoints::load(dir.path().join("cp.json"));
        let file = File::open(&log).unwrap();
        let same = entry(&log, 22, Fingerprint::read(&file, 22).unwrap());
        let id = same.id();
        checkpoints.keep_dormant(same.clone());
        assert_eq!(checkpoints.claim(id, &file), Claim::Resume(22));
        assert_eq!(
            checkpoints.claim(id, &file),
            Claim::Unknown,
            "an entry is claimed once"
        );
        checkpoints.keep_dormant(Entry {
            fingerprint: Fingerprint::of(b"2025-06-30 other file\n"),
            ..same
        });
        assert_eq!(checkpoints.claim(id, &file), Claim::Reused);
    }

    #[test]
    fn save_prunes_entries_of_files_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, gone) = (dir.path().join("kept.log"), dir.path().join("gone.log"));
        fs::write(&kept, "k\n").unwrap();
        fs::write(&gone, "g\n").unwrap();
        let path = dir.path().join("cp.json");
        let mut checkpoints = Checkpoints::load(path.clone());
        checkpoints.keep_dormant(entry(&kept, 2, Fingerprint::default()));
        checkpoints.keep_dormant(entry(&gone, 2, Fingerprint::default()));
        fs::remove_file(&gone).unwrap();
        checkpoints.save(Vec::new());
        let stored = load(&path).unwrap().unwrap();
        assert_eq!(
            stored.iter().map(|e| e.path.clone()).collect::<Vec<_>>(),
            vec![kept]
        );
    }
}

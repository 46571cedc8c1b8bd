//! Atomic replacement of files and directories, and the sweep of temporaries of killed runs.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{parent_of, FsError, Result};

/// Every temporary file or directory of the workspace starts with this, then the writer's
/// process id and a dash: `.twin-tmp-4242-Xa9b3`. [`sweep_stale`] relies on that shape.
pub const TEMP_PREFIX: &str = ".twin-tmp-";

fn builder(prefix: &str, directory: bool) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    // Ordinary permissions rather than tempfile's private 0600/0700: what lands after the
    // rename must be readable like any file the user writes.
    #[cfg(unix)]
    builder.permissions(<std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(if directory { 0o755 } else { 0o644 }));
    #[cfg(not(unix))]
    let _ = directory;
    builder
}

fn own_prefix() -> String {
    format!("{TEMP_PREFIX}{}-", std::process::id())
}

/// What is at `path` without following a symlink: `None` when nothing is.
pub(crate) fn existing(path: &Path) -> Result<Option<std::fs::Metadata>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::io(path, e)),
    }
}

/// Refuses a target that exists and is not a regular file (symlink, directory, device, FIFO).
fn check_file_target(target: &Path) -> Result<()> {
    match existing(target)? {
        Some(m) if !m.file_type().is_file() => {
            Err(FsError::refused(target, format!("is {}, not a regular file; refusing to replace it", kind(&m))))
        }
        _ => Ok(()),
    }
}

/// "a symlink", "a directory", ... for error messages.
pub(crate) fn kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_symlink() {
        return "a symlink";
    }
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// A file written under a temporary name beside `target` and renamed over it by
/// [`commit`](Self::commit). Dropped without a commit, the temporary file is removed and the
/// target is untouched.
pub struct AtomicFile {
    tmp: BufWriter<tempfile::NamedTempFile>,
    target: PathBuf,
}

impl AtomicFile {
    /// Starts writing `target`, which must be a regular file or not exist. Temporaries that
    /// killed runs left in the same directory are removed first.
    pub fn create(target: &Path) -> Result<Self> {
        check_file_target(target)?;
        let dir = parent_of(target);
        sweep_stale(dir);
        let prefix = own_prefix();
        let tmp = builder(&prefix, false).tempfile_in(dir).map_err(|e| FsError::io(target, e))?;
        Ok(Self { tmp: BufWriter::with_capacity(1 << 16, tmp), target: target.to_path_buf() })
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        self.tmp.get_ref().path()
    }

    /// The file this will replace.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes, syncs and renames the temporary file over the target.
    pub fn commit(self) -> Result<()> {
        self.commit_with(|_| Ok(()))
    }

    /// [`commit`](Self::commit) with a hook that runs once the temporary file is complete and
    /// synced, just before the rename; tests use it to stand for a crash at the worst moment.
    pub fn commit_with(self, before_rename: impl FnOnce(&Path) -> std::io::Result<()>) -> Result<()> {
        let target = self.target;
        let io = |e| FsError::io(&target, e);
        let tmp = self.tmp.into_inner().map_err(|e| io(e.into_error()))?;
        tmp.as_file().sync_all().map_err(io)?;
        before_rename(tmp.path()).map_err(io)?;
        // The target may have been replaced by a symlink or device while we wrote.
        check_file_target(&target)?;
        tmp.persist(&target).map_err(|e| io(e.error))?;
        // The rename is durable only once the directory is: a power loss must not bring back
        // the old name after the caller was told the new file is in place.
        sync_dir(parent_of(&target)).map_err(io)?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tmp.write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.tmp.write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.tmp.flush()
    }
}

/// Syncs a directory's entries (a rename into it). A no-op where directories cannot be opened.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A directory built under a temporary name beside `target` and moved into place by
/// [`commit`](Self::commit). Dropped without a commit, it is removed.
pub struct AtomicDir {
    tmp: tempfile::TempDir,
    target: PathBuf,
}

impl AtomicDir {
    /// Starts building `target`. Whether an existing `target` may be replaced is decided at
    /// [`commit`](Self::commit); callers that can tell earlier use [`check_dir_target`].
    pub fn create(target: &Path) -> Result<Self> {
        let parent = parent_of(target);
        std::fs::create_dir_all(parent).map_err(|e| FsError::io(parent, e))?;
        sweep_stale(parent);
        let prefix = own_prefix();
        let tmp = builder(&prefix, true).tempdir_in(parent).map_err(|e| FsError::io(target, e))?;
        Ok(Self { tmp, target: target.to_path_buf() })
    }

    /// The temporary directory to write into.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Moves the finished directory to the target. An existing target is replaced only when it
    /// is a real directory (not a symlink) and `may_replace` accepts it; the swap is one atomic
    /// exchange on Linux, so at every instant one complete directory is at the target's name.
    pub fn commit(self, may_replace: impl FnOnce(&Path) -> std::result::Result<(), String>) -> Result<()> {
        let target = self.target;
        let staged = self.tmp.keep();
        let undo = |e: FsError| {
            let _ = std::fs::remove_dir_all(&staged);
            e
        };
        match check_dir_target(&target, may_replace) {
            Ok(false) => {
                std::fs::rename(&staged, &target).map_err(|e| undo(FsError::io(&target, e)))?;
            }
            Ok(true) => {
                exchange(&staged, &target).map_err(|e| undo(FsError::io(&target, e)))?;
                // `staged` now holds the old directory. If removing it fails, its temporary
                // name marks it for the next sweep.
                let _ = std::fs::remove_dir_all(&staged);
            }
            Err(e) => return Err(undo(e)),
        }
        Ok(())
    }
}

/// Whether `target` exists and may be replaced (`Ok(true)`), does not exist (`Ok(false)`), or
/// must not be touched (an error naming it): anything that is not a directory, a symlink, or a
/// directory that `may_replace` refuses.
pub fn check_dir_target(target: &Path, may_replace: impl FnOnce(&Path) -> std::result::Result<(), String>) -> Result<bool> {
    match existing(target)? {
        None => Ok(false),
        Some(m) if m.file_type().is_dir() => match may_replace(target) {
            Ok(()) => Ok(true),
            Err(reason) => Err(FsError::refused(target, reason)),
        },
        Some(m) => Err(FsError::refused(target, format!("is {}, not a directory this tool wrote; refusing to replace it", kind(&m)))),
    }
}

/// Swaps two directory entries atomically (Linux `renameat2(RENAME_EXCHANGE)`); elsewhere, or
/// on a file system without it, the old entry is first renamed aside under a temporary name.
fn exchange(staged: &Path, target: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let a = CString::new(staged.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        let b = CString::new(target.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: both are valid NUL-terminated paths that live across the call.
        let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) {
            return Err(err);
        }
    }
    let aside = parent_of(target).join(format!("{}aside-{}", own_prefix(), std::process::id()));
    std::fs::rename(target, &aside)?;
    if let Err(e) = std::fs::rename(staged, target) {
        let _ = std::fs::rename(&aside, target);
        return Err(e);
    }
    std::fs::rename(&aside, staged)
}

/// Removes the temporaries ([`TEMP_PREFIX`]) in `dir` whose writing process no longer runs:
/// what a killed run left. Entries of live processes, and every other entry, are left alone.
/// Errors are ignored: sweeping is housekeeping, never a reason to fail a write.
pub fn sweep_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_owner) else { continue };
        if pid == std::process::id() || alive(pid) {
            continue;
        }
        let path = entry.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {
                let _ = std::fs::remove_dir_all(&path);
            }
            Ok(m) if m.file_type().is_file() => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

/// The process id in a temporary's name, if `name` has the shape this crate gives them.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    let (pid, tail) = rest.split_once('-')?;
    if tail.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else { return true };
        // SAFETY: signal 0 only asks whether the process exists.
        let rc = unsafe { libc::kill(pid, 0) };
        rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_appears_only_on_commit_and_a_dropped_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        std::fs::write(&target, "old").unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        f.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"never").unwrap();
        drop(f);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary left");
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_and_devices_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.txt");
        std::fs::write(&real, "keep").unwrap();
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = AtomicFile::create(&link).err().unwrap().to_string();
        assert!(err.contains("symlink") && err.contains("link.txt"), "{err}");
        let err = AtomicFile::create(Path::new("/dev/null")).err().unwrap().to_string();
        assert!(err.contains("device"), "{err}");
        assert!(Path::new("/dev/null").exists());
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "keep");
    }

    #[test]
    fn a_failure_before_the_rename_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        std::fs::write(&target, "old").unwrap();
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"new").unwrap();
        let err = f.commit_with(|tmp| {
            assert_eq!(std::fs::read_to_string(tmp).unwrap(), "new");
            Err(std::io::Error::other("simulated crash"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
    }

    #[test]
    fn directories_swap_only_over_what_the_caller_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pkg");
        let d = AtomicDir::create(&target).unwrap();
        std::fs::write(d.path().join("a"), "1").unwrap();
        d.commit(|_| Err("never asked".into())).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "1");

        let d = AtomicDir::create(&target).unwrap();
        std::fs::write(d.path().join("a"), "2").unwrap();
        let err = d.commit(|_| Err("not a package".into())).unwrap_err().to_string();
        assert!(err.contains("not a package") && err.contains("pkg"), "{err}");
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "1");

        let d = AtomicDir::create(&target).unwrap();
        std::fs::write(d.path().join("a"), "3").unwrap();
        d.commit(|_| Ok(())).unwrap();
        assert_eq!(std::fs::read_to_string(target.join("a")).unwrap(), "3");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("pkg")], "the old directory and temporaries are gone");

        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let d = AtomicDir::create(&file).unwrap();
        assert!(d.commit(|_| Ok(())).unwrap_err().to_string().contains("regular file"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    }

    #[test]
    fn the_sweep_removes_only_temporaries_of_dead_processes() {
        let dir = tempfile::tempdir().unwrap();
        // A process id far above Linux's pid_max cannot be running.
        let dead_file = dir.path().join(format!("{TEMP_PREFIX}999999999-abc"));
        let dead_dir = dir.path().join(format!("{TEMP_PREFIX}999999999-def"));
        let live = dir.path().join(format!("{TEMP_PREFIX}{}-ghi", std::process::id()));
        let unrelated = [".twin-tmp-", ".twin-tmp-12x-a", ".twin-tmp-5-", "data.csv", ".retrieve-abc"];
        std::fs::write(&dead_file, "").unwrap();
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("inner"), "").unwrap();
        std::fs::write(&live, "").unwrap();
        for u in unrelated {
            std::fs::write(dir.path().join(u), "").unwrap();
        }
        sweep_stale(dir.path());
        assert!(!dead_file.exists() && !dead_dir.exists());
        assert!(live.exists());
        for u in unrelated {
            assert!(dir.path().join(u).exists(), "{u}");
        }
    }

    #[test]
    fn temp_names_parse() {
        assert_eq!(temp_owner(".twin-tmp-42-abc"), Some(42));
        assert_eq!(temp_owner(".twin-tmp-42-"), None);
        assert_eq!(temp_owner(".twin-tmp--abc"), None);
        assert_eq!(temp_owner("x.twin-tmp-42-abc"), None);
    }
}

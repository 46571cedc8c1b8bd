//! File and stream I/O that never loses data, shared by every crate and binary of the workspace.
//!
//! Each job has one helper here, so that the promises in the README hold everywhere alike:
//!
//! * [`AtomicFile`] and [`AtomicDir`]: a new file or directory is written under a temporary
//!   name beside its target and renamed into place only when complete, so a crash or a
//!   `kill -9` leaves the old content or the new, never half of one. Temporary names carry the
//!   writer's process id; [`sweep_stale`] removes those whose process is gone, so killed runs
//!   leave nothing behind for long.
//! * [`check_output`]: an output must be a regular file or not exist yet, and must not be one of
//!   the command's inputs. Symlinks, devices, FIFOs and directories are refused, never replaced.
//! * [`WriterLock`]: an advisory lock that serializes the writers of one file.
//! * [`exit`], [`say!`] and [`warn!`]: a closed standard output ends a command quietly, and a
//!   closed standard error never ends it, instead of the panics of `println!` and `eprintln!`.
//! * [`escape_terminal`]: text from files or users is shown with control characters escaped.
//!
//! ```
//! use fsio::{check_output, AtomicFile};
//! use std::io::Write;
//!
//! let dir = tempfile::tempdir()?;
//! let target = dir.path().join("out.csv");
//! check_output(&target, &[])?;
//! let mut file = AtomicFile::create(&target)?;
//! writeln!(file, "a,b")?;
//! file.commit()?;
//! assert_eq!(std::fs::read_to_string(&target)?, "a,b\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod atomic;
mod lock;
mod output;
mod stdio;

pub use atomic::{check_dir_target, sweep_stale, AtomicDir, AtomicFile, TEMP_PREFIX};
pub use lock::WriterLock;
pub use output::{check_output, same_file};
pub use stdio::{escape_terminal, exit, is_broken_pipe};

use std::path::{Path, PathBuf};

/// Errors of this crate; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The operating system refused an operation on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The path cannot be used as asked (not a regular file, an input of the command, ...).
    #[error("{path}: {reason}")]
    Refused {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl FsError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        FsError::Io { path: path.to_path_buf(), source }
    }
    pub(crate) fn refused(path: &Path, reason: impl Into<String>) -> Self {
        FsError::Refused { path: path.to_path_buf(), reason: reason.into() }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, FsError>;

/// The directory a path lives in (`.` for a bare file name).
/// The file beside `path` whose name is `path`'s with `suffix` appended (`i.idx` → `i.idx.lock`):
/// how a file's lock, journal and graph are named.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// Writes a line to standard output and returns the `std::io::Result`, for `?`: unlike
/// `println!`, a closed standard output is an error the caller can end on quietly ([`exit`]).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        ::std::writeln!(::std::io::stdout(), $($arg)*)
    }};
}

/// Writes a line to standard error and ignores failure: a closed or full standard error must
/// never stop a command that is still writing a file (`eprintln!` panics there).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}

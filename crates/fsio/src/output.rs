//! Checks on an output path before anything is computed or written.

use std::path::Path;

use crate::{FsError, Result};

/// Errors unless `output` is a regular file or does not exist yet, and is none of `inputs`.
///
/// Called before the work starts, so a bad `-o` fails in a second rather than after minutes,
/// and a command never writes over the file it reads (`dedup F -o F`) or over a symlink,
/// device or directory (`-o /dev/null`).
pub fn check_output(output: &Path, inputs: &[&Path]) -> Result<()> {
    match crate::atomic::existing(output)? {
        None => return Ok(()),
        Some(m) if m.file_type().is_file() => {}
        Some(m) => {
            return Err(FsError::refused(
                output,
                format!(
                    "is {}; outputs are written only to regular files (leave out the output option to write to standard output, and redirect that)",
                    crate::atomic::kind(&m)
                ),
            ))
        }
    }
    for input in inputs {
        if same_file(output, input) {
            return Err(FsError::refused(output, format!("is also this command's input {}; write to another file", input.display())));
        }
    }
    Ok(())
}

/// Whether two paths name the same existing file (same device and inode on Unix).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) else { return false };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        ma.dev() == mb.dev() && ma.ino() == mb.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (ma, mb);
        matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_must_be_new_or_regular_and_not_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.txt");
        std::fs::write(&input, "x").unwrap();
        assert!(check_output(&dir.path().join("new.csv"), &[&input]).is_ok());
        let other = dir.path().join("other.csv");
        std::fs::write(&other, "y").unwrap();
        assert!(check_output(&other, &[&input]).is_ok());
        let err = check_output(&input, &[&input]).unwrap_err().to_string();
        assert!(err.contains("input") && err.contains("in.txt"), "{err}");
        // The same file under another spelling.
        let spelled = dir.path().join(".").join("in.txt");
        assert!(check_output(&spelled, &[&input]).is_err());
        let err = check_output(dir.path(), &[]).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        #[cfg(unix)]
        {
            assert!(check_output(Path::new("/dev/null"), &[]).unwrap_err().to_string().contains("device"));
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&input, &link).unwrap();
            assert!(check_output(&link, &[]).unwrap_err().to_string().contains("symlink"));
        }
    }
}

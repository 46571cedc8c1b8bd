//! Standard streams: closed pipes, and text that must not drive the terminal.

use std::borrow::Cow;
use std::error::Error;

/// Whether `err`, or any error in its chain of sources, is a broken pipe: the reader of our
/// standard output went away (`retrieve … | head -n1`). Commands then stop quietly.
pub fn is_broken_pipe(err: &(dyn Error + 'static)) -> bool {
    let mut cur: Option<&(dyn Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        cur = e.source();
    }
    false
}

/// The exit of a command-line binary: success, or the error on standard error (control
/// characters escaped, the chain of causes on one line) and exit status 1. A broken pipe counts
/// as success: the reader took what it wanted, and files being written were finished or left
/// untouched.
pub fn exit<E>(result: std::result::Result<(), E>) -> std::process::ExitCode
where
    E: std::fmt::Display + AsRef<dyn Error + Send + Sync + 'static>,
{
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(e.as_ref()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            crate::warn!("error: {}", escape_terminal(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Whether `c` must not reach a terminal raw: C0/C1 controls (newline and escape among them)
/// and the Unicode bidirectional overrides that reorder what a line appears to say.
fn needs_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// `s` with control characters written as escapes (`\n`, `\t`, `\r`, `\u{1b}`), so a stored
/// sentence or a query prints on one line and cannot move the cursor, recolour the terminal or
/// forge a result line. Text without such characters is returned as it is.
pub fn escape_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_and_plain_text_is_not_copied() {
        assert!(matches!(escape_terminal("How do I learn Rust? é ü 中"), Cow::Borrowed(_)));
        assert_eq!(escape_terminal("a\nb\tc\rd"), "a\\nb\\tc\\rd");
        assert_eq!(escape_terminal("\x1b[31mred\x1b[0m"), "\\u{1b}[31mred\\u{1b}[0m");
        assert_eq!(escape_terminal("x\u{7f}\u{9b}y"), "x\\u{7f}\\u{9b}y");
        assert_eq!(escape_terminal("abc\u{202E}def"), "abc\\u{202e}def");
        assert!(!escape_terminal("one\n  2. 0.999  duplicate  forged").contains('\n'));
    }

    #[derive(Debug)]
    struct Wrap(std::io::Error);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "writing output")
        }
    }
    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn broken_pipes_are_found_through_the_chain() {
        let pipe = Wrap(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&pipe));
        let other = Wrap(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(!is_broken_pipe(&other));
    }
}

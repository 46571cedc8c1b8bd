//! Reading and writing `tokenizer.json` (atomically, through `fsio`).

use std::io::Write;
use std::path::Path;

use tokenizers::Tokenizer;

use crate::error::tk_err;
use crate::{Result, TokenizeError, WordTokenizer, PAD, PAD_ID, UNK, UNK_ID};

impl WordTokenizer {
    /// The tokenizer as `tokenizer.json` text.
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(tk_err)
    }

    /// Reads a tokenizer from `tokenizer.json` text; `origin` names the source in errors.
    pub fn from_json(json: &str, origin: &Path) -> Result<Self> {
        let corrupt = |reason: String| TokenizeError::Corrupt { path: origin.to_path_buf(), reason };
        let inner: Tokenizer = json.parse().map_err(|e| corrupt(format!("{e}")))?;
        if inner.token_to_id(PAD) != Some(PAD_ID) || inner.token_to_id(UNK) != Some(UNK_ID) {
            return Err(corrupt(format!("expected {PAD} = {PAD_ID} and {UNK} = {UNK_ID}")));
        }
        let max_len = inner.get_truncation().map(|t| t.max_length).unwrap_or(48);
        Self::around(inner, max_len)
    }

    /// Writes `tokenizer.json` atomically: a crash mid-write leaves any previous file intact.
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        let io = |source| TokenizeError::Io { path: path.to_path_buf(), source };
        let mut file = fsio::AtomicFile::create(path)?;
        file.write_all(json.as_bytes()).map_err(io)?;
        file.commit()?;
        Ok(())
    }

    /// Reads `tokenizer.json`.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| TokenizeError::Io { path: path.to_path_buf(), source })?;
        let json =
            String::from_utf8(bytes).map_err(|e| TokenizeError::Corrupt { path: path.to_path_buf(), reason: format!("not UTF-8: {e}") })?;
        Self::from_json(&json, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::tiny;

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let mut tok = tiny();
        tok.set_max_len(7).unwrap();
        tok.save(&path).unwrap();
        let back = WordTokenizer::load(&path).unwrap();
        assert_eq!(back.max_len(), 7);
        assert_eq!(back.vocab(), tok.vocab());
        let texts = ["the dog sat", "zebra!"];
        assert_eq!(back.encode_batch(&texts).unwrap(), tok.encode_batch(&texts).unwrap());
    }

    #[test]
    fn corrupt_or_missing_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = WordTokenizer::load(&missing).unwrap_err().to_string();
        assert!(err.contains("nope.json"), "{err}");
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, b"{ not json").unwrap();
        let err = WordTokenizer::load(&bad).unwrap_err().to_string();
        assert!(err.contains("bad.json") && err.contains("not a valid tokenizer"), "{err}");
        std::fs::write(&bad, [0xff, 0xfe, 0x00]).unwrap();
        assert!(WordTokenizer::load(&bad).unwrap_err().to_string().contains("UTF-8"));
    }
}

//! A package's weight files read without burn's tensor stack.
//!
//! `model.bpk` and `head.bpk` are burnpack files (burn's own format, written by
//! [`ModelPackage::save`](super::package::ModelPackage::save) with the `burn` feature). Inference
//! on the host needs only their numbers, so they are parsed with the small `burn-pack` crate
//! into named f32 buffers. Every tensor is checked against the shape `config.json` implies, and
//! a file with tensors nobody asked for is refused: weights that do not fit the config are an
//! error naming the file, never a silently different model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{EncoderError, Result};

/// The tensors of one burnpack file, by name, until each is taken.
pub(crate) struct Weights {
    path: PathBuf,
    tensors: BTreeMap<String, (burn_pack::DType, Vec<usize>, burn_pack::Bytes)>,
}

fn bad(path: &Path, reason: impl std::fmt::Display) -> EncoderError {
    EncoderError::Package { path: path.to_path_buf(), reason: reason.to_string() }
}

impl Weights {
    /// Parses the burnpack `bytes` read from `path` (named in every error).
    pub(crate) fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let unreadable = |e: burn_pack::Error| bad(path, format!("unreadable weights: {e}"));
        let reader = burn_pack::Reader::from_bytes(burn_pack::Bytes::from_bytes_vec(bytes)).map_err(unreadable)?;
        let mut tensors = BTreeMap::new();
        for tensor in reader.into_tensors().map_err(unreadable)? {
            let (name, dtype, shape, _, data) = tensor.into_parts().map_err(unreadable)?;
            tensors.insert(name, (dtype, shape.to_vec(), data));
        }
        Ok(Self { path: path.to_path_buf(), tensors })
    }

    /// The tensor `name`, which must be f32 of exactly `shape`, as row-major values.
    pub(crate) fn take(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (dtype, got, data) =
            self.tensors.remove(name).ok_or_else(|| bad(&self.path, format!("weights do not fit config.json: no tensor {name:?}")))?;
        if got != shape {
            return Err(bad(
                &self.path,
                format!("weights do not fit config.json: {name} has shape {got:?}, config.json implies {shape:?}"),
            ));
        }
        if dtype != burn_pack::DType::F32 {
            return Err(bad(&self.path, format!("{name} is stored as {dtype:?}; this build reads f32 weights")));
        }
        let n: usize = shape.iter().product();
        if data.len() != n * 4 {
            return Err(bad(&self.path, format!("{name}: {} bytes for {n} f32 values", data.len())));
        }
        Ok(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }

    /// Succeeds when every tensor of the file was taken: a leftover means the file was written
    /// for another shape of model than `config.json` describes.
    pub(crate) fn finish(self) -> Result<()> {
        match self.tensors.keys().next() {
            None => Ok(()),
            Some(_) => {
                let names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
                Err(bad(&self.path, format!("weights do not fit config.json: unexpected tensors {}", names.join(", "))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(tensors: &[(&str, burn_pack::DType, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let tensors = tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                burn_pack::Tensor::new(
                    name.to_string(),
                    *dtype,
                    shape.iter().copied().collect::<burn_pack::Shape>(),
                    None,
                    burn_pack::Bytes::from_bytes_vec(bytes.clone()),
                )
            })
            .collect();
        burn_pack::Writer::new(tensors).into_bytes().unwrap().to_vec()
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn takes_tensors_by_name_and_shape() {
        let bytes = pack(&[
            ("a.w", burn_pack::DType::F32, vec![2, 2], f32_bytes(&[1.0, 2.0, 3.0, -4.5])),
            ("b", burn_pack::DType::F32, vec![1], f32_bytes(&[7.0])),
        ]);
        let path = Path::new("m/model.bpk");
        let mut w = Weights::parse(path, bytes.clone()).unwrap();
        assert_eq!(w.take("a.w", &[2, 2]).unwrap(), vec![1.0, 2.0, 3.0, -4.5]);
        let leftover = w.finish().unwrap_err().to_string();
        assert!(leftover.contains("m/model.bpk") && leftover.contains("unexpected tensors b"), "{leftover}");

        let mut w = Weights::parse(path, bytes.clone()).unwrap();
        let wrong = w.take("a.w", &[4]).unwrap_err().to_string();
        assert!(wrong.contains("shape [2, 2]") && wrong.contains("[4]"), "{wrong}");
        let missing = w.take("c", &[1]).unwrap_err().to_string();
        assert!(missing.contains("no tensor \"c\""), "{missing}");

        let truncated = Weights::parse(path, bytes[..bytes.len() - 3].to_vec()).err().expect("a cut file is refused").to_string();
        assert!(truncated.contains("m/model.bpk: unreadable weights"), "{truncated}");
        assert!(Weights::parse(path, b"not a burnpack file at all".to_vec()).is_err());
    }

    #[test]
    fn refuses_other_element_types() {
        let bytes = pack(&[("a", burn_pack::DType::F64, vec![1], 1.0f64.to_le_bytes().to_vec())]);
        let err = Weights::parse(Path::new("h.bpk"), bytes).unwrap().take("a", &[1]).unwrap_err().to_string();
        assert!(err.contains("stored as F64"), "{err}");
    }
}

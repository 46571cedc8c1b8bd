//! Initialisation: the vocabulary and the model a run starts from (fresh, optionally with GloVe
//! vectors, or the package `model.init` names), and the optimiser.

use burn::module::Module;
use burn::nn::DropoutConfig;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use data::Pair;
use encoder::{Coverage, EncoderConfig, Glove, ModelPackage, SentenceEncoder, TwinEncoder, VerdictHead, VerdictHeadConfig};
use tokenize::WordTokenizer;

use crate::config::{DataDirs, LossKind, TrainConfig};
use crate::fit::step::Trainable;
use crate::Result;

/// What training starts from.
pub(crate) struct Initial {
    /// The vocabulary.
    pub tokenizer: WordTokenizer,
    /// The encoder's shape, as the package will store it.
    pub enc_cfg: EncoderConfig,
    /// The twin encoder and, with a verdict loss, its head.
    pub model: Trainable,
    /// The head's shape, when there is a head.
    pub head_cfg: Option<VerdictHeadConfig>,
    /// GloVe coverage of the vocabulary, when GloVe was used.
    pub coverage: Option<Coverage>,
}

/// The encoder (and the head a fine-tuned package brings) before training.
struct Start {
    tokenizer: WordTokenizer,
    enc_cfg: EncoderConfig,
    encoder: SentenceEncoder,
    coverage: Option<Coverage>,
    head: Option<(VerdictHeadConfig, VerdictHead)>,
}

/// Builds the model `cfg` describes on `device`, printing where it starts from. The vocabulary
/// comes from `train` (seeded with the GloVe words) unless `model.init` brings one.
pub(crate) fn initialise(cfg: &TrainConfig, dirs: &DataDirs, train: &[Pair], device: &Device) -> Result<Initial> {
    let start = match &cfg.model.init {
        Some(dir) => from_package(cfg, dir, device)?,
        None => fresh(cfg, dirs, train, device)?,
    };
    if let Some(c) = &start.coverage {
        fsio::warn!("GloVe covers {} of {} vocabulary words ({:.1}%)", c.found, c.vocab, 100.0 * c.ratio());
    }
    // A verdict loss trains a head: the fine-tuned package's own, or a fresh one.
    let (head_cfg, head) = if cfg.train.loss.iter().any(|l| l.kind == LossKind::Verdict) {
        let (c, h) = start.head.unwrap_or_else(|| {
            let c = VerdictHeadConfig::new(start.enc_cfg.d_output())
                .with_d_hidden(cfg.model.head_hidden)
                .with_input_scale(cfg.model.head_input_scale)
                .with_seed(cfg.model.seed.wrapping_add(3));
            let h = c.init(device);
            (c, h)
        });
        (Some(c), Some(h))
    } else {
        (None, None)
    };
    let mut model = Trainable { twin: TwinEncoder { encoder: start.encoder }, head, projection: None };
    if cfg.model.freeze_embeddings {
        model.twin.encoder.embedding = model.twin.encoder.embedding.no_grad();
    }
    Ok(Initial { tokenizer: start.tokenizer, enc_cfg: start.enc_cfg, model, head_cfg, coverage: start.coverage })
}

/// Fine-tuning: vocabulary, shape and weights come from the package in `dir`.
fn from_package(cfg: &TrainConfig, dir: &std::path::Path, device: &Device) -> Result<Start> {
    let pkg = ModelPackage::load(dir)?;
    let mut encoder = pkg.encoder_module(device)?;
    let head = pkg.config.head.clone().zip(pkg.head_module(device)?);
    let mut tokenizer = pkg.tokenizer;
    tokenizer.set_max_len(cfg.tokenizer.max_len)?;
    let enc_cfg = pkg.config.encoder.with_dropout(cfg.model.dropout);
    encoder.dropout = DropoutConfig::new(cfg.model.dropout).init();
    fsio::warn!("starting from {} (vocabulary {}, {} hidden)", dir.display(), tokenizer.vocab_size(), enc_cfg.d_hidden);
    Ok(Start { tokenizer, enc_cfg, encoder, coverage: None, head })
}

/// A fresh encoder over a vocabulary built from `train`; with GloVe, the vocabulary is seeded
/// with its words and the embedding table starts from its vectors.
fn fresh(cfg: &TrainConfig, dirs: &DataDirs, train: &[Pair], device: &Device) -> Result<Start> {
    let glove = match &cfg.model.glove {
        Some(g) => Some(Glove::load(&DataDirs::resolve(&dirs.embeddings, g), cfg.model.glove_limit)?),
        None => None,
    };
    // Config validation guarantees GloVe whenever extra vectors are set.
    let glove = match (glove, &cfg.model.extra_vectors) {
        (Some(g), Some(e)) => Some(g.append(&Glove::load(e, None)?)),
        (glove, _) => glove,
    };
    let seeds: &[String] = glove.as_ref().map(|g| g.words.as_slice()).unwrap_or(&[]);
    let tokenizer = WordTokenizer::build(train.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()]), &cfg.tokenizer, seeds)?;
    let d_embed = glove.as_ref().map(|g| g.dim).unwrap_or(cfg.model.d_embed);
    let enc_cfg = EncoderConfig::new(tokenizer.vocab_size())
        .with_d_embed(d_embed)
        .with_d_hidden(cfg.model.d_hidden)
        .with_bidirectional(cfg.model.bidirectional)
        .with_pooling(cfg.model.pooling)
        .with_dropout(cfg.model.dropout)
        .with_normalize(cfg.model.normalize)
        .with_seed(cfg.model.seed);
    let (encoder, coverage) = match &glove {
        Some(g) => {
            let (table, cov) = g.embedding_table(&tokenizer, cfg.model.seed);
            (enc_cfg.init_with_embeddings(table, device), Some(cov))
        }
        None => (enc_cfg.init(device), None),
    };
    Ok(Start { tokenizer, enc_cfg, encoder, coverage, head: None })
}

/// Adam, with the gradient norm clipped at `train.grad_clip` when that is positive.
pub(crate) fn optimizer(cfg: &TrainConfig) -> ModuleOptimizer {
    crate::fit::adam(cfg.train.backend, cfg.train.grad_clip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_vectors_are_appended_to_each_glove_row() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("g.txt"), "cat 1 2\ndog 3 4\n").unwrap();
        let extra = dir.path().join("teacher.txt");
        std::fs::write(&extra, "dog 9\ncat 8\n").unwrap();
        let text = format!(
            "[data]\nformat = \"csv\"\ntrain = \"p.csv\"\n[model]\nglove = \"g.txt\"\nextra_vectors = {:?}\n",
            extra.display().to_string()
        );
        let cfg: TrainConfig = toml::from_str(&text).unwrap();
        let dirs = DataDirs { data: dir.path().into(), embeddings: dir.path().into() };
        let train = [Pair { a: "cat".into(), b: "dog".into(), label: 1.0, line: 1 }];
        let device = encoder::Backend::Flex.device();
        let start = fresh(&cfg, &dirs, &train, &device).unwrap();
        assert_eq!(start.enc_cfg.d_embed, 3);
        let table = start.encoder.embedding.weight.val().into_data().try_into_vec::<f32>().unwrap();
        let row = |w: &str| {
            let id = start.tokenizer.token_to_id(w).unwrap() as usize;
            table[id * 3..id * 3 + 3].to_vec()
        };
        assert_eq!((row("cat"), row("dog")), (vec![1.0, 2.0, 8.0], vec![3.0, 4.0, 9.0]));
        // A missing file is an error naming it.
        let cfg: TrainConfig = toml::from_str(&text.replace("teacher.txt", "missing.txt")).unwrap();
        let err = fresh(&cfg, &dirs, &train, &device).err().unwrap().to_string();
        assert!(err.contains("missing.txt"), "{err}");
    }
}

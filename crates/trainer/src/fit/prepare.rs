//! Preparation: the training and validation pairs a config names, loaded, scaled, split and
//! merged with its extra sources.

use std::collections::HashSet;
use std::path::Path;

use data::{load_pairs, split_train_valid, LoadOptions, Pair, PairFormat};

use crate::config::{DataConfig, DataDirs, GradedConfig, SourceConfig};
use crate::{Result, TrainError};

/// The pairs a run trains and validates on.
pub(crate) struct Prepared {
    /// Training pairs: the split (or the whole training file), the extra sources, and with
    /// `symmetric` every pair the other way round.
    pub train: Vec<Pair>,
    /// Validation pairs.
    pub valid: Vec<Pair>,
    /// Reporting pairs (`data.report_size`): loaded only so that nothing is learnt from them.
    pub report: Vec<Pair>,
    /// Whether validation is on graded scores rather than 0/1 labels.
    pub graded: bool,
    /// The validation labels' original range.
    pub range: (f32, f32),
}

/// Warns about skipped rows: the first few with their line, then one count per reason, so that a
/// file with thousands of unscored rows (SemEval 2015/2016 distractors) does not flood the terminal.
fn report_skipped(path: &Path, skipped: &[data::BadRow]) {
    const SHOWN: usize = 3;
    for bad in skipped.iter().take(SHOWN) {
        fsio::warn!("warning: {}:{}: skipped: {}", path.display(), bad.line, bad.reason);
    }
    if skipped.len() > SHOWN {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for bad in &skipped[SHOWN..] {
            match counts.iter_mut().find(|(r, _)| *r == bad.reason) {
                Some((_, n)) => *n += 1,
                None => counts.push((&bad.reason, 1)),
            }
        }
        for (reason, n) in counts {
            fsio::warn!("warning: {}: {n} more rows skipped: {reason}", path.display());
        }
    }
}

/// Loads one file of pairs and scales its labels to `[0, 1]` by the format's score range.
/// Binary files must hold 0/1 labels; graded labels outside their range are errors.
pub fn load_scaled(path: &Path, format: PairFormat, subset: Option<&str>, range: (f32, f32), skip_bad: bool) -> Result<Vec<Pair>> {
    let opts = LoadOptions { skip_bad, subset: subset.map(str::to_string) };
    let loaded = load_pairs(path, format, opts)?;
    report_skipped(path, &loaded.skipped);
    let mut pairs = loaded.pairs;
    if range == (0.0, 1.0) {
        data::load::check_binary(path, &pairs)?;
        return Ok(pairs);
    }
    let (lo, hi) = range;
    for p in &mut pairs {
        if !(lo..=hi).contains(&p.label) {
            return Err(TrainError::Data(data::DataError::Row {
                path: path.to_path_buf(),
                line: p.line,
                reason: format!("score {} outside the range [{lo}, {hi}]", p.label),
            }));
        }
        p.label = (p.label - lo) / (hi - lo);
    }
    Ok(pairs)
}

/// The whole training file of `d`, scaled, and where it lies.
pub(crate) fn load_train_file(d: &DataConfig, dirs: &DataDirs) -> Result<(std::path::PathBuf, Vec<Pair>)> {
    let path = DataDirs::resolve(&dirs.data, &d.train);
    let all = load_scaled(&path, d.format, d.subset.as_deref(), d.range_of(d.format), d.skip_bad_rows)?;
    Ok((path, all))
}

/// The three parts of a training file without a separate validation file: training pairs, the
/// selection part (`valid_size` pairs: epochs, seeds and thresholds are chosen on it) and the
/// reporting part (`report_size` pairs, used for nothing but the numbers reported). The same
/// config always gives the same parts; with `report_size = 0` the split is the plain
/// train/validation split of earlier packages.
pub(crate) fn split_parts(all: Vec<Pair>, d: &DataConfig) -> (Vec<Pair>, Vec<Pair>, Vec<Pair>) {
    let (train, mut held) = split_train_valid(all, d.valid_size + d.report_size, d.split_seed);
    let report = held.split_off(d.valid_size.min(held.len()));
    (train, held, report)
}

/// Loads the pairs `d` names: training and validation pairs (a separate file, or a seeded split
/// of the training file), at most `train_size` training pairs, the extra sources, and the
/// swapped pairs when `symmetric`.
pub(crate) fn prepare(d: &DataConfig, dirs: &DataDirs) -> Result<Prepared> {
    let (train_path, all) = load_train_file(d, dirs)?;
    let (mut train, valid, report) = match &d.valid {
        Some(v) => {
            let vf = d.valid_format();
            let valid = load_scaled(&DataDirs::resolve(&dirs.data, v), vf, d.valid_subset.as_deref(), d.range_of(vf), d.skip_bad_rows)?;
            (all, valid, Vec::new())
        }
        None => {
            if all.len() <= d.valid_size + d.report_size {
                return Err(TrainError::Training(format!(
                    "{}: {} pairs cannot give {} validation and {} reporting pairs and still train",
                    train_path.display(),
                    all.len(),
                    d.valid_size,
                    d.report_size
                )));
            }
            split_parts(all, d)
        }
    };
    if let Some(n) = d.train_size {
        train.truncate(n);
    }
    if !d.extra.is_empty() {
        add_extra(d, dirs, &valid, &report, &mut train)?;
    }
    if d.symmetric {
        let swapped: Vec<Pair> = train.iter().map(|p| Pair { a: p.b.clone(), b: p.a.clone(), ..p.clone() }).collect();
        train.extend(swapped);
    }
    Ok(Prepared { train, valid, report, graded: d.graded(), range: d.range_of(d.valid_format()) })
}

/// A pair's texts in a fixed order, so that `(a, b)` and `(b, a)` match.
fn unordered(p: &Pair) -> (String, String) {
    if p.a <= p.b {
        (p.a.clone(), p.b.clone())
    } else {
        (p.b.clone(), p.a.clone())
    }
}

/// The pairs no training source may bring: the validation and reporting pairs and every pair of
/// `exclude` (evaluation splits; SemEval STS holds STS-B dev), in either order.
fn banned_pairs(dirs: &DataDirs, exclude: &[SourceConfig], valid: &[Pair], report: &[Pair]) -> Result<HashSet<(String, String)>> {
    let mut banned: HashSet<(String, String)> = valid.iter().chain(report).map(unordered).collect();
    for src in exclude {
        let path = DataDirs::resolve(&dirs.data, &src.path);
        let pairs = load_pairs(&path, src.format, LoadOptions { skip_bad: true, subset: src.subset.clone() })?;
        banned.extend(pairs.pairs.iter().map(unordered));
    }
    Ok(banned)
}

/// The scaled pairs of each of `sources` that are not `banned`, saying how many each file gave.
fn load_sources(
    d: &DataConfig,
    dirs: &DataDirs,
    sources: &[SourceConfig],
    banned: &HashSet<(String, String)>,
    skip_bad: bool,
    what: &str,
) -> Result<Vec<Pair>> {
    let mut out = Vec::new();
    for src in sources {
        let path = DataDirs::resolve(&dirs.data, &src.path);
        let more = load_scaled(&path, src.format, src.subset.as_deref(), d.range_of(src.format), skip_bad)?;
        let before = more.len();
        let kept: Vec<Pair> = more.into_iter().filter(|p| !banned.contains(&unordered(p))).collect();
        fsio::warn!(
            "{}: {} {what}{}",
            path.display(),
            kept.len(),
            if kept.len() < before { format!(" ({} held-out pairs dropped)", before - kept.len()) } else { String::new() }
        );
        out.extend(kept);
    }
    Ok(out)
}

/// Adds the pairs of `d.extra` to `train`, leaving out every validation pair and every pair of
/// `d.exclude` (in either order): extra sources may contain evaluation pairs (SemEval STS holds
/// STS-B dev).
fn add_extra(d: &DataConfig, dirs: &DataDirs, valid: &[Pair], report: &[Pair], train: &mut Vec<Pair>) -> Result<()> {
    let banned = banned_pairs(dirs, &d.exclude, valid, report)?;
    train.extend(load_sources(d, dirs, &d.extra, &banned, d.skip_bad_rows, "more training pairs")?);
    Ok(())
}

/// The graded pairs of a run: those it trains on and the selection slices held out of them.
#[derive(Debug, Default)]
pub(crate) struct GradedData {
    /// Pairs the regression term learns from.
    pub train: Vec<Pair>,
    /// The selection slices, scored after every epoch and never trained on.
    pub slices: Vec<HeldSlice>,
}

/// One graded selection slice, drawn.
#[derive(Debug, Clone)]
pub(crate) struct HeldSlice {
    /// Its name in logs and metrics ([`GradedSlice::name`](crate::config::GradedSlice::name)).
    pub name: String,
    /// Its pairs, scores scaled to `[0, 1]`.
    pub pairs: Vec<Pair>,
    /// The file's score range, for the MSE on the gold scale.
    pub range: (f32, f32),
}

impl GradedData {
    /// Every sentence of the selection slices: the distillation transfer set must not hold them.
    pub fn slice_sentences(&self) -> HashSet<&str> {
        self.slices.iter().flat_map(|s| s.pairs.iter().flat_map(|p| [p.a.as_str(), p.b.as_str()])).collect()
    }
}

/// The graded pairs of `g` (scores scaled to `[0, 1]`), without any validation or reporting
/// pair of `data` and without the pairs of `g.exclude` or `d.exclude`; and `g.select`'s slices,
/// drawn first (seeded by `d.split_seed`), whose pairs then leave every training source too
/// (the STS-B files repeat SemEval's pairs).
pub(crate) fn graded_pairs(g: &GradedConfig, d: &DataConfig, dirs: &DataDirs, data: &Prepared) -> Result<GradedData> {
    let exclude: Vec<SourceConfig> = g.exclude.iter().chain(&d.exclude).cloned().collect();
    let mut banned = banned_pairs(dirs, &exclude, &data.valid, &data.report)?;
    let mut slices = Vec::new();
    for slice in &g.select {
        let pool = load_sources(d, dirs, &[slice.source()], &banned, d.skip_bad_rows, "graded pairs to draw a selection slice from")?;
        let (_, held) = split_train_valid(pool, slice.size, d.split_seed);
        banned.extend(held.iter().map(unordered));
        slices.push(HeldSlice { name: slice.name(), pairs: held, range: d.range_of(slice.format) });
    }
    let train = load_sources(d, dirs, &g.sources, &banned, d.skip_bad_rows, "graded pairs")?;
    Ok(GradedData { train, slices })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graded_pairs_are_scaled_and_never_evaluation_pairs() {
        let dir = tempfile::tempdir().unwrap();
        // SemEval STS layout: score, sentence, sentence.
        std::fs::write(dir.path().join("train.tsv"), "5.0\ta cat sits\ta cat is sitting\n1.0\tthe sun\tdogs bark\n2.5\tx y\tz w\n")
            .unwrap();
        std::fs::write(dir.path().join("dev.tsv"), "4.0\tdogs bark\tthe sun\n").unwrap();
        let d: DataConfig = toml::from_str("format = \"qqp\"\ntrain = \"q.tsv\"\n").unwrap();
        let dirs = DataDirs { data: dir.path().to_path_buf(), embeddings: dir.path().to_path_buf() };
        let src = |path: &str| SourceConfig { format: PairFormat::Sts, path: path.into(), subset: None };
        let pair = |a: &str, b: &str| Pair { a: a.into(), b: b.into(), label: 1.0, line: 1 };
        // "x y / z w" is a reporting pair, written the other way round.
        let data = Prepared { train: vec![], valid: vec![], report: vec![pair("z w", "x y")], graded: false, range: (0.0, 1.0) };
        let g = GradedConfig { sources: vec![src("train.tsv")], exclude: vec![src("dev.tsv")], batch_size: 2, weight: 1.0, select: vec![] };
        let got = graded_pairs(&g, &d, &dirs, &data).unwrap().train;
        // The dev pair (swapped) and the reporting pair are gone; scores are scaled from [0, 5].
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].a.as_str(), got[0].b.as_str(), got[0].label), ("a cat sits", "a cat is sitting", 1.0));
        // Without the exclusions, all three come, scaled.
        let open = GradedConfig { exclude: vec![], ..g };
        let empty = Prepared { report: vec![], ..data };
        let labels: Vec<f32> = graded_pairs(&open, &d, &dirs, &empty).unwrap().train.iter().map(|p| p.label).collect();
        assert_eq!(labels, vec![1.0, 0.2, 0.5]);
        // A missing file is an error that names it.
        let missing = GradedConfig { sources: vec![src("nope.tsv")], ..open };
        assert!(format!("{}", graded_pairs(&missing, &d, &dirs, &empty).unwrap_err()).contains("nope.tsv"));
    }

    #[test]
    fn selection_slices_leave_every_training_source() {
        let dir = tempfile::tempdir().unwrap();
        let rows: String = (0..20).map(|i| format!("{}.0\ts{i} a\ts{i} b\n", i % 6)).collect();
        std::fs::write(dir.path().join("one.tsv"), &rows).unwrap();
        // A second file repeating five of the first file's pairs the other way round.
        let again: String = (0..5).map(|i| format!("{}.0\ts{i} b\ts{i} a\n", i % 6)).collect();
        std::fs::write(dir.path().join("two.tsv"), &again).unwrap();
        let d: DataConfig = toml::from_str("format = \"qqp\"\ntrain = \"q.tsv\"\nsplit_seed = 3\n").unwrap();
        let dirs = DataDirs { data: dir.path().to_path_buf(), embeddings: dir.path().to_path_buf() };
        let src = |path: &str| SourceConfig { format: PairFormat::Sts, path: path.into(), subset: None };
        let slice = crate::config::GradedSlice { format: PairFormat::Sts, path: "one.tsv".into(), subset: None, size: 8 };
        let g = GradedConfig {
            sources: vec![src("one.tsv"), src("two.tsv")],
            exclude: vec![],
            batch_size: 2,
            weight: 1.0,
            select: vec![slice],
        };
        let data = Prepared { train: vec![], valid: vec![], report: vec![], graded: false, range: (0.0, 1.0) };
        let got = graded_pairs(&g, &d, &dirs, &data).unwrap();
        assert_eq!(got.slices.len(), 1);
        let HeldSlice { name, pairs: held, range } = &got.slices[0];
        assert_eq!((name.as_str(), held.len(), *range), ("one", 8, (0.0, 5.0)));
        // No held pair is trained on, in either order or from either file.
        let held_keys: HashSet<(String, String)> = held.iter().map(unordered).collect();
        assert!(got.train.iter().all(|p| !held_keys.contains(&unordered(p))));
        let from_two = got.train.iter().filter(|p| p.b.ends_with(" a")).count();
        let held_in_two = (0..5).filter(|i| held_keys.contains(&(format!("s{i} a"), format!("s{i} b")))).count();
        assert_eq!((got.train.len() - from_two, from_two), (12, 5 - held_in_two));
        // The slice's sentences, for the transfer set to drop; the same seed draws the same slice.
        assert_eq!(got.slice_sentences().len(), 16);
        let again = graded_pairs(&g, &d, &dirs, &data).unwrap();
        assert_eq!(
            again.slices[0].pairs.iter().map(|p| p.a.clone()).collect::<Vec<_>>(),
            held.iter().map(|p| p.a.clone()).collect::<Vec<_>>()
        );
        // Scores are scaled like the training pairs'.
        assert!(held.iter().all(|p| (p.label * 5.0 - (p.label * 5.0).round()).abs() < 1e-6 && p.label <= 1.0));
    }
}

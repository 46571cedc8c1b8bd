//! Training end to end on a 40-pair fixture written for these tests.

use std::path::PathBuf;

use encoder::{Backend, ModelPackage};
use trainer::config::{DataDirs, LossKind, LossSpec, SelectMetric, TrainConfig};
use trainer::{EvalOptions, TrainRun};

fn fixtures() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn tiny() -> TrainConfig {
    TrainConfig::load(&fixtures().join("tiny.toml")).unwrap()
}

fn dirs() -> DataDirs {
    DataDirs { data: fixtures(), embeddings: fixtures() }
}

#[test]
fn loss_falls_and_the_package_works() {
    let out = tempfile::tempdir().unwrap();
    let run = TrainRun { progress: false, output: Some(out.path().join("model")) };
    let report = trainer::train(&tiny(), &dirs(), &run).unwrap();
    let first = report.epochs.first().unwrap().train_loss;
    let last = report.epochs.last().unwrap().train_loss;
    assert!(last < 0.7 * first, "training loss did not fall: {first} -> {last}");
    assert_eq!(report.train_pairs, 30);
    assert_eq!(report.valid_pairs, 10);

    let device = Backend::Flex.device();
    let package = ModelPackage::load(&out.path().join("model")).unwrap();
    assert_eq!(package.threshold, report.threshold);
    assert_eq!(package.metrics["best_epoch"].as_u64(), Some(report.best_epoch as u64));
    // Evaluating on the data it learned from at the stored threshold beats chance.
    let pairs = data::load_pairs(&fixtures().join("pairs.csv"), data::PairFormat::Csv, Default::default()).unwrap();
    let r = trainer::evaluate(&package, &pairs.pairs, &EvalOptions { retrieval: true, ..Default::default() }, &device).unwrap();
    assert!(r.binary.accuracy > 0.6, "{r:?}");
    // 20 duplicate pairs with distinct first questions: 20 queries, found far better than chance.
    let ret = r.retrieval.unwrap();
    assert_eq!(ret.queries, 20);
    assert!(ret.mrr_at_10 > 0.3, "{ret:?}");
    assert!(report.best.retrieval.is_some(), "binary validation reports retrieval");
}

#[test]
fn same_config_trains_alike_on_every_backend() {
    let mut losses = Vec::new();
    for backend in Backend::ALL {
        if !backend.required_in_tests() {
            eprintln!("no wgpu adapter on this machine (and not under CI): wgpu left out");
            continue;
        }
        let mut cfg = tiny();
        cfg.train.epochs = 1;
        cfg.train.backend = backend;
        // The verdict head trains on every backend too.
        cfg.train.loss.push(LossSpec::new(LossKind::Verdict));
        let out = tempfile::tempdir().unwrap();
        let run = TrainRun { progress: false, output: Some(out.path().join("m")) };
        let report = trainer::train(&cfg, &dirs(), &run).unwrap();
        assert_eq!(report.backend, backend.to_string());
        losses.push((backend, report.epochs[0].train_loss));
    }
    // Same host-seeded initial weights (encoder and head) and batches: the first epoch's loss
    // agrees across backends.
    let (_, reference) = losses[0];
    for (backend, loss) in &losses {
        assert!((loss - reference).abs() < 1e-3 * reference.max(1.0), "{backend}: {loss} vs {reference}");
    }
}

#[test]
fn frozen_embeddings_stay_at_their_initial_values() {
    let mut cfg = tiny();
    cfg.model.freeze_embeddings = true;
    cfg.train.epochs = 2;
    let out = tempfile::tempdir().unwrap();
    let run = TrainRun { progress: false, output: Some(out.path().join("m")) };
    trainer::train(&cfg, &dirs(), &run).unwrap();
    let device = Backend::Flex.device();
    let package = ModelPackage::load(&out.path().join("m")).unwrap();
    let fresh = package.config.encoder.init(&device);
    let table = |w: &burn::module::Param<burn::Tensor<2>>| w.val().into_data().try_into_vec::<f32>().unwrap();
    let encoder = package.encoder_module(&device).unwrap();
    assert_eq!(table(&encoder.embedding.weight), table(&fresh.embedding.weight));
    assert_ne!(table(&encoder.forward_lstm.w_hidden), table(&fresh.forward_lstm.w_hidden), "the LSTM still trains");
}

#[test]
fn every_loss_trains_alone_and_in_combination() {
    for losses in [
        vec![LossSpec::new(LossKind::OnlineContrastive)],
        vec![LossSpec::new(LossKind::InBatchNegatives)],
        vec![LossSpec::new(LossKind::Regression)],
        vec![LossSpec::new(LossKind::Verdict)],
        vec![LossSpec::new(LossKind::Contrastive), LossSpec { weight: 0.5, ..LossSpec::new(LossKind::InBatchNegatives) }],
    ] {
        let mut cfg = tiny();
        cfg.train.loss = losses.clone();
        let out = tempfile::tempdir().unwrap();
        let run = TrainRun { progress: false, output: Some(out.path().join("m")) };
        let report = trainer::train(&cfg, &dirs(), &run).unwrap();
        let first = report.epochs.first().unwrap().train_loss;
        let last = report.epochs.last().unwrap().train_loss;
        assert!(last < 0.8 * first, "{losses:?}: training loss did not fall: {first} -> {last}");
    }
}

#[test]
fn a_verdict_loss_trains_ships_and_judges_with_a_head() {
    let mut cfg = tiny();
    cfg.train.loss.push(LossSpec::new(LossKind::Verdict));
    cfg.train.select = SelectMetric::Ap;
    cfg.model.head_hidden = 16;
    let out = tempfile::tempdir().unwrap();
    let run = TrainRun { progress: false, output: Some(out.path().join("m")) };
    let report = trainer::train(&cfg, &dirs(), &run).unwrap();
    assert!(report.epochs.iter().all(|e| e.head.is_some()), "every epoch measures the head");
    let best_head = report.best.head.unwrap();
    // The kept epoch is the one whose head ranked the validation pairs best.
    let top = report.epochs.iter().map(|e| e.head.as_ref().unwrap().average_precision).fold(f64::MIN, f64::max);
    assert_eq!(best_head.average_precision, top);
    assert_eq!(report.head_threshold, Some(best_head.threshold));

    let device = Backend::Flex.device();
    let package = ModelPackage::load(&out.path().join("m")).unwrap();
    let (_, t) = package.head.as_ref().expect("the package ships the head");
    assert_eq!(Some(*t), report.head_threshold);
    assert_eq!(package.config.head.as_ref().unwrap().d_hidden, 16);
    // Evaluating on the validation pairs at the stored thresholds gives the training run's numbers,
    // the head's as the verdict and the distance's beside it.
    let (valid, _, _) = trainer::heldout_pairs(&package, &dirs(), trainer::HeldoutPart::Selection).unwrap();
    let r = trainer::evaluate(&package, &valid, &EvalOptions::default(), &device).unwrap();
    assert!((r.binary.accuracy - best_head.accuracy).abs() < 1e-9, "{r:?} vs {best_head:?}");
    assert!((r.binary.average_precision - best_head.average_precision).abs() < 1e-6);
    let by_distance = r.energy_binary.expect("the distance's metrics are reported beside the head's");
    assert!((by_distance.accuracy - report.best.accuracy).abs() < 1e-9);
}

fn graded() -> TrainConfig {
    let mut cfg = tiny();
    cfg.data.train = "graded.csv".into();
    cfg.data.score_range = Some((0.0, 5.0));
    cfg.data.valid_size = 6;
    cfg.model.energy = encoder::Energy::Manhattan;
    cfg.model.normalize = false;
    cfg.train.select = SelectMetric::Spearman;
    cfg.train.loss = vec![LossSpec::new(LossKind::Regression)];
    cfg.train.epochs = 8;
    cfg
}

#[test]
fn malstm_regression_on_graded_scores_reports_correlations() {
    let cfg = graded();
    cfg.check().unwrap();
    let out = tempfile::tempdir().unwrap();
    let run = TrainRun { progress: false, output: Some(out.path().join("m")) };
    let report = trainer::train(&cfg, &dirs(), &run).unwrap();
    let first = report.epochs.first().unwrap().train_loss;
    let last = report.epochs.last().unwrap().train_loss;
    assert!(last < first, "{first} -> {last}");
    let g = report.best.graded.expect("graded validation");
    assert_eq!(g.n, 6);
    assert!(report.best.retrieval.is_none());
    // The package scores graded data on the 0-5 scale: MSE is bounded by the range.
    let device = Backend::Flex.device();
    let package = ModelPackage::load(&out.path().join("m")).unwrap();
    let pairs = trainer::load_scaled(&fixtures().join("graded.csv"), data::PairFormat::Csv, None, (0.0, 5.0), false).unwrap();
    assert!(pairs.iter().all(|p| (0.0..=1.0).contains(&p.label)));
    let r = trainer::evaluate(&package, &pairs, &EvalOptions { graded_range: Some((0.0, 5.0)), ..Default::default() }, &device).unwrap();
    let g = r.graded.unwrap();
    assert_eq!(g.n, 30);
    assert!(g.mse > 0.0 && g.mse <= 25.0, "{g:?}");
    assert!(g.spearman > 0.3, "it learned the training scores' order: {g:?}");
}

#[test]
fn fine_tuning_starts_from_the_pretrained_package() {
    // Pre-train on the graded pairs, then fine-tune on the binary ones from that package.
    let out = tempfile::tempdir().unwrap();
    let pre = out.path().join("pre");
    trainer::train(&graded(), &dirs(), &TrainRun { progress: false, output: Some(pre.clone()) }).unwrap();
    let device = Backend::Flex.device();
    let pretrained = ModelPackage::load(&pre).unwrap();

    let mut cfg = tiny();
    cfg.model.init = Some(pre.clone());
    cfg.model.d_hidden = 99; // ignored: the shape comes from the package
    cfg.train.epochs = 1;
    let tuned_dir = out.path().join("tuned");
    trainer::train(&cfg, &dirs(), &TrainRun { progress: false, output: Some(tuned_dir.clone()) }).unwrap();
    let tuned = ModelPackage::load(&tuned_dir).unwrap();
    assert_eq!(tuned.config.encoder.vocab_size, pretrained.config.encoder.vocab_size);
    assert_eq!(tuned.config.encoder.d_hidden, 16);
    assert_eq!(tuned.tokenizer.vocab_size(), pretrained.tokenizer.vocab_size());
    let w = |p: &ModelPackage| p.encoder_module(&device).unwrap().forward_lstm.w_hidden.val().into_data().try_into_vec::<f32>().unwrap();
    let (a, b) = (w(&pretrained), w(&tuned));
    assert_ne!(a, b, "fine-tuning changed the weights");
    // ...starting from the pre-trained ones, not from a fresh initialisation: one epoch moves
    // them only a little compared with their distance from a fresh encoder.
    let moved: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    let init = pretrained.config.encoder.init(&device).forward_lstm.w_hidden.val().into_data().try_into_vec::<f32>().unwrap();
    let from_init: f32 = init.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / a.len() as f32;
    assert!(moved < from_init, "moved {moved} from the pre-trained weights, {from_init} from a fresh init");
}

/// A teacher-vector file (`TWINTCH1`, as scripts/teacher.py writes it) of `rows`, `dim` each.
fn write_teacher(path: &std::path::Path, dim: usize, rows: &[f32]) {
    use sha2::Digest;
    let mut bytes = b"TWINTCH1".to_vec();
    bytes.extend(((rows.len() / dim) as u32).to_le_bytes());
    bytes.extend((dim as u32).to_le_bytes());
    bytes.extend(rows.iter().flat_map(|v| v.to_le_bytes()));
    let digest = sha2::Sha256::digest(&bytes);
    bytes.extend(digest);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn distillation_pretrains_towards_the_teacher_then_trains_on_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let pairs = data::load_pairs(&fixtures().join("pairs.csv"), data::PairFormat::Csv, Default::default()).unwrap().pairs;
    let mut sentences: Vec<String> = pairs.iter().flat_map(|p| [p.a.clone(), p.b.clone()]).collect();
    sentences.sort();
    sentences.dedup();
    std::fs::write(dir.path().join("s.txt"), sentences.join("\n") + "\n").unwrap();
    // A teacher that puts each sentence on one of 4 axes by its length: a geometry the student
    // can learn, and a fixed one it has to.
    let dim = 4;
    let rows: Vec<f32> = sentences.iter().flat_map(|s| (0..dim).map(move |k| if s.len() % dim == k { 1.0 } else { 0.1 })).collect();
    write_teacher(&dir.path().join("t.f32"), dim, &rows);
    let mut cfg = tiny();
    cfg.train.epochs = 2;
    // Patience shorter than the pre-training: it counts pair epochs only.
    cfg.train.patience = 1;
    let text = format!(
        "sentences = {:?}\ntargets = {:?}\nbatch_size = 16\npretrain_epochs = 8\n",
        dir.path().join("s.txt"),
        dir.path().join("t.f32")
    );
    cfg.distill = Some(toml::from_str(&text).unwrap());
    let run = TrainRun { progress: false, output: Some(dir.path().join("m")) };
    let report = trainer::train(&cfg, &dirs(), &run).unwrap();
    // Eight passes over the transfer set alone, then the pair epochs; the kept epoch is a pair
    // epoch.
    assert_eq!(report.epochs.len(), 10);
    assert!(report.best_epoch > 8, "kept epoch {}", report.best_epoch);
    let loss = |e: usize| report.epochs[e].train_loss;
    assert!(loss(7) < 0.6 * loss(0), "distillation loss did not fall: {} -> {}", loss(0), loss(7));
    // The package is the student alone: it loads without the projection.
    let package = ModelPackage::load(&dir.path().join("m")).unwrap();
    assert_eq!(package.encoder.d_output(), 16);
    // Targets of other sentences are refused before training.
    std::fs::write(dir.path().join("s.txt"), "one line\n").unwrap();
    let e = trainer::train(&cfg, &dirs(), &TrainRun { progress: false, output: Some(dir.path().join("m2")) }).unwrap_err().to_string();
    assert!(e.contains("vectors but"), "{e}");
}

#[test]
fn the_reporting_part_is_split_off_and_never_trained_on() {
    let mut cfg = tiny();
    cfg.data.valid_size = 8;
    cfg.data.report_size = 6;
    cfg.train.epochs = 1;
    cfg.train.search_false_alarm = Some(0.5);
    let dir = tempfile::tempdir().unwrap();
    let report = trainer::train(&cfg, &dirs(), &TrainRun { progress: false, output: Some(dir.path().join("m")) }).unwrap();
    assert_eq!((report.train_pairs, report.valid_pairs), (26, 8));
    let package = ModelPackage::load(&dir.path().join("m")).unwrap();
    let (select, _, _) = trainer::heldout_pairs(&package, &dirs(), trainer::HeldoutPart::Selection).unwrap();
    let (reporting, corpus, _) = trainer::heldout_pairs(&package, &dirs(), trainer::HeldoutPart::Report).unwrap();
    assert_eq!((select.len(), reporting.len(), corpus.len()), (8, 6, 80));
    assert!(reporting.iter().all(|r| select.iter().all(|s| s.line != r.line)));
    // The search threshold was chosen at the end of training on the selection part's searches,
    // within the configured false-alarm rate.
    let chosen = &package.metrics["search_threshold_chosen_at"];
    assert!(package.search_threshold.is_some() && chosen["false_alarm"].as_f64().unwrap() <= 0.5, "{chosen}");
    // Without a reporting part, --report has nothing to measure and says so.
    cfg.data.report_size = 0;
    let m2 = dir.path().join("m2");
    trainer::train(&cfg, &dirs(), &TrainRun { progress: false, output: Some(m2.clone()) }).unwrap();
    let old = ModelPackage::load(&m2).unwrap();
    let e = trainer::heldout_pairs(&old, &dirs(), trainer::HeldoutPart::Report).unwrap_err().to_string();
    assert!(e.contains("report_size"), "{e}");
}

#[test]
fn graded_pairs_train_beside_the_binary_ones() {
    // The binary fixture and, as a second task, the graded fixture in SemEval STS layout.
    let sts = |path: &str| trainer::config::SourceConfig { format: data::PairFormat::Sts, path: path.into(), subset: None };
    let graded_pairs = trainer::load_scaled(&fixtures().join("graded-sts.tsv"), data::PairFormat::Sts, None, (0.0, 5.0), false).unwrap();
    let device = Backend::Flex.device();
    let spearman = |with_graded: bool| {
        let mut cfg = tiny();
        cfg.model.energy = encoder::Energy::Cosine;
        cfg.train.epochs = 10;
        if with_graded {
            cfg.graded = Some(trainer::config::GradedConfig {
                sources: vec![sts("graded-sts.tsv")],
                exclude: vec![],
                batch_size: 8,
                weight: 1.0,
                select: vec![],
            });
        }
        cfg.check().unwrap();
        let out = tempfile::tempdir().unwrap();
        trainer::train(&cfg, &dirs(), &TrainRun { progress: false, output: Some(out.path().join("m")) }).unwrap();
        let package = ModelPackage::load(&out.path().join("m")).unwrap();
        // The graded sentences' words are in the vocabulary only when they were learnt.
        assert_eq!(package.tokenizer.encode("slicing onion").unwrap().iter().all(|&id| id != tokenize::UNK_ID), with_graded);
        let opts = EvalOptions { graded_range: Some((0.0, 5.0)), ..Default::default() };
        trainer::evaluate(&package, &graded_pairs, &opts, &device).unwrap().graded.unwrap().spearman
    };
    let (without, with) = (spearman(false), spearman(true));
    // Regressing on the scores orders the graded pairs far better than the binary task alone.
    assert!(with > 0.6 && with > without + 0.2, "Spearman with graded pairs {with}, without {without}");
}

#[test]
fn graded_selection_slices_are_scored_every_epoch_and_never_trained_on() {
    let path = fixtures().join("graded-sts.tsv");
    let all = trainer::load_scaled(&path, data::PairFormat::Sts, None, (0.0, 5.0), false).unwrap();
    let mut cfg = tiny();
    cfg.model.energy = encoder::Energy::Cosine;
    cfg.train.epochs = 3;
    let source = trainer::config::SourceConfig { format: data::PairFormat::Sts, path: "graded-sts.tsv".into(), subset: None };
    let slice = trainer::config::GradedSlice { format: data::PairFormat::Sts, path: "graded-sts.tsv".into(), subset: None, size: 10 };
    cfg.graded =
        Some(trainer::config::GradedConfig { sources: vec![source], exclude: vec![], batch_size: 8, weight: 1.0, select: vec![slice] });
    cfg.check().unwrap();
    let out = tempfile::tempdir().unwrap();
    let report = trainer::train(&cfg, &dirs(), &TrainRun { progress: false, output: Some(out.path().join("m")) }).unwrap();
    // Every epoch scores the slice: the file's stem, ten pairs.
    assert_eq!(report.epochs.len(), 3);
    for e in &report.epochs {
        assert_eq!(e.graded_slices.len(), 1);
        assert_eq!((e.graded_slices[0].name.as_str(), e.graded_slices[0].graded.n), ("graded-sts", 10));
    }
    // The slice is the seeded draw of ten pairs, and the kept epoch's numbers are the package's
    // own on those pairs.
    let (_, held) = data::split_train_valid(all, 10, cfg.data.split_seed);
    let package = ModelPackage::load(&out.path().join("m")).unwrap();
    let opts = EvalOptions { graded_range: Some((0.0, 5.0)), ..Default::default() };
    let measured = trainer::evaluate(&package, &held, &opts, &Backend::Flex.device()).unwrap().graded.unwrap();
    let stored = report.best.graded_slices[0].graded;
    assert!(
        (measured.pearson - stored.pearson).abs() < 1e-5 && (measured.spearman - stored.spearman).abs() < 1e-5,
        "{measured:?} vs {stored:?}"
    );
    // metrics.json carries the slices; the package's stored config names them.
    let metrics = std::fs::read_to_string(out.path().join("m/metrics.json")).unwrap();
    assert!(metrics.contains("\"graded_slices\""));
    let stored_cfg: TrainConfig = serde_json::from_value(package.config.training.clone()).unwrap();
    assert_eq!(stored_cfg.graded.unwrap().select[0].size, 10);
}

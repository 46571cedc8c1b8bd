//! Training end to end on a 40-pair fixture written for these tests.

use std::path::PathBuf;

use encoder::{Backend, ModelPackage};
use trainer::config::{DataDirs, TrainConfig};
use trainer::TrainRun;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
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
    let package = ModelPackage::load(&out.path().join("model"), &device).unwrap();
    assert_eq!(package.threshold, report.threshold);
    assert_eq!(package.metrics["best_epoch"].as_u64(), Some(report.best_epoch as u64));
    // Evaluating on the data it learned from at the stored threshold beats chance.
    let pairs = data::load_pairs(&fixtures().join("pairs.csv"), data::PairFormat::Csv, Default::default()).unwrap();
    let m = trainer::evaluate(&package, &pairs.pairs, &device).unwrap();
    assert!(m.accuracy > 0.6, "{m:?}");
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
        let out = tempfile::tempdir().unwrap();
        let run = TrainRun { progress: false, output: Some(out.path().join("m")) };
        let report = trainer::train(&cfg, &dirs(), &run).unwrap();
        assert_eq!(report.backend, backend.to_string());
        losses.push((backend, report.epochs[0].train_loss));
    }
    // Same host-seeded initial weights and batches: the first epoch's loss agrees across backends.
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
    let package = ModelPackage::load(&out.path().join("m"), &device).unwrap();
    let fresh = package.config.encoder.init(&device);
    let table = |w: &burn::module::Param<burn::Tensor<2>>| w.val().into_data().try_into_vec::<f32>().unwrap();
    assert_eq!(table(&package.encoder.embedding.weight), table(&fresh.embedding.weight));
    assert_ne!(
        table(&package.encoder.forward_lstm.w_hidden),
        table(&fresh.forward_lstm.w_hidden),
        "the LSTM still trains"
    );
}

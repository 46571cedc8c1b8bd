//! The same weights give the same vectors on ndarray, flex and wgpu.
//!
//! wgpu needs a Vulkan/Metal/DX12 adapter; on a CPU-only Linux machine Mesa's lavapipe
//! (`apt-get install mesa-vulkan-drivers`) provides one, and `.ci/run` installs it. Outside CI a
//! machine without any adapter leaves wgpu out with a message; under CI it must run.

// These tests write packages, which takes the burn model.
#![cfg(feature = "burn")]

use burn::module::Module;
use encoder::{Backend, BatchTensors, EncoderConfig, Pooling};
use tokenize::Batch;

#[test]
fn backends_agree_on_forward_output() {
    let reference = Backend::Flex.device();
    let rows = vec![vec![2u32, 5, 9, 4], vec![7u32], vec![3u32, 3, 8, 1, 6, 2, 11]];
    let batch = Batch::from_rows(&rows);
    for (pooling, bi) in [(Pooling::Last, false), (Pooling::Mean, true)] {
        let cfg = EncoderConfig::new(12).with_d_embed(8).with_d_hidden(16).with_pooling(pooling).with_bidirectional(bi);
        let enc = cfg.init(&reference);
        let want = enc.forward(BatchTensors::new(&batch, &reference)).into_data().try_into_vec::<f32>().unwrap();
        for backend in Backend::ALL {
            if !backend.required_in_tests() {
                eprintln!("no wgpu adapter on this machine (and not under CI): wgpu left out");
                continue;
            }
            let device = backend.try_device().unwrap();
            let moved = enc.clone().to_device(&device);
            let got = moved.forward(BatchTensors::new(&batch, &device)).into_data().try_into_vec::<f32>().unwrap();
            assert_eq!(got.len(), want.len());
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-4, "{backend} differs from flex by {worst} ({pooling:?}, bi={bi})");
        }
    }
}

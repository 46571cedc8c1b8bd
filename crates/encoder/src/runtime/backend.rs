//! Run-time choice of the compute backend.
//!
//! Inference on ndarray and flex runs on the host ([`HostEncoder`](crate::HostEncoder)) in every
//! build; their burn devices, used to train, come with the `burn` feature, and wgpu with `wgpu`.

#[cfg(feature = "burn")]
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

/// The backends this build can run on; the same model code runs on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's ndarray CPU backend (deprecated upstream in favour of flex, kept for comparison).
    #[default]
    Ndarray,
    /// burn's pure-Rust CPU backend.
    Flex,
    /// wgpu: Vulkan, Metal or DX12 GPUs (and lavapipe on a CPU-only Linux machine).
    Wgpu,
}

impl Backend {
    /// Every backend, for tests and benchmarks that compare them.
    pub const ALL: [Backend; 3] = [Backend::Ndarray, Backend::Flex, Backend::Wgpu];

    /// Whether this build includes the backend: the CPU backends always (for inference, which
    /// runs on the host; training on them needs the `burn` feature), wgpu with the crate's
    /// `wgpu` feature (on for the trainer and the bench, off for a plain `retrieve` build so that
    /// its first compile skips wgpu and CubeCL).
    pub fn built(self) -> bool {
        self != Backend::Wgpu || cfg!(feature = "wgpu")
    }

    /// The device of this backend, without autodiff (call `.autodiff()` to train).
    ///
    /// # Panics
    /// For a backend this build does not include ([`Backend::built`]); [`Backend::try_device`]
    /// returns an error instead, and is what the binaries call.
    #[allow(deprecated)] // ndarray is deprecated upstream; the product keeps it on purpose
    #[cfg(feature = "burn")]
    pub fn device(self) -> Device {
        match self {
            Backend::Ndarray => Device::ndarray(),
            Backend::Flex => Device::flex(),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Device::wgpu(Default::default()),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => panic!("{}", Self::NOT_BUILT),
        }
    }

    pub(crate) const NOT_BUILT: &'static str =
        "this build has no wgpu backend: build it with the `wgpu` feature (e.g. `cargo run --release -p retrieve --features wgpu -- …`)";

    /// The device, after checking that this build has it and that it can run a kernel. wgpu
    /// without any usable adapter panics deep inside its runtime; this turns that into an error
    /// message instead.
    #[cfg(feature = "burn")]
    pub fn try_device(self) -> Result<Device, String> {
        if !self.built() {
            return Err(Self::NOT_BUILT.to_string());
        }
        let device = self.device();
        let probe = device.clone();
        std::panic::catch_unwind(move || burn::Tensor::<1>::ones([1], &probe).into_data().try_into_vec::<f32>().map(|v| v.len()))
            .map_err(|e| {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown error".into());
                format!("the {self} backend is not usable here: {msg}")
            })?
            .map_err(|e| format!("the {self} backend is not usable here: {e:?}"))?;
        Ok(device)
    }

    /// Whether tests must exercise this backend: always for the CPU backends, and for wgpu when
    /// an adapter exists or when running under CI (whose script installs lavapipe), so that a
    /// broken wgpu setup fails CI instead of being skipped.
    #[cfg(feature = "burn")]
    pub fn required_in_tests(self) -> bool {
        self.built() && (self != Backend::Wgpu || std::env::var_os("CI").is_some() || self.try_device().is_ok())
    }

    /// The name used on the command line and in configs.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ndarray => "ndarray",
            Backend::Flex => "flex",
            Backend::Wgpu => "wgpu",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backend::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown backend {s:?} (expected ndarray, flex or wgpu)"))
    }
}

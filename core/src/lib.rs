//! zfvis-core: ZFNet/AlexNet on libtorch, the deconvnet and the paper's
//! analyses. No HTTP here: the `zfvis` binary (CLI and server) calls in.
//!
//! Paper figure -> module: Fig. 1 deconvnet -> `deconv`; Fig. 2 top 9 and
//! Fig. 4 timeline -> `index` (building) and `timeline` (views); Fig. 3
//! network -> `net`; Fig. 5 -> `invariance`; Fig. 6 -> `compare`; Fig. 7 ->
//! `occlusion` (its exact incremental evaluator: `incremental`); Table 1 -> `correspondence`; §2 training -> `train`; model
//! folders -> `checkpoint`.
//!
//! Each analysis is a type implementing `analysis::Analysis` in its
//! science's module; `engine` holds what they share (snapshots, traces,
//! the image store).

pub mod analyses;
pub mod analysis;
pub mod checkpoint;
pub mod classify;
pub mod compare;
pub mod correspondence;
pub mod data;
pub mod deconv;
pub mod draw;
pub mod engine;
pub mod error;
pub mod examples;
pub mod explain;
pub mod import;
pub mod incremental;
pub mod index;
pub mod invariance;
pub mod methods;
pub mod models;
pub mod net;
pub mod occlusion;
pub mod params;
pub mod picture;
pub mod predict;
pub mod preprocess;
pub mod probe;
pub mod progress;
pub mod resample;
pub mod sanity;
pub mod store;
pub mod train;
pub mod transfer;

pub use tch;

/// `auto` (CUDA when present), `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> anyhow::Result<tch::Device> {
    match s {
        "auto" => Ok(tch::Device::cuda_if_available()),
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" => Ok(tch::Device::Cuda(0)),
        _ => match s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => Ok(tch::Device::Cuda(n)),
            None => anyhow::bail!("unknown device {s:?}: expected auto, cpu, cuda or cuda:N"),
        },
    }
}

//! zfvis-core: ZFNet/AlexNet and imported networks on libtorch, the
//! deconvnet and its successors, and the paper's analyses. No HTTP here: the
//! `zfvis` binary (CLI and server) calls in.
//!
//! Floors: the science (`net`, `deconv`, `explain`, `methods`, `occlusion`,
//! `incremental`, `invariance`, `correspondence`, `compare`, `sanity`,
//! `picture`) knows only the network and the tensor library; the analyses
//! (`analyses`, one file each, `impl analysis::Analysis` or `Job`) run on the
//! `engine` (snapshots, traces, the image store) and call the science.
//!
//! Paper figure -> science / analysis: Fig. 1 `deconv` / `analyses::projection`;
//! Fig. 2 and 4 `index` / `analyses::timeline`; Fig. 3 `net`; Fig. 5
//! `invariance`; Fig. 6 `compare`; Fig. 7 `occlusion` (its exact incremental
//! evaluator: `incremental`); Table 1 `correspondence`; §8 `methods` and
//! `explain`; §2 training `train`; model folders `checkpoint`.

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
pub mod files;
pub mod identity;
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
pub mod visualize;

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

//! The analyses: one file each, one typed request in and one result out
//! (`impl Analysis`, or `impl Job` for the long ones), used alike by the
//! CLI and the HTTP API. Each reads the engine (snapshots, traces, the
//! image store) and calls its science one floor down, which knows only
//! the network and the tensor library.
//!
//! Paper figure -> file: Fig. 1 `projection` (and a layer's top 9);
//! Fig. 2 and 4 `timeline` (dataset top 9, the training timeline);
//! feature maps `maps`; Fig. 5 `invariance`; Fig. 6 `compare`; Fig. 7
//! `occlusion`; Table 1 `correspondence`; predictions `predict`; Table 7
//! and Fig. 9 `features` (probe, transfer); §8 `explain` and `sanity`;
//! every figure drawn `figures`.

pub mod compare;
pub mod correspondence;
pub mod explain;
pub mod features;
pub mod figures;
pub mod invariance;
pub mod maps;
pub mod occlusion;
pub mod predict;
pub mod projection;
pub mod sanity;
pub mod timeline;
pub mod visualize;

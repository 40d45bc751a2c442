//! The command line, one module per command or small family (as cargo's
//! `commands/`): each holds its clap `Args`, its `run` and its printing;
//! argument groups shared by several live in `args`, the engine they share
//! in `local`. Every command builds the request types of zfvis-core's
//! analyses and runs them as the HTTP API does. Adding a command: a file
//! here, a line in `Command` and a line in `exec`.

mod args;
mod bench;
mod bench_cams;
mod bench_peer;
mod bench_visualize;
mod compare;
mod correspondence;
mod explain;
mod figures;
mod import;
mod index;
mod invariance;
mod local;
mod models;
mod occlude;
mod predict;
mod probe;
mod serve;
mod train;
mod visualize;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zfvis",
    version,
    about = "See what a convolutional network sees (Zeiler & Fergus 2013)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app and JSON API
    Serve(serve::ServeArgs),
    /// Top-5 classes of an image
    Predict(predict::PredictArgs),
    /// Deconvnet projection of a feature map to pixels (paper Fig. 1)
    Project(predict::ProjectArgs),
    /// Occlusion sensitivity maps (paper Fig. 7)
    Occlude(occlude::OccludeArgs),
    /// Guided backprop, gradient, Grad-CAM, integrated gradients, occlusion
    /// and the deconvnet, for a class or a map, with deletion/insertion scores
    Explain(explain::ExplainArgs),
    /// Sanity check of the methods: cascading randomisation of the layers
    /// from the output down (Adebayo et al. 2018)
    Sanity(explain::SanityArgs),
    /// Invariance curves: translation, scale, rotation (paper Fig. 5)
    Invariance(invariance::InvarianceArgs),
    /// The correspondence test over landmarked images (paper Table 1)
    Correspondence(correspondence::CorrespondenceArgs),
    /// Index a dataset: the 9 strongest activations of every map (Fig. 2, Fig. 4)
    Index(index::IndexArgs),
    /// The 9 strongest activations of one map over a dataset (builds the index if missing)
    Top9(index::Top9Args),
    /// Compare two models or snapshots: dead layer-1 filters, their spectral
    /// bands, layer-2 aliasing (paper Fig. 6)
    Compare(compare::CompareArgs),
    /// The paper's figures for a model as PNG/SVG/JSON files and report.html
    Figures(figures::FiguresArgs),
    /// Train a ZFNet or AlexNet with snapshots (paper §2); without flags, the
    /// paper's full-width 70-epoch run (it says its recipe and duration first)
    Train(train::TrainArgs),
    /// Top-1/top-5 over a folder of class folders
    Eval(train::EvalArgs),
    /// The model folders under --models: each model, or why it does not load
    Models(models::ModelsArgs),
    /// Import a network you have (PyTorch state dict, safetensors or ONNX) as a model folder
    Import(import::ImportArgs),
    /// Linear probes per layer: softmax and SVM on each layer's features (paper §5, Table 7)
    Probe(probe::ProbeArgs),
    /// Few-shot transfer: softmax on frozen fc features vs training from scratch (paper §5, Fig. 9)
    Transfer(probe::TransferArgs),
    /// What a unit wants to see: an image optimised to excite a map, a
    /// whole layer's maps, a class or a sum (Lucid's recipe)
    Visualize(visualize::VisualizeArgs),
    /// Speed on this machine against PyTorch (and Captum, PIL) in the same run
    Bench(bench::BenchArgs),
}

pub fn exec(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Predict(a) => predict::predict(a),
        Command::Project(a) => predict::project(a),
        Command::Occlude(a) => occlude::run(a),
        Command::Explain(a) => explain::explain(a),
        Command::Sanity(a) => explain::sanity(a),
        Command::Invariance(a) => invariance::run(a),
        Command::Correspondence(a) => correspondence::run(a),
        Command::Index(a) => index::index(a),
        Command::Top9(a) => index::top9(a),
        Command::Compare(a) => compare::run(a),
        Command::Figures(a) => figures::run(a),
        Command::Train(a) => train::train(a),
        Command::Eval(a) => train::eval(a),
        Command::Models(a) => models::run(a),
        Command::Import(a) => import::run(a),
        Command::Probe(a) => probe::probe(a),
        Command::Transfer(a) => probe::transfer(a),
        Command::Visualize(a) => visualize::run(a),
        Command::Bench(a) => bench::run(a),
    }
}
